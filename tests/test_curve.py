"""Curves along training: every stage's log history in history.jsonl, and the harness on the live policy at
eval.every_steps / eval.at_steps in curve.jsonl, without changing what training produces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from zoo.train import run


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_history_jsonl_has_every_logged_step(compose, tmp_path):
    out = tmp_path / "run"
    run(compose("algo=dpo", "data=arithmetic", "trainer.max_steps=3", "trainer.logging_steps=1", output_dir=out))
    history = _lines(out / "stages" / "dpo" / "history.jsonl")
    losses = [h for h in history if "loss" in h]
    assert [h["step"] for h in losses] == [1, 2, 3]
    assert all("rewards/margins" in h and "learning_rate" in h for h in losses)  # TRL's own keys, as logged


def test_resumed_history_drops_what_came_after_the_checkpoint(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from zoo.algos.base import _History

    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": float(s)}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "lo')
    callback = _History(path, "checkpoints")
    state = TrainerState()
    state.global_step = 2  # resuming from checkpoint-2: steps 3 and 4 will be logged again
    callback.on_train_begin(TrainingArguments(output_dir=str(tmp_path)), state, TrainerControl())
    assert [e["step"] for e in _lines(path)] == [1, 2]
    state.global_step, state.epoch = 3, 1.5
    callback.on_log(None, state, None, logs={"loss": 0.25})
    assert _lines(path)[-1] == {"segment": "checkpoints", "step": 3, "epoch": 1.5, "loss": 0.25}


def test_history_keeps_earlier_trainers_of_a_stage(tmp_path):
    """Online DPO trains one TRL trainer per round, each starting at step 0: a new round keeps the others."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from zoo.algos.base import _History

    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps({"segment": "round_0", "step": s, "loss": 1.0}) + "\n" for s in (1, 2)))
    _History(path, "round_1").on_train_begin(TrainingArguments(output_dir=str(tmp_path)), TrainerState(),
                                            TrainerControl())
    assert [(e["segment"], e["step"]) for e in _lines(path)] == [("round_0", 1), ("round_0", 2)]


def test_curve_points_at_the_asked_steps_and_the_same_weights(compose, tmp_path):
    base = ("algo=dpo", "data=arithmetic", "trainer.max_steps=4", "trainer.logging_steps=1")
    off = tmp_path / "off"
    on = tmp_path / "on"
    run(compose(*base, output_dir=off))
    metrics = run(compose(*base, "eval.every_steps=2", "eval.at_steps=[1]", output_dir=on))
    points = _lines(on / "curve.jsonl")
    assert [(p["stage"], p["segment"], p["step"]) for p in points] == [("dpo", "checkpoints", s) for s in (1, 2, 4)]
    for p in points:
        assert {"gold_reward", "kl", "win_rate", "length", "eos_rate", "distinct_2"} <= set(p)
        assert math.isfinite(p["kl"]) and 0 <= p["win_rate"] <= 1  # k1 KL estimates can dip below 0
    # Measuring did not move training: same weights, same logged losses.
    a, b = _weights(off / "stages" / "dpo" / "model"), _weights(on / "stages" / "dpo" / "model")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    loss = [h["loss"] for h in _lines(off / "stages" / "dpo" / "history.jsonl") if "loss" in h]
    assert loss == [h["loss"] for h in _lines(on / "stages" / "dpo" / "history.jsonl") if "loss" in h]
    assert not (off / "curve.jsonl").exists()
    # The last point is the final policy's harness, up to the export's rounding: the final eval agrees with it.
    assert points[-1]["gold_reward"] == pytest.approx(metrics["eval/gold_reward"], abs=0.05)


def test_curve_begin_stage_keeps_other_stages_and_earlier_points(tmp_path):
    from zoo.eval.curve import Curve

    path = tmp_path / "curve.jsonl"
    rows = [{"stage": "sft", "step": 5}, {"stage": "dpo", "step": 2}, {"stage": "dpo", "step": 4},
            {"stage": "dpo", "segment": "round_0", "step": 4}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    Curve(path, [], None, None).begin_stage("dpo", 2)
    assert _lines(path) == [rows[0], rows[1], rows[3]]


@pytest.mark.parametrize("override", ["eval.every_steps=-1", "eval.at_steps=[0]", "eval.at_steps=[x]"])
def test_bad_curve_settings_rejected(compose, override):
    from zoo.config import ConfigError, validate

    with pytest.raises(ConfigError, match="eval"):
        validate(compose(override))


def test_baseline_evaluated_once_per_baseline_and_scorers(monkeypatch, tmp_path):
    """Two stages' curves against the same baseline share its harness pass; another scorer set gets its own."""
    from omegaconf import OmegaConf

    from zoo.eval import curve as curve_mod

    calls = []

    def fake_evaluate(model, tokenizer, rows, eval_cfg, *, prefix, reference=None, reference_result=None, **kw):
        calls.append(prefix)
        return {"metrics": {f"{prefix}/kl": 0.0}, "records": [], "scores": {"gold": [], "proxy": []}}

    monkeypatch.setattr(curve_mod, "evaluate", fake_evaluate)
    eval_cfg = OmegaConf.create({"every_steps": 1, "at_steps": []})
    shared = {}
    for stage, key in (("sft", ("start", ())), ("dpo", ("start", ())), ("ppo", ("start", ("reward_model",)))):
        c = curve_mod.Curve(tmp_path / "curve.jsonl", [], eval_cfg, None, baseline_loader=lambda: "baseline",
                            baseline_results=shared, baseline_key=key)
        c.measure("policy", stage, 1)
        c.close()
    assert calls == ["before", "curve", "curve", "before", "curve"]
