"""End to end through Hydra's compose API and run(cfg): every algorithm x peft mode on the tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from zoo.eval import HARNESS_KEYS
from zoo.train import run


def _value(p) -> torch.Tensor:
    """A parameter's value, independent of its storage layout: bitsandbytes repacks 4-bit weights for its CPU
    kernel at the first no-grad forward on CPUs with AVX512-BF16 (and back at the first training forward), so
    the raw bytes of an untouched base weight differ by CPU and by what ran last."""
    import copy

    import bitsandbytes.functional as F

    state = getattr(p, "quant_state", None)
    if state is None:
        return p.detach().clone()
    data, state = p.data.clone(), copy.deepcopy(state)
    if getattr(state, "packing_format_for_cpu", False):
        data, state = F._convert_weight_packed_for_cpu_inverse(data, state)
    return F.dequantize_4bit(data, state)


def _count_4bit(model) -> int:
    import bitsandbytes as bnb

    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


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
        start = {n: _value(p) for n, p in named(trainer).items()}
        metrics = original(trainer, ctx)
        params = named(trainer)
        seen.append({
            "trainable": {n: not torch.equal(start[n], _value(p)) for n, p in params.items() if p.requires_grad},
            "frozen": {n: torch.equal(start[n], _value(p)) for n, p in params.items() if not p.requires_grad},
            "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
            "linear4bit": _count_4bit(trainer.model),
            "metrics": metrics,
        })
        return metrics

    monkeypatch.setattr(base, "fit", spying_fit)
    # Where each algorithm calls fit: its own module, or the shared online (GRPO, RLOO) / preference (DPO, RM,
    # RLAIF, online DPO) / experimental (ORPO, CPO, SimPO) helpers.
    for name in ("sft", "ppo", "cai", "online", "preference", "kto", "experimental"):
        monkeypatch.setattr(f"zoo.algos.{name}.fit", spying_fit)
    return seen


def _check_run_dir(out, metrics):
    for name in ("metrics.json", "config.yaml", "env.json", "samples.jsonl"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "metrics.json").read_text())
    for prefix in ("before", "eval"):
        for key in HARNESS_KEYS:
            assert f"{prefix}/{key}" in on_disk, f"{prefix}/{key}"
    for key in ("gold_reward", "win_rate", "length", "eos_rate", "distinct_1", "distinct_2"):
        assert metrics[f"eval/{key}"] is not None
    assert 0 < metrics["eval/length"] <= 8
    assert math.isfinite(metrics["eval/kl"])
    # The reported numbers, recomputed from the samples written beside them: a metric taken from other samples,
    # a record under the wrong policy or a value lost on the way to metrics.json shows here.
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    before = [r for r in records if r["policy"] == "before"]
    after = [r for r in records if r["policy"] == "after"]
    assert after and len(before) == len(after) == len(records) // 2
    assert [r["prompt"] for r in before] == [r["prompt"] for r in after]  # the same held-out prompts, in order

    def mean(values):
        values = [float(v) for v in values if v is not None]
        return sum(values) / len(values) if values else None

    judged_by = "gold" if after[0]["gold"] is not None else "proxy"  # the win rate's signal, as in the harness
    pairs = [(a[judged_by], b[judged_by]) for a, b in zip(after, before)]
    expected = {"eval/win_rate": mean(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs)}
    for prefix, rows in (("before", before), ("eval", after)):
        expected.update({f"{prefix}/gold_reward": mean(r["gold"] for r in rows),
                         f"{prefix}/proxy_reward": mean(r["proxy"] for r in rows),
                         f"{prefix}/kl": mean(r["kl"] for r in rows),
                         f"{prefix}/eos_rate": mean(r["finished"] for r in rows)})
    assert expected["eval/gold_reward"] is not None
    for source in (on_disk, metrics):
        for key, value in expected.items():
            assert source[key] == (None if value is None else pytest.approx(value)), key
    env = json.loads((out / "env.json").read_text())
    assert env["seed"] == 0 and "torch" in env["versions"]
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():  # the code the run replays from
        import subprocess

        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        assert env["code"]["commit"] == head.strip() and isinstance(env["code"]["dirty"], bool)


@pytest.mark.parametrize("algo,peft", [(a, p) for a in ("sft", "rm", "dpo") for p in ("none", "lora", "qlora")]
                         + [("ppo", "none"), ("ppo", "lora"), ("ppo", "qlora"), ("grpo", "lora"), ("grpo", "qlora"),
                            ("rloo", "lora"), ("cai", "lora"), ("rlaif", "lora"), ("rlaif_rm", "lora"),
                            ("online_dpo", "none"), ("online_dpo", "lora"), ("kto", "none"), ("kto", "lora"),
                            ("kto", "qlora"), ("orpo", "lora"), ("orpo", "qlora"), ("simpo", "lora"), ("cpo", "lora")])
def test_algorithm_end_to_end(compose, watch_training, dense_reward, tmp_path, algo, peft):
    out = tmp_path / "run"
    # Online algorithms get a dense toy reward: a random tiny model's samples all score 0 on VADER, and a
    # group with no reward variance has no gradient.
    extra = [dense_reward] if algo in ("ppo", "grpo", "rloo") else []
    if peft == "qlora":
        # TRL keeps QLoRA adapters in bf16 (as the QLoRA paper does). At step 2 lora_A's gradient is still tiny
        # (lora_B was zero until step 1), and an update that small rounds away in bf16; from step 3 on all move.
        extra.append("trainer.max_steps=3")
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
    # QLoRA's base really is 4-bit (every Linear but the LM head), and plain LoRA's is not.
    assert (stage["linear4bit"] >= 14) if peft == "qlora" else stage["linear4bit"] == 0
    if algo == "ppo":
        assert any(n.startswith("value.") for n in stage["trainable"]), "the value model did not train"
    if algo == "rm":
        assert 0.0 <= metrics["rm/accuracy"] <= 1.0
    if algo in ("rm", "rlaif_rm", "ppo", "grpo", "rloo"):
        assert metrics["eval/proxy_reward"] is not None  # the trained RM / the configured reward
    _check_run_dir(out, metrics)
    assert (out / "stages" / algo / "model" / "config.json").is_file()
    assert not (out / "stages" / algo / "checkpoints").exists()


@pytest.mark.parametrize("algo", ["dpo", "ppo"])
def test_bf16_autocast_trains_on_every_cpu(compose, watch_training, dense_reward, tmp_path, algo):
    """trainer.bf16=true (what `auto` picks on CPUs with native bf16; emulated, slower, elsewhere) trains too."""
    extra = [dense_reward] if algo == "ppo" else []
    metrics = run(compose(f"algo={algo}", "trainer.bf16=true", "trainer.max_steps=3", *extra,
                          output_dir=tmp_path / "run"))
    (stage,) = watch_training
    assert math.isfinite(metrics[f"{algo}/train_loss"])
    assert stage["trainable"] and all(stage["trainable"].values())
    assert stage["frozen"] and all(stage["frozen"].values())


def test_arithmetic_accuracy_reported(compose, tmp_path, monkeypatch):
    """Exact-answer accuracy and the arithmetic task's gold reward, on completions whose answers are known: the
    harness's samples are replaced by "The answer is N." with the right N for the 1st and 3rd held-out prompts
    and a wrong one for the others, so both must be 0.5 and the records' gold 1, 0, 1, 0 (the random tiny model
    itself answers nothing right: 0 == 0 whatever accuracy computed)."""
    from zoo.data import load_task
    from zoo.eval import harness

    overrides = ("algo=dpo", "data=arithmetic", "eval.num_prompts=4")
    answers = {r["prompt"][-1]["content"]: int(r["answer"]) for r in load_task(compose(*overrides)).eval}
    original = harness.sample

    def known_answers(model, tokenizer, prompts, **kwargs):
        samples = original(model, tokenizer, prompts, **kwargs)
        given = [answers[p[-1]["content"]] + (0 if i % 2 == 0 else 1) for i, p in enumerate(prompts)]
        samples.completions = [[{"role": "assistant", "content": f"The answer is {n}."}] for n in given]
        return samples

    monkeypatch.setattr(harness, "sample", known_answers)
    out = tmp_path / "run"
    metrics = run(compose(*overrides, output_dir=out))
    for prefix in ("before", "eval"):
        assert metrics[f"{prefix}/accuracy"] == 0.5 and metrics[f"{prefix}/gold_reward"] == 0.5, prefix
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["gold"] for r in records if r["policy"] == "after"] == [1.0, 0.0, 1.0, 0.0]


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
def test_every_dpo_loss_type_trains(compose, watch_training, tmp_path, loss_type):
    """Every loss_type TRL 1.16 lists runs through the zoo on built-in pairs, gives a finite loss and moves the
    adapter: after one step every lora_B (zero at the start, so its gradient is the loss's) has moved, while the
    base weights stayed as they were. (lora_A's gradient is zero at the first step, with lora_B still zero.)"""
    extra = {"robust": ["algo.args.label_smoothing=0.1"], "exo_pair": ["algo.args.label_smoothing=0.001"]}.get(
        loss_type, [])
    metrics = run(compose("algo=dpo", "data=arithmetic", f"algo.args.loss_type={loss_type}", "trainer.max_steps=1",
                          "eval.num_prompts=1", *extra, output_dir=tmp_path / "run"))
    assert math.isfinite(metrics["dpo/train_loss"])
    (stage,) = watch_training
    moved = {n: m for n, m in stage["trainable"].items() if "lora_B" in n}
    assert moved and all(moved.values()), f"{loss_type}: {sum(not m for m in moved.values())} of {len(moved)} " \
        f"lora_B tensors did not move"
    assert stage["frozen"] and all(stage["frozen"].values()), f"{loss_type}: a frozen base weight changed"


def test_instructgpt_pipeline(compose, watch_training, tmp_path):
    """SFT -> RM -> PPO: the RM is PPO's reward and initialises the value model; eval compares SFT with PPO."""
    out = tmp_path / "run"
    metrics = run(compose("experiment=instructgpt", "model=tiny", "data.max_rows=96", "algo.args.max_steps=2",
                          "stages.rm.pairs.num_samples=8", output_dir=out))
    assert [s["metrics"] and next(iter(s["metrics"])).split("/")[0] for s in watch_training] == ["sft", "rm", "ppo"]
    assert metrics["eval/proxy_reward"] is not None and metrics["before/proxy_reward"] is not None
    assert 0.0 <= metrics["rm/accuracy"] <= 1.0 and "ppo/train_loss" in metrics
    # What each stage made, for zoo.compare's step axis (the RM stage moves no policy).
    assert [metrics[f"{s}/produces"] for s in ("sft", "rm", "ppo")] == ["policy", "reward_model", "policy"]
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
