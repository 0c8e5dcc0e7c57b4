"""End to end through Hydra's compose API and run(cfg): every algorithm x peft mode on the tiny model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from zoo.eval import HARNESS_KEYS
from zoo.train import run


@pytest.fixture
def watch_training(monkeypatch):
    """Snapshot every parameter when training starts and compare when it ends (through the shared `fit`)."""
    import zoo.algos.base as base

    seen = []
    original = base.fit

    def named(trainer):
        value = getattr(trainer, "value_model", None)  # PPO trains a value model beside the policy
        out = {f"policy.{n}": p for n, p in trainer.model.named_parameters()}
        out.update({f"value.{n}": p for n, p in value.named_parameters()} if value is not None else {})
        return out

    def spying_fit(trainer, ctx):
        start = {n: p.detach().clone() for n, p in named(trainer).items()}
        metrics = original(trainer, ctx)
        params = named(trainer)
        seen.append({
            "trainable": {n: not torch.equal(start[n], p.detach()) for n, p in params.items() if p.requires_grad},
            "frozen": {n: torch.equal(start[n], p.detach()) for n, p in params.items() if not p.requires_grad},
            "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
            "metrics": metrics,
        })
        return metrics

    monkeypatch.setattr(base, "fit", spying_fit)
    for name in ("sft", "rm", "dpo", "ppo", "online", "cai", "rlaif", "online_dpo"):  # online: GRPO and RLOO
        monkeypatch.setattr(f"zoo.algos.{name}.fit", spying_fit)
    return seen


def _check_run_dir(out, metrics):
    for name in ("metrics.json", "config.yaml", "env.json", "samples.jsonl"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "metrics.json").read_text())
    for prefix in ("before", "eval"):
        for key in HARNESS_KEYS:
            assert f"{prefix}/{key}" in on_disk, f"{prefix}/{key}"
    assert on_disk == json.loads(json.dumps(metrics, default=str))
    for key in ("gold_reward", "win_rate", "length", "eos_rate", "distinct_1", "distinct_2"):
        assert metrics[f"eval/{key}"] is not None
    assert -1.0 <= metrics["eval/gold_reward"] <= 1.0
    assert 0.0 <= metrics["eval/win_rate"] <= 1.0 and 0.0 <= metrics["eval/distinct_2"] <= 1.0
    assert 0 < metrics["eval/length"] <= 8
    assert math.isfinite(metrics["eval/kl"])
    assert metrics["before/kl"] == 0.0 and metrics["before/win_rate"] == 0.5
    env = json.loads((out / "env.json").read_text())
    assert env["seed"] == 0 and "torch" in env["versions"]


@pytest.mark.parametrize("algo,peft", [(a, p) for a in ("sft", "rm", "dpo") for p in ("none", "lora", "qlora")]
                         + [("ppo", "none"), ("ppo", "lora"), ("grpo", "lora"), ("rloo", "lora"), ("cai", "lora"),
                            ("rlaif", "lora"), ("rlaif_rm", "lora"), ("online_dpo", "none"), ("online_dpo", "lora")])
def test_algorithm_end_to_end(compose, watch_training, dense_reward, tmp_path, algo, peft):
    out = tmp_path / "run"
    # Online algorithms get a dense toy reward: a random tiny model's samples all score 0 on VADER, and a
    # group with no reward variance has no gradient.
    extra = [dense_reward] if algo in ("ppo", "grpo", "rloo") else []
    metrics = run(compose(f"algo={algo}", f"peft={peft}", *extra, output_dir=out))
    (stage,) = watch_training
    assert stage["losses"] and all(math.isfinite(x) for x in stage["losses"])
    assert math.isfinite(metrics[f"{algo}/train_loss"])
    assert stage["trainable"] and all(stage["trainable"].values()), "some trainable tensors did not move"
    if peft == "none":
        assert not stage["frozen"] or all(stage["frozen"].values())
    else:
        assert stage["frozen"] and all(stage["frozen"].values()), "a frozen base weight changed under LoRA"
        assert all("lora_" in n or "modules_to_save" in n for n in stage["trainable"])
    if algo == "ppo":
        assert any(n.startswith("value.") for n in stage["trainable"]), "the value model did not train"
    if algo == "rm":
        assert 0.0 <= metrics["rm/accuracy"] <= 1.0
    if algo in ("rm", "rlaif_rm", "ppo", "grpo", "rloo"):
        assert metrics["eval/proxy_reward"] is not None  # the trained RM / the configured reward
    _check_run_dir(out, metrics)
    assert (out / "stages" / algo / "model" / "config.json").is_file()
    assert not (out / "stages" / algo / "checkpoints").exists()


def test_arithmetic_accuracy_reported(compose, tmp_path):
    metrics = run(compose("algo=dpo", "data=arithmetic", output_dir=tmp_path / "run"))
    assert 0.0 <= metrics["eval/accuracy"] <= 1.0 and metrics["eval/gold_reward"] == metrics["eval/accuracy"]


def test_pipeline_sft_then_dpo(compose, watch_training, tmp_path):
    out = tmp_path / "run"
    metrics = run(compose("experiment=demo", "model=tiny", "data.max_rows=32", "algo.pairs.num_samples=4",
                          output_dir=out))
    assert len(watch_training) == 2
    assert "sft/train_loss" in metrics and "dpo/train_loss" in metrics
    pairs = [json.loads(x) for x in (out / "stages" / "dpo" / "pairs.jsonl").read_text().splitlines()]
    sft_prompts = {json.dumps(r["prompt"]) for r in __import__("zoo.data", fromlist=["x"]).load_task(
        compose("experiment=demo", "model=tiny", "data.max_rows=32")).train[:16]}
    assert pairs and not sft_prompts & {json.dumps(p["prompt"]) for p in pairs}, "SFT and DPO prompts overlap"
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    _check_run_dir(out, metrics)


def _dpo_loss_types():
    import dataclasses

    from trl import DPOConfig

    from zoo.config import _choices

    field = {f.name: f for f in dataclasses.fields(DPOConfig)}["loss_type"]
    return _choices(field, list[str])


@pytest.mark.parametrize("loss_type", _dpo_loss_types())
def test_every_dpo_loss_type_trains(compose, tmp_path, loss_type):
    """Every loss_type TRL 1.16 lists runs through the zoo on built-in pairs and gives a finite loss."""
    extra = {"robust": ["algo.args.label_smoothing=0.1"], "exo_pair": ["algo.args.label_smoothing=0.001"]}.get(
        loss_type, [])
    metrics = run(compose("algo=dpo", "data=arithmetic", f"algo.args.loss_type={loss_type}", "trainer.max_steps=1",
                          "eval.num_prompts=1", *extra, output_dir=tmp_path / "run"))
    assert math.isfinite(metrics["dpo/train_loss"])


def test_multirun_writes_one_run_dir_per_job(tiny_dir, tmp_path):
    """The `-m` form through the real command line: one complete run dir per swept value."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "zoo.train", "-m", "algo=dpo", "model=tiny",
                    f"model.name_or_path={tiny_dir}", "logger=none", "trainer.max_steps=1", "eval.num_prompts=2",
                    "eval.max_new_tokens=4", "data.max_rows=16", "algo.args.beta=0.1,0.5",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=root, check=True, capture_output=True)
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert [p.parent.name for p in runs] == ["0", "1"]
    betas = [__import__("yaml").safe_load((p.parent / "config.yaml").read_text())["algo"]["args"]["beta"]
             for p in runs]
    assert betas == [0.1, 0.5]


def test_instructgpt_pipeline(compose, watch_training, tmp_path):
    """SFT -> RM -> PPO: the RM is PPO's reward and initialises the value model; eval compares SFT with PPO."""
    out = tmp_path / "run"
    metrics = run(compose("experiment=instructgpt", "model=tiny", "data.max_rows=96", "algo.args.max_steps=2",
                          "stages.rm.pairs.num_samples=4", output_dir=out))
    assert [s["metrics"] and next(iter(s["metrics"])).split("/")[0] for s in watch_training] == ["sft", "rm", "ppo"]
    assert metrics["eval/proxy_reward"] is not None and metrics["before/proxy_reward"] is not None
    assert 0.0 <= metrics["rm/accuracy"] <= 1.0 and "ppo/train_loss" in metrics
    assert (out / "stages" / "rm" / "model" / "config.json").is_file()
    import yaml

    assert yaml.safe_load((out / "config.yaml").read_text())["eval"]["baseline"] == "sft"
    _check_run_dir(out, {**metrics})


def test_instructgpt_on_hh_rlhf_file(compose, tmp_path):
    """The same pipeline on a local HH-RLHF file: SFT on chosen, RM on the file's own pairs, PPO on the RM."""
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "hh_rlhf.jsonl"
    metrics = run(compose("experiment=instructgpt", "model=tiny", "data=hh_rlhf", f"data.path={fixture}",
                          "eval.num_prompts=1", "algo.args.max_steps=1", "trainer.per_device_train_batch_size=1",
                          output_dir=tmp_path / "run"))
    assert metrics["eval/gold_reward"] is None and metrics["eval/proxy_reward"] is not None
    assert metrics["eval/win_rate"] is not None  # judged by the proxy (the RM) when there is no gold signal


@pytest.mark.parametrize("preset", ["dapo", "dr_grpo"])
def test_grpo_presets_on_countdown(compose, tmp_path, preset):
    """GRPO presets with verifiable rewards; TRL logs each reward by name and the group statistics."""
    import zoo.algos.base as base

    logs = []
    original = base.fit

    def fit(trainer, ctx):
        out = original(trainer, ctx)
        logs.extend(trainer.state.log_history)
        return out

    import zoo.algos.online as online

    online.fit, saved = fit, online.fit
    try:
        metrics = run(compose(f"algo={preset}", "data=countdown", "reward=countdown", "eval.num_prompts=2",
                              output_dir=tmp_path / "run"))
    finally:
        online.fit = saved
    keys = set().union(*[set(h) for h in logs])
    assert {"rewards/countdown/mean", "rewards/format/mean", "reward_std", "frac_reward_zero_std"} <= keys
    assert math.isfinite(metrics["grpo/train_loss"])
    import yaml

    args = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["algo"]["args"]
    assert args["loss_type"] == preset
