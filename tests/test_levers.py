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


@pytest.mark.parametrize("peft", ["none", "lora"])
def test_ppo_completion_only_head_matches_the_full_head(compose, peft):
    """The zoo's PPO applies the LM head at response positions only: same log-probs and entropies as the full
    head gathered afterwards, for the policy and for the adapter-disabled reference."""
    from zoo.models import load_policy, wrap_peft
    from zoo.rl.ppo_trainer import _Disabled, pack, policy_forward

    import torch

    bundle = load_policy(compose(f"peft={peft}"))
    model = wrap_peft(bundle).eval()  # as the PPO trainer runs it: dropout off
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)  # a trained-looking adapter, so disabling it changes the outputs
    tok = bundle.tokenizer
    prompts = [tok.encode(t) for t in ("The film was", "A long and winding story about the sea", "Hi")]
    responses = [tok.encode(t) for t in (" very good indeed", " and", " there, how are you today")]
    batch = pack(prompts, responses, tok.pad_token_id)
    full = policy_forward(model, batch, 0.7, with_entropy=True, completion_only=False)
    part = policy_forward(model, batch, 0.7, with_entropy=True, completion_only=True)
    mask = batch.mask.bool()
    for a, b in zip(full, part):
        assert torch.allclose(a[mask], b[mask], atol=1e-4), (a[mask] - b[mask]).abs().max()
    if peft == "lora":
        with _Disabled(model) as ref:
            ref_part = policy_forward(ref, batch, 0.7, completion_only=True)[0]
            ref_full = policy_forward(ref, batch, 0.7, completion_only=False)[0]
        assert torch.allclose(ref_part[mask], ref_full[mask], atol=1e-4)
        assert not torch.allclose(ref_part[mask], part[0][mask], atol=1e-3)  # the adapter really was off


def test_harness_logprobs_head_on_completions_matches_the_full_head(compose):
    """zoo.generation.completion_logprobs (the harness's KL) scores completions with the head at their positions
    only; the same per-token log-probs as the full head, rows of different prompt and completion lengths."""
    import torch

    from zoo.generation import completion_logprobs
    from zoo.models import load_policy

    bundle = load_policy(compose())
    tok = bundle.tokenizer
    prompts = [tok.encode(t) for t in ("The film was", "A long and winding story about the sea", "Hi")]
    completions = [tok.encode(t) for t in (" very good indeed", " and", " there, how are you today")]
    part = completion_logprobs(bundle.model, prompts, completions, tok.pad_token_id, 0.7, batch_size=2)
    full = completion_logprobs(bundle.model, prompts, completions, tok.pad_token_id, 0.7, batch_size=2,
                               completion_only=False)
    assert [len(x) for x in part] == [len(c) for c in completions]
    for a, b in zip(part, full):
        assert torch.allclose(a, b, atol=1e-4)
