"""Each of the zoo's performance levers (zoo/levers.py, trainer.zoo.*) leaves results unchanged: the same training
losses with it on and off on the tiny model, and proof that it really changes what runs (no timing here: that is
bench/cpu_defaults.py's job)."""

from __future__ import annotations

import pytest

import zoo.algos.base as base
from zoo.train import run


@pytest.fixture
def scored_rows(monkeypatch):
    """How many rows TRL's chunked LM-head kernel scores per call, and the training losses of each run."""
    import trl.trainer.utils as trl_utils

    seen = {"rows": [], "losses": []}
    kernel = trl_utils._ChunkedLogProbFunction

    class Counting(kernel):
        @staticmethod
        def forward(ctx, hidden, *args):
            seen["rows"].append(hidden.shape[0])
            return kernel.forward(ctx, hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    real_fit = base.fit

    def fit(trainer, ctx):
        out = real_fit(trainer, ctx)
        seen["losses"].append([h["loss"] for h in trainer.state.log_history if "loss" in h])
        return out

    for module in ("zoo.algos.sft", "zoo.algos.preference", "zoo.algos.online"):
        monkeypatch.setattr(f"{module}.fit", fit)
    return seen


@pytest.mark.parametrize("algo,extra", [
    ("sft", ()), ("dpo", ()), ("dpo", ("algo.args.loss_type=ipo",)),
    ("grpo", ("+reward.functions.fraction_of_a=1.0", "algo.args.beta=0.04")),
])
def test_completion_only_logits_keeps_the_losses(compose, scored_rows, dense_reward, tmp_path, algo, extra):
    def losses(on: bool) -> tuple[list[float], int]:
        start = len(scored_rows["rows"])
        run(compose(f"algo={algo}", "data=arithmetic", "trainer.max_steps=3", *extra,
                    f"trainer.zoo.completion_only_logits={str(on).lower()}", output_dir=tmp_path / f"run-{on}"))
        return scored_rows["losses"][-1], sum(scored_rows["rows"][start:])

    on, rows_on = losses(True)
    off, rows_off = losses(False)
    assert len(on) == 3 and on == pytest.approx(off, rel=1e-5, abs=1e-6)
    assert rows_on < rows_off  # the prompt positions really were skipped


def test_completion_only_logits_restores_trl():
    import trl.trainer.utils as trl_utils
    import torch

    from zoo.levers import completion_only_logits

    original = trl_utils._use_triton
    with completion_only_logits(True):
        assert trl_utils._use_triton(torch.device("cpu")) is True
    assert trl_utils._use_triton is original and trl_utils._use_triton(torch.device("cpu")) is False


def test_trainer_cpu_sets_what_the_bench_chose(compose):
    """trainer=cpu as composed (the fixture pins bf16, so it is asked for explicitly): the settings the CPU bench
    measured as fastest at an unchanged loss — no gradient checkpointing (with the completion-only head it cost
    ~25% per DPO step), bf16 only where native, the completion-only LM head."""
    from zoo import config

    cfg = compose("trainer.bf16=auto")
    assert cfg.trainer.gradient_checkpointing is False and cfg.trainer.bf16 == "auto"
    assert cfg.trainer.zoo.completion_only_logits is True
    assert "zoo" not in config.training_arguments(cfg)  # never handed to TRL
