"""Each of the zoo's performance levers (zoo/levers.py, zoo/sampling_levers.py, zoo/sampling_weights.py;
trainer.zoo.*) leaves results unchanged: the same training losses with it on and off on the tiny model, and proof that
it really changes what runs (no timing here: that is bench/cpu_defaults.py's job)."""

from __future__ import annotations

import math

import pytest
import torch

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
    import zoo.logprob_head as head

    cpu_kernel = head.CpuLogProbFunction

    class CountingCpu(cpu_kernel):  # trainer.zoo.cpu_logprob_head's function, where it stands in for TRL's
        @staticmethod
        def forward(ctx, hidden, *args):
            seen["rows"].append(hidden.shape[0])
            seen["cpu_calls"] = seen.get("cpu_calls", 0) + 1
            return cpu_kernel.forward(ctx, hidden, *args)

    monkeypatch.setattr(head, "CpuLogProbFunction", CountingCpu)
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


@pytest.mark.parametrize("algo,extra", [
    ("sft", ()), ("dpo", ()), ("grpo", ("+reward.functions.fraction_of_a=1.0", "algo.args.beta=0.04")),
])
def test_cpu_logprob_head_keeps_the_losses(compose, scored_rows, dense_reward, tmp_path, algo, extra):
    """trainer.zoo.cpu_logprob_head: the zoo's CPU head stands in for TRL's chunked kernel (every call while on,
    none while off) and the training losses match to fp32 rounding (LoRA dropout on: both runs draw the same
    masks, since the head draws no random numbers)."""
    losses = {}
    for on in (True, False):
        scored_rows["cpu_calls"] = 0
        run(compose(f"algo={algo}", "data=arithmetic", "trainer.max_steps=3", *extra,
                    f"trainer.zoo.cpu_logprob_head={str(on).lower()}", output_dir=tmp_path / f"run-{on}"))
        losses[on] = scored_rows["losses"][-1]
        assert (scored_rows["cpu_calls"] > 0) is on
    assert len(losses[True]) == 3 and all(math.isfinite(x) for x in losses[True])
    assert losses[True] == pytest.approx(losses[False], rel=1e-4, abs=1e-6)


def test_sparse_dropout_trains_through_the_adapters(compose, tmp_path, monkeypatch):
    """trainer.zoo.sparse_dropout: LoRA's dropouts draw their masks by positions during training (the distribution
    is tests/test_sparse_dropout.py's), and only there: off, torch's dropout runs; after the stage, the modules are
    torch's again (the harness samples in eval mode either way)."""
    import zoo.sparse_dropout as sd

    calls, real = [], sd.sparse_dropout
    monkeypatch.setattr(sd, "sparse_dropout", lambda x, p: calls.append(p) or real(x, p))
    seen = {}
    real_fit = base.fit

    def fit(trainer, ctx):
        seen["model"] = trainer.model
        return real_fit(trainer, ctx)

    monkeypatch.setattr("zoo.algos.sft.fit", fit)  # SFT keeps dropout on (TRL's DPO config turns it off)
    metrics = {}
    for on in (True, False):
        calls.clear()
        metrics[on] = run(compose("algo=sft", "data=arithmetic", "trainer.max_steps=2", "peft.lora_dropout=0.05",
                                  f"trainer.zoo.sparse_dropout={str(on).lower()}", output_dir=tmp_path / f"run-{on}"))
        dropouts = [m for m in seen["model"].modules() if type(m) is torch.nn.Dropout]
        assert dropouts and all("forward" not in vars(m) for m in dropouts)
        assert (set(calls) == {0.05} and len(calls) >= 2 * len(dropouts)) if on else calls == []
    assert all(math.isfinite(m["sft/train_loss"]) for m in metrics.values())


@pytest.mark.parametrize("algo", ["sft", "dpo", "rm"])
def test_eager_attention_keeps_the_losses(compose, tmp_path, monkeypatch, algo):
    """trainer.zoo.eager_attention: the models load with transformers' eager attention unless model.
    attn_implementation says otherwise; the training losses match SDPA's to float rounding (fp32)."""
    import zoo.models as models

    loaded = []
    real = models._from_pretrained

    def spying(auto_cls, path, cfg, **extra):
        model = real(auto_cls, path, cfg, **extra)
        loaded.append(model.config._attn_implementation)
        return model

    monkeypatch.setattr(models, "_from_pretrained", spying)
    losses = {}
    for on in (True, False):
        loaded.clear()
        metrics = run(compose(f"algo={algo}", "data=arithmetic", "trainer.max_steps=3",
                              f"trainer.zoo.eager_attention={str(on).lower()}", output_dir=tmp_path / f"run-{on}"))
        assert loaded and set(loaded) == {"eager" if on else "sdpa"}
        losses[on] = metrics[f"{algo}/train_loss"]
    assert math.isfinite(losses[True]) and losses[True] == pytest.approx(losses[False], rel=1e-5)
    loaded.clear()
    run(compose("algo=sft", "data=arithmetic", "trainer.max_steps=1", "+model.attn_implementation=sdpa",
                output_dir=tmp_path / "explicit"))
    assert set(loaded) == {"sdpa"}  # an explicit model.attn_implementation wins


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
    assert cfg.trainer.activation_checkpointing is False and cfg.trainer.bf16 == "auto"
    assert cfg.trainer.zoo.completion_only_logits is True
    assert cfg.trainer.zoo.eager_attention is True and "attn_implementation" not in cfg.model  # 1.18x per DPO step
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


# ---------------------------------------------------------------------------------------- sampling levers


def _levers(**on):
    """A trainer block with only the named sampling (and decoding) levers on."""
    from omegaconf import OmegaConf

    from zoo.levers import DECODING, SAMPLING

    return OmegaConf.create({"zoo": {name: bool(on.get(name, False)) for name in (*SAMPLING, *DECODING)}})


def _adapted(compose, dtype=None):
    """The tiny model under a LoRA adapter that changes its outputs (as a trained one would)."""
    import torch

    from zoo.models import load_policy, wrap_peft

    bundle = load_policy(compose("peft=lora"))
    torch.manual_seed(0)  # lora_A's init: the same adapter whatever ran before
    model = wrap_peft(bundle)
    if dtype is not None:
        model.to(dtype)
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return model, bundle.tokenizer


PROMPTS = ["The film was", "A long and winding story about the sea", "Hi"]


def _sample(model, tok, trainer_cfg, temperature=1.0):
    from zoo import levers
    from zoo.generation import sample

    with levers.using(trainer_cfg):
        return sample(model, tok, PROMPTS, max_new_tokens=12, temperature=temperature, num_return_sequences=2,
                      seed=3).completion_ids


def test_contiguous_head_gives_the_same_tokens(compose, monkeypatch):
    model, tok = _adapted(compose)
    strided = []
    head = model.get_output_embeddings()
    real = type(head).forward
    def spying(self, x):
        strided.append(not x.is_contiguous())
        return real(self, x)

    monkeypatch.setattr(type(head), "forward", spying)
    off = _sample(model, tok, _levers())
    assert any(strided)  # the prompt's last position does reach the head as a strided view without the lever
    strided.clear()
    on = _sample(model, tok, _levers(contiguous_head=True))
    assert on == off and strided and not any(strided)
    assert not head._forward_pre_hooks  # removed after sampling


def test_cdf_multinomial_draws_from_the_distribution():
    import torch

    from zoo.sampling_levers import cdf_multinomial

    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 2.0, 2.0]])  # rows need not be normalised
    torch.manual_seed(0)
    n = 20000
    draws = torch.cat([cdf_multinomial(probs, 1) for _ in range(n)], dim=1)
    assert draws.shape == (2, n)
    for row, p in zip(draws, probs / probs.sum(-1, keepdim=True)):
        freq = torch.bincount(row, minlength=5).double() / n
        sigma = (p * (1 - p) / n).sqrt()
        assert torch.all((freq - p).abs() <= 5 * sigma + 1e-12), (freq, p)
        assert torch.all(freq[p == 0] == 0)  # zero-probability tokens never drawn
    # Several samples per row are not its job: torch.multinomial answers them.
    assert cdf_multinomial(probs, 2).shape == (2, 2)


def test_cdf_sampling_is_used_in_generate_and_restored(compose, monkeypatch):
    import torch

    from zoo import sampling_levers

    model, tok = _adapted(compose)
    calls = []
    real = sampling_levers.cdf_multinomial
    monkeypatch.setattr(sampling_levers, "cdf_multinomial", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    original = torch.multinomial
    _sample(model, tok, _levers(cdf_sampling=True))
    assert len(calls) >= 12  # one draw per generated position
    assert torch.multinomial is original
    calls.clear()
    _sample(model, tok, _levers())
    assert not calls


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "autocast"])
def test_merged_lora_sampling_same_tokens_base_untouched(compose, dtype):
    """Greedy samples (same logits up to rounding) with the adapter folded in and not; the frozen base weights are
    bit-identical afterwards and the adapter is unmerged again. `autocast`: fp32 weights sampled under bf16
    autocast (the zoo's PPO rollouts), where the folded weight is made in bf16."""
    from contextlib import nullcontext

    import torch

    model, tok = _adapted(compose, None if dtype == "autocast" else getattr(torch, dtype))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "autocast" else nullcontext()
    seen = []
    layer = next(m for m in model.modules() if type(m).__name__ == "Linear" and hasattr(m, "base_layer"))
    layer.register_forward_pre_hook(lambda m, args: seen.append(m.base_layer.weight.dtype))
    with amp:
        off = _sample(model, tok, _levers(), temperature=0)
        seen.clear()
        on = _sample(model, tok, _levers(merged_lora_sampling=True), temperature=0)
    assert set(seen) == {torch.float32 if dtype == "float32" else torch.bfloat16}
    if dtype == "float32":
        assert on == off
    else:  # bf16 rounding of the folded weight can flip a near-tie in a greedy sequence, on some CPUs and not
        # others: compare the distributions instead, teacher-forced on the unmerged samples
        from zoo.generation import completion_logprobs
        from zoo.sampling_weights import _merged_lora

        prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS for _ in range(2)]
        with amp, torch.no_grad():
            unmerged = completion_logprobs(model, prompts, off, tok.pad_token_id)
            with _merged_lora(model):
                merged = completion_logprobs(model, prompts, off, tok.pad_token_id)
            with model.disable_adapter():
                base = completion_logprobs(model, prompts, off, tok.pad_token_id)
        rounding = max(float((a - b).abs().max()) for a, b in zip(merged, unmerged))
        adapter = max(float((a - b).abs().max()) for a, b in zip(base, unmerged))
        assert rounding < 0.1 < adapter, (rounding, adapter)  # bf16 rounding, far below what the adapter changes
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    from peft.tuners.lora import Linear as LoraLinear

    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    assert layers and not any(m.merged for m in layers)
    assert "generate" not in model.__dict__  # the wrapper is gone


def test_merged_lora_really_folds_the_adapter(compose, monkeypatch):
    """While generate runs under the lever, LoRA layers skip their adapter matmuls (the base weight holds them)."""
    from peft.tuners.lora import Linear as LoraLinear

    model, tok = _adapted(compose)
    merged_seen = []
    layer = next(m for m in model.modules() if isinstance(m, LoraLinear))
    layer.register_forward_pre_hook(lambda m, args: merged_seen.append(m.merged))
    _sample(model, tok, _levers(merged_lora_sampling=True))
    assert merged_seen and all(merged_seen)
    merged_seen.clear()
    _sample(model, tok, _levers())
    assert merged_seen and not any(merged_seen)


@pytest.mark.parametrize("peft", ["lora", "none"])
def test_cast_once_gives_bit_identical_logits(compose, peft):
    """Under bf16 autocast every Linear (LoRA's base and adapter layers, the LM head) gets its bf16 weight once per
    generate call instead of at every step: the same logits bit for bit; the module tensors (the head's is the
    tied fp32 embedding) are untouched and the layers' own forwards come back; nested calls leave the outer
    cast in place; outside autocast nothing is swapped."""
    import torch

    from zoo.sampling_weights import _cast_once
    from zoo.models import load_policy

    model = _adapted(compose)[0] if peft == "lora" else load_policy(compose("peft=none")).model
    model.eval()  # LoRA dropout off: two forwards must agree
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    head = model.get_output_embeddings()
    ids = torch.tensor([[1, 5, 9, 200, 7], [3, 3, 40, 2, 11]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model(input_ids=ids).logits
        with _cast_once(model):
            assert all("forward" in m.__dict__ for m in linears) and "forward" in head.__dict__
            with _cast_once(model):  # nested generate calls (PPO's sampler inside fit's levers)
                pass
            assert all("forward" in m.__dict__ for m in linears)
            cast = model(input_ids=ids).logits
    with _cast_once(model):
        assert not any("forward" in m.__dict__ for m in linears)
    assert torch.equal(plain, cast)
    assert not any("forward" in m.__dict__ for m in linears)
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("packable", [True, False])
def test_packed_sampling_keeps_the_logits(compose, monkeypatch, packable):
    """trainer.zoo.packed_sampling: under bf16 autocast every Linear whose bf16 weight oneDNN can take prepacked runs
    oneDNN's linear on the packed copy (folded adapters and the head included): the logits agree with plain
    autocast up to bf16 rounding (bit for bit on the CPU it was measured on), the greedy tokens are the same, and
    the model's tensors are untouched. Where oneDNN has no bf16 path, the plain cast-once runs instead."""
    import functools

    import torch

    from zoo import levers, sampling_levers, sampling_weights

    if packable and not sampling_weights._packable(torch.zeros(1), torch.bfloat16):
        pytest.skip("this CPU's oneDNN has no bf16 path: the packed weights cannot be made here")
    if not packable:
        monkeypatch.setattr(sampling_weights, "_packable", lambda weight, dtype: False)
    model, tok = _adapted(compose)
    model.eval()
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    ids = torch.tensor([[1, 5, 9, 200, 7], [3, 3, 40, 2, 11]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model(input_ids=ids).logits.float()
        with sampling_weights._merged_lora(model), sampling_weights._cast_once(model, pack=True):
            kinds = {m.forward.func for m in linears if isinstance(m.forward, functools.partial)}
            packed = model(input_ids=ids).logits.float()
    assert kinds == ({sampling_weights._packed_linear} if packable else {torch.nn.functional.linear})
    assert not any("forward" in m.__dict__ for m in linears)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    tv = 0.5 * (plain.softmax(-1) - packed.softmax(-1)).abs().sum(-1)
    assert tv.max() < 0.02  # bf16 rounding of the folded weights, no more
    enc = tok(["The film was", "A long"], return_tensors="pt", padding=True)
    outs = {}
    for on in (False, True):
        with levers.using(_levers(merged_lora_sampling=True, cast_once_sampling=True, packed_sampling=on)):
            with sampling_levers.fast_generate(model, autocast_dtype=torch.bfloat16):
                outs[on] = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(outs[True], outs[False])


def _attention_in(model) -> str:
    from zoo.sampling_levers import _transformers_model

    return _transformers_model(model).config._attn_implementation


def test_sdpa_sampling_samples_with_sdpa_where_the_lever_chose_eager(compose):
    """trainer.zoo.sdpa_sampling: a model that trainer.zoo.eager_attention loaded with eager attention samples with
    SDPA inside generate and is eager again afterwards; the same greedy tokens either way, the same logits to fp32
    rounding. A model whose eager attention the user asked for (model.attn_implementation) keeps it."""
    import torch

    from zoo import levers, sampling_levers

    model, tok = _adapted(compose)
    model.eval()
    assert _attention_in(model) == "eager"
    seen = []
    attention = next(m for m in model.modules() if type(m).__name__.endswith("Attention"))
    attention.register_forward_pre_hook(lambda module, args: seen.append(module.config._attn_implementation))
    enc = tok(["The film was", "A long"], return_tensors="pt", padding=True)
    outs = {}
    for on in (True, False):
        seen.clear()
        with levers.using(_levers(sdpa_sampling=on)), sampling_levers.fast_generate(model):
            outs[on] = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
        assert set(seen) == {"sdpa" if on else "eager"} and _attention_in(model) == "eager"
    assert torch.equal(outs[True], outs[False])
    with torch.no_grad():
        eager = model(**enc).logits
        with sampling_levers._sdpa_attention(model):
            sdpa = model(**enc).logits
    mask = enc["attention_mask"].bool()
    torch.testing.assert_close(sdpa[mask], eager[mask], rtol=1e-4, atol=1e-4)

    asked, _ = _adapted(lambda *o: compose(*o, "+model.attn_implementation=eager"))
    with sampling_levers._sdpa_attention(asked):
        assert _attention_in(asked) == "eager"


def test_grpo_trains_eager_and_samples_with_sdpa(compose, dense_reward, tmp_path, monkeypatch):
    """In a run, TRL's GRPO generate (wrapped by the levers in fit) decodes with SDPA while the loss's forward and
    backward run the eager attention trainer.zoo.eager_attention chose."""
    import torch
    from transformers.models.llama import modeling_llama

    seen = []
    real = modeling_llama.LlamaAttention.forward

    def spying(self, *args, **kwargs):
        seen.append((torch.is_grad_enabled(), self.config._attn_implementation))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(modeling_llama.LlamaAttention, "forward", spying)
    metrics = run(compose("algo=grpo", "data=arithmetic", "trainer.max_steps=1", dense_reward, output_dir=tmp_path))
    assert {impl for grad, impl in seen if grad} == {"eager"}
    assert "sdpa" in {impl for grad, impl in seen if not grad}
    assert math.isfinite(metrics["grpo/train_loss"])


def test_cast_once_keeps_a_frozen_heads_copy_between_calls(compose):
    """Under autocast, cast-once sampling keeps the LM head's bf16 (packed where oneDNN can) copy from one generate
    call to the next while the head is unchanged, and makes it again after an in-place change; folded weights,
    weights that train and LoRA's base layers (peft merges into them in place) are never kept. The tokens are those
    of fresh copies."""
    import torch

    from zoo import levers, sampling_levers, sampling_weights

    model, tok = _adapted(compose)
    model.eval()
    head = model.get_output_embeddings()
    enc = tok(["The film was", "A long"], return_tensors="pt", padding=True)

    def generate():
        with levers.using(_levers(merged_lora_sampling=True, cast_once_sampling=True, packed_sampling=True)):
            with sampling_levers.fast_generate(model, autocast_dtype=torch.bfloat16):
                return model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)

    sampling_weights._KEPT.clear()
    first = generate()
    assert list(sampling_weights._KEPT) == [head]  # the folded base layers are new every call: not kept
    kept = sampling_weights._KEPT[head][1][0]
    assert torch.equal(generate(), first) and sampling_weights._KEPT[head][1][0] is kept
    with torch.no_grad():
        head.weight.mul_(1.0)  # the same values, a new version: made again
    assert torch.equal(generate(), first) and sampling_weights._KEPT[head][1][0] is not kept
    sampling_weights._KEPT.clear()
    head.weight.requires_grad_(True)  # a head that trains changes every step: copied per call only
    try:
        assert torch.equal(generate(), first) and head not in sampling_weights._KEPT
    finally:
        head.weight.requires_grad_(False)
    with levers.using(_levers(cast_once_sampling=True)), torch.autocast("cpu", dtype=torch.bfloat16):
        with sampling_weights._cast_once(model):  # adapters not folded: their base layers are cast, and not kept
            cast = [m for m in model.modules() if type(m) is torch.nn.Linear and "forward" in m.__dict__]
        assert len(cast) > 1 and list(sampling_weights._KEPT) == [head]  # peft merges into bases in place


def test_folding_uses_one_addmm_and_skips_the_folded_adapters(compose):
    """merged_lora_sampling folds W + scaling * B @ A in one addmm: peft's own delta to fp32 rounding; the folded
    layers' LoRA A/B then never run, so cast-once leaves them alone."""
    import torch

    from zoo.sampling_weights import _cast_once, _lora_layers, _merged_lora, _plus_delta

    model, _ = _adapted(compose)
    layer = _lora_layers(model)[0]
    weight = layer.base_layer.weight.data
    with torch.no_grad():
        ours = _plus_delta(layer, "default", weight)
        peft_delta = weight + layer.get_delta_weight("default")
    assert torch.allclose(ours, peft_delta, rtol=1e-6, atol=1e-7) and not torch.equal(ours, weight)
    adapters = [m for name, m in model.named_modules() if type(m) is torch.nn.Linear and "lora_" in name]
    with torch.autocast("cpu", dtype=torch.bfloat16), _merged_lora(model), _cast_once(model):
        assert adapters and not any("forward" in m.__dict__ for m in adapters)
    with torch.autocast("cpu", dtype=torch.bfloat16), _cast_once(model):  # not folded: cast as before
        assert all("forward" in m.__dict__ for m in adapters)


def test_fast_generate_runs_generate_under_the_callers_autocast(compose):
    """A Trainer with bf16 autocasts each forward but not `generate`: given the dtype, the levers run the whole call
    under it, so the adapters are folded into bf16 weights once (not cast again at every decoding step)."""
    import torch

    from zoo import levers, sampling_levers

    model, tok = _adapted(compose)
    layer = next(m for m in model.modules() if type(m).__name__ == "Linear" and hasattr(m, "base_layer"))
    seen = []
    layer.register_forward_pre_hook(
        lambda m, args: seen.append((torch.is_autocast_enabled("cpu"), m.base_layer.weight.dtype)))
    enc = tok(["The film was"], return_tensors="pt")
    with levers.using(_levers(merged_lora_sampling=True)):
        with sampling_levers.fast_generate(model, autocast_dtype=torch.bfloat16):
            model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
        assert seen and set(seen) == {(True, torch.bfloat16)}
        seen.clear()
        with sampling_levers.fast_generate(model):
            model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
        assert seen and set(seen) == {(False, torch.float32)}
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_bf16_training_samples_with_weights_cast_once(compose, dense_reward, tmp_path, monkeypatch, algo):
    """Under trainer.bf16 (every CPU runs it), PPO's sampler (nested inside fit's levers) and TRL's GRPO generate
    run under autocast with the head cast once per call, and training goes on to a finite loss."""
    from zoo import sampling_levers

    casts = []
    real = sampling_levers._cast_once

    def spying(model, **kwargs):
        import torch

        casts.append(torch.is_autocast_enabled("cpu"))
        return real(model, **kwargs)

    monkeypatch.setattr(sampling_levers, "_cast_once", spying)
    metrics = run(compose(f"algo={algo}", "data=arithmetic", "trainer.max_steps=1", "trainer.bf16=true",
                          dense_reward, output_dir=tmp_path))
    assert casts and casts[0] is True
    assert math.isfinite(metrics[f"{algo}/train_loss"])


@pytest.mark.parametrize("on", [True, False])
def test_preference_pairs_sampled_in_the_training_precision(compose, tmp_path, monkeypatch, dense_reward, on):
    """trainer.zoo.training_precision_sampling: the pairs DPO trains on are sampled under the stage's bf16 autocast
    (trainer.bf16=true runs on every CPU); off, in the model's own precision. The pairs are made either way."""
    import torch

    import zoo.data.pairs as pairs_module

    seen = []
    real = pairs_module.sample

    def spying(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pairs_module, "sample", spying)
    metrics = run(compose("algo=dpo", "data=sentiment", "data.gold=fraction_of_e", "trainer.max_steps=1",
                          "trainer.bf16=true", f"trainer.zoo.training_precision_sampling={str(on).lower()}",
                          output_dir=tmp_path))  # a dense toy gold: VADER ties nearly all of the tiny model's pairs
    assert seen == [on]
    assert metrics["dpo/num_pairs"] > 0 and math.isfinite(metrics["dpo/train_loss"])


def test_training_precision_samples_the_same_distribution_up_to_rounding(compose):
    """What training_precision_sampling changes: the next-token distribution the sampler draws from, computed under
    bf16 autocast instead of fp32, differs by bf16 rounding only (total variation well under 0.05 at every position
    of a few prompts on the tiny model), so the pairs are drawn from the same policy."""
    import torch

    model, tok = _adapted(compose)
    model.eval()
    ids = tok(["The film was", "A long and winding story about the sea"], return_tensors="pt", padding=True)
    with torch.no_grad():
        exact = model(**ids).logits.float().softmax(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = model(**ids).logits.float().softmax(-1)
    tv = 0.5 * (exact - rounded).abs().sum(-1)[ids["attention_mask"].bool()]
    assert tv.max() < 0.05 and tv.max() > 0  # really computed in another precision, and close


def test_trainer_cpu_turns_the_sampling_levers_on(compose):
    from zoo.levers import SAMPLING, lever

    cfg = compose()
    assert all(lever(cfg.trainer, name) for name in SAMPLING)
    assert lever(cfg.trainer, "length_buckets") and not lever(cfg.trainer, "static_cache")
    assert cfg.trainer.zoo.cast_once_sampling is True and cfg.trainer.zoo.training_precision_sampling is True


@pytest.mark.parametrize("on", [True, False])
def test_trl_grpo_samples_under_the_levers(compose, dense_reward, tmp_path, monkeypatch, on):
    """TRL's GRPO calls the policy's generate itself: `fit` puts the sampling levers around it, as trainer.zoo says."""
    from zoo import sampling_levers, sampling_weights

    folded = []
    real = sampling_levers._merged_lora

    def counting(model, **kwargs):
        folded.append(len(sampling_weights._lora_layers(model)))
        return real(model, **kwargs)

    monkeypatch.setattr(sampling_levers, "_merged_lora", counting)
    flag = str(on).lower()
    run(compose("algo=grpo", "data=arithmetic", "trainer.max_steps=2", "+reward.functions.fraction_of_a=1.0",
                f"trainer.zoo.merged_lora_sampling={flag}", f"trainer.zoo.cdf_sampling={flag}",
                output_dir=tmp_path))
    if on:
        # One generate call per training step with the adapters folded in (then the harness samples the merged
        # export, which has no adapter left to fold).
        assert sum(n > 0 for n in folded) == 2
    else:
        assert not folded


# ---------------------------------------------------------------------------------------- decoding levers
# Prompts of very different lengths, interleaved, so batches of 2 cut in the caller's order pad a lot.
RAGGED = ["Hi", "A long and winding story about the sea and the ships upon it", "The film",
          "Once upon a time in a small town by the river there lived", "Ok", "The best review I ever read said"]


def _ragged(model, tok, trainer_cfg, temperature=0.0, **kw):
    from zoo import levers
    from zoo.generation import sample

    with levers.using(trainer_cfg):
        return sample(model, tok, RAGGED, max_new_tokens=8, temperature=temperature, batch_size=2, seed=5, **kw)


def test_length_buckets_same_greedy_tokens_in_the_callers_order(compose):
    """Greedy: each prompt gets the tokens it gets alone (batch of 1) whichever batch it lands in; the rows come back
    in the caller's order; the batches carry less left padding."""
    model, tok = _adapted(compose)
    off = _ragged(model, tok, _levers())
    on = _ragged(model, tok, _levers(length_buckets=True))
    from zoo import levers
    from zoo.generation import sample

    with levers.using(_levers()):
        alone = sample(model, tok, RAGGED, max_new_tokens=8, temperature=0, batch_size=1)
    assert on.prompts == off.prompts == RAGGED
    assert on.completion_ids == off.completion_ids == alone.completion_ids
    assert alone.prompt_padding == 0 and on.prompt_padding < off.prompt_padding
    assert on.decoding_steps == off.decoding_steps == 3 * 8  # no EOS on the random model: 3 batches x 8 steps


def test_length_buckets_sampled_are_the_rows_reordered(compose):
    """Sampled: the lever is a reordering of the rows and nothing else. Bucketed samples are exactly what the
    sampler gives the length-sorted prompt list (then put back in the caller's order), so each prompt is drawn
    from its own next-token distributions as before; which draws it gets depends on its batch, so the samples
    themselves differ from the unbucketed ones (the same distribution, another stream)."""
    from zoo import levers
    from zoo.generation import plan_batches, sample

    model, tok = _adapted(compose)
    on = _ragged(model, tok, _levers(length_buckets=True), temperature=1.0)
    off = _ragged(model, tok, _levers(), temperature=1.0)
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in RAGGED]
    order = [i for batch in plan_batches(lengths, 2, by_length=True) for i in batch]
    with levers.using(_levers()):
        sorted_run = sample(model, tok, [RAGGED[i] for i in order], max_new_tokens=8, temperature=1.0,
                            batch_size=2, seed=5)
    unsorted = [None] * len(RAGGED)
    for pos, i in enumerate(order):
        unsorted[i] = sorted_run.completion_ids[pos]
    assert order != list(range(len(RAGGED)))  # the lever did reorder
    assert on.completion_ids == unsorted and on.prompts == RAGGED
    assert on.completion_ids != off.completion_ids  # another stream: documented, not hidden
    vocab = model.get_output_embeddings().weight.shape[0]
    assert all(len(c) == 8 and all(0 <= t < vocab for t in c) for c in on.completion_ids)


def test_batches_stop_when_every_row_has_finished(compose, monkeypatch):
    """HF's generate already stops a batch once all its rows have produced an EOS (no lever needed): with each
    row's third greedy token made an EOS, every batch runs 3 steps, not max_new_tokens."""
    model, tok = _adapted(compose)
    first = _ragged(model, tok, _levers())
    third = sorted({c[2] for c in first.completion_ids})
    monkeypatch.setattr(model.generation_config, "eos_token_id", third)
    stopped = _ragged(model, tok, _levers())
    assert all(f for f in stopped.finished) and all(len(c) <= 3 for c in stopped.completion_ids)
    assert stopped.decoding_steps <= 3 * 3 < first.decoding_steps  # 3 batches of at most 3 steps
    assert stopped.completion_ids == [c[: len(s)] for c, s in zip(first.completion_ids, stopped.completion_ids)]


def _count_static_caches(monkeypatch) -> list:
    from transformers.cache_utils import StaticCache

    made, real = [], StaticCache.__init__

    def init(self, *args, **kwargs):
        made.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(StaticCache, "__init__", init)
    return made


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_static_cache_same_tokens(compose, monkeypatch, temperature):
    """A preallocated StaticCache instead of the DynamicCache: the same tokens, greedy and sampled (the draws are
    the same random stream), with the other sampling levers on as in a run."""
    model, tok = _adapted(compose)
    made = _count_static_caches(monkeypatch)
    on_all = dict(contiguous_head=True, cdf_sampling=True, merged_lora_sampling=True, cast_once_sampling=True)
    off = _ragged(model, tok, _levers(**on_all), temperature=temperature)
    assert not made
    on = _ragged(model, tok, _levers(**on_all, static_cache=True), temperature=temperature)
    assert len(made) == 3  # one per batch
    assert on.completion_ids == off.completion_ids


def test_compiled_decode_asks_transformers_to_compile_on_every_device(compose, monkeypatch):
    """compiled_decode hands generate a static cache and a CompileConfig allowed on CPU (transformers compiles on
    accelerators only otherwise), overriding TRL's disable_compile; a caller's own keyword wins. The compiled run
    itself is in the slow test below (compiling takes tens of seconds on CPU)."""
    from zoo import levers, sampling_levers

    model, _ = _adapted(compose)
    seen = []
    monkeypatch.setattr(model, "generate", lambda *a, **k: seen.append(k))
    with levers.using(_levers(compiled_decode=True)), sampling_levers.fast_generate(model):
        model.generate(input_ids=None)
        model.generate(input_ids=None, cache_implementation="dynamic")
    assert seen[0]["cache_implementation"] == "static" and seen[0]["disable_compile"] is False
    assert seen[0]["compile_config"]._compile_all_devices is True
    assert seen[1]["cache_implementation"] == "dynamic"
    with levers.using(_levers(static_cache=True)):  # the cache alone: never compiled (a GPU would by default)
        assert sampling_levers.decoding_kwargs(model) == {"cache_implementation": "static", "disable_compile": True}
    with levers.using(_levers()):
        assert sampling_levers.decoding_kwargs(model) == {}


def test_static_cache_stays_dynamic_under_autocast(compose, monkeypatch):
    """Under bf16 autocast (how training samples) transformers' StaticCache cannot hold fp32 keys and bf16 values:
    the lever leaves those calls on the DynamicCache, and they give the tokens they give with the lever off."""
    import torch

    model, tok = _adapted(compose)
    made = _count_static_caches(monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        off = _ragged(model, tok, _levers(cast_once_sampling=True))
        on = _ragged(model, tok, _levers(cast_once_sampling=True, static_cache=True))
    assert not made and on.completion_ids == off.completion_ids


@pytest.mark.slow
def test_compiled_decode_same_greedy_tokens(compose):
    model, tok = _adapted(compose)
    off = _ragged(model, tok, _levers())
    on = _ragged(model, tok, _levers(compiled_decode=True))
    assert on.completion_ids == off.completion_ids


def test_packed_sampling_in_fp32_keeps_the_logits(compose):
    """Without autocast (the harness samples in fp32; so does everything on a CPU without native bf16)
    packed_sampling runs oneDNN's fp32 linear on a packed copy of every fp32 weight, folded adapters and the head
    included: the logits agree with plain fp32 up to fp32 rounding (another summation order), the greedy tokens are
    the same, the model's tensors are untouched, and no fp32 copy is kept between calls."""
    import functools

    import torch

    from zoo import levers, sampling_levers, sampling_weights

    model, tok = _adapted(compose)
    model.eval()
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    before = {n: p.clone() for n, p in model.named_parameters()}
    ids = torch.tensor([[1, 5, 9, 200, 7], [3, 3, 40, 2, 11]])
    sampling_weights._KEPT.clear()
    with torch.no_grad():
        with sampling_weights._merged_lora(model):
            folded = model(input_ids=ids).logits
            with sampling_weights._cast_once(model, pack=True):
                kinds = {m.forward.func for m in linears if isinstance(m.forward, functools.partial)}
                packed = model(input_ids=ids).logits
    assert kinds == {sampling_weights._packed_linear} and not sampling_weights._KEPT
    assert not any("forward" in m.__dict__ for m in linears)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    torch.testing.assert_close(packed, folded, rtol=1e-5, atol=1e-5)
    enc = tok(["The film was", "A long"], return_tensors="pt", padding=True)
    outs = {}
    for on in (False, True):
        with levers.using(_levers(merged_lora_sampling=True, cast_once_sampling=True, packed_sampling=on)):
            with sampling_levers.fast_generate(model):
                outs[on] = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(outs[True], outs[False])


@pytest.mark.parametrize("precision", ["autocast", "float32"])
@pytest.mark.parametrize("folded", [True, False])
def test_fused_projections_keep_the_logits(compose, precision, folded):
    """trainer.zoo.fused_projections: each layer's q/k/v base layers run as one matmul, its gate/up as another,
    on their stacked weights (folded adapters included, or with the adapters still added by peft on top), packed as
    packed_sampling would pack each: the logits agree with the unfused levers to rounding, the greedy tokens are the
    same, the model's tensors are untouched and every forward comes back."""
    from contextlib import nullcontext

    import torch

    from zoo import levers, sampling_levers, sampling_weights

    model, tok = _adapted(compose)
    model.eval()
    before = {n: p.clone() for n, p in model.named_parameters()}
    attention = [m for m in model.modules() if hasattr(m, "q_proj")]
    bases = [m.base_layer for a in attention for m in (a.q_proj, a.k_proj, a.v_proj)]
    ids = torch.tensor([[1, 5, 9, 200, 7], [3, 3, 40, 2, 11]])
    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "autocast")

    merged = sampling_weights._merged_lora if folded else lambda model: nullcontext()
    with torch.no_grad(), autocast(), merged(model):
        with sampling_weights._cast_once(model, pack=True):
            plain = model(input_ids=ids).logits.float()
        with sampling_weights._fused_projections(model, pack=True), sampling_weights._cast_once(model, pack=True):
            groups = {id(b.forward.func.__self__) for b in bases}
            fused = model(input_ids=ids).logits.float()
    assert len(groups) == len(attention) >= 2  # one fused matmul per layer's q/k/v
    assert not any("forward" in m.__dict__ for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    tv = 0.5 * (plain.softmax(-1) - fused.softmax(-1)).abs().sum(-1)
    assert tv.max() < (0.02 if precision == "autocast" else 1e-4)
    enc = tok(["The film was", "A long"], return_tensors="pt", padding=True)
    outs = {}
    for on in (False, True):
        with levers.using(_levers(merged_lora_sampling=folded, cast_once_sampling=True, packed_sampling=True,
                                  fused_projections=on)), autocast():
            with sampling_levers.fast_generate(model):
                outs[on] = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(outs[True], outs[False])


@pytest.mark.parametrize("precision", ["autocast", "float32"])
def test_folded_groups_stacked_without_a_copy(compose, precision):
    """merged_lora_sampling, with fused_projections to follow (stack=True), folds each layer's q/k/v (and gate/up)
    adapters into rows of one buffer, the same values as folding each alone (without it, each into its own copy),
    and fused_projections multiplies by that buffer itself; weights that do not lie end to
    end in one tensor of the dtype (apart, out of order, another dtype) are stacked by a copy."""
    import torch

    from zoo import sampling_weights
    from zoo.sampling_weights import _plus_delta, _stacked

    model, _ = _adapted(compose)
    attention = next(m for m in model.modules() if hasattr(m, "q_proj"))
    members = [attention.q_proj, attention.k_proj, attention.v_proj]
    dtype = torch.bfloat16 if precision == "autocast" else torch.float32
    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "autocast")

    with torch.no_grad(), autocast():
        alone = [_plus_delta(m, "default", m.base_layer.weight.data).to(dtype) for m in members]
    with torch.no_grad(), autocast(), sampling_weights._merged_lora(model):  # not told fusing follows
        weights = [m.base_layer.weight for m in members]
        assert all(torch.equal(w, a) for w, a in zip(weights, alone))
        assert len({w.untyped_storage().data_ptr() for w in weights}) == len(weights)
    with torch.no_grad(), autocast(), sampling_weights._merged_lora(model, stack=True):
        weights = [m.base_layer.weight for m in members]
        assert all(torch.equal(w, a) for w, a in zip(weights, alone))
        assert len({w.untyped_storage().data_ptr() for w in weights}) == 1
        with sampling_weights._fused_projections(model):
            fused = members[0].base_layer.forward.func.__self__
            assert fused.weight.data_ptr() == weights[0].data_ptr()
            assert torch.equal(fused.weight, torch.cat(weights))
    a, b = torch.randn(4, 8), torch.randn(2, 8)
    joined = torch.cat([a, b])
    view = _stacked(list(joined.split([4, 2])), torch.float32)
    assert view.data_ptr() == joined.data_ptr() and torch.equal(view, joined)
    for weights, want in (([a, b], torch.float32), (list(joined.split([4, 2]))[::-1], torch.float32),
                          (list(joined.split([4, 2])), torch.bfloat16)):
        out = _stacked(weights, want)
        assert out.dtype == want and out.data_ptr() != joined.data_ptr()
        assert torch.equal(out, torch.cat(weights).to(want))


def test_fused_projection_alone_on_its_own_input(compose):
    """A fused member run on an input the rest of its group did not see (a key projection of another sequence, as
    cross-attention would) returns its own projection of that input, not a slice computed for another."""
    import torch

    from zoo import sampling_weights

    model, _ = _adapted(compose)
    attention = next(m for m in model.modules() if hasattr(m, "q_proj"))
    q, k = attention.q_proj.base_layer, attention.k_proj.base_layer
    x, y = torch.randn(2, 3, q.in_features), torch.randn(2, 3, q.in_features)
    with torch.no_grad(), sampling_weights._fused_projections(model):
        assert "forward" in k.__dict__
        pairs = [(q(x), q.weight, x), (k(x), k.weight, x), (k(y), k.weight, y), (q(x), q.weight, x)]
    for out, weight, inp in pairs:
        torch.testing.assert_close(out, inp @ weight.T, rtol=1e-5, atol=1e-5)


def test_decode_attention_matches_sdpa_and_steps_aside():
    """trainer.zoo.decode_attention: a decoding step in fp32 (one query row per sequence, grouped key/value heads, a
    padding mask) gets transformers' SDPA attention to fp32 rounding from three operators; prefill, bf16, autocast
    and soft-capping go to SDPA itself; transformers' function comes back after the block."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from zoo import sampling_levers

    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 3, True
    torch.manual_seed(0)
    q, k, v = torch.randn(4, 9, 1, 64), torch.randn(4, 3, 20, 64), torch.randn(4, 3, 20, 64)
    mask = torch.ones(4, 1, 1, 20, dtype=torch.bool)
    mask[1, ..., :7] = False  # a left-padded row
    calls = []

    def spy(*args, **kwargs):
        calls.append(args[1].shape)
        return sdpa_attention_forward(*args, **kwargs)

    attention = sampling_levers._decode_attention_or(spy)
    outs = {}
    for name, m in (("masked", mask), ("unmasked", None)):
        outs[name], _ = attention(module, q, k, v, m, scaling=0.125)
        ref, _ = sdpa_attention_forward(module, q, k, v, m, scaling=0.125)
        assert outs[name].shape == ref.shape == (4, 1, 9, 64)
        torch.testing.assert_close(outs[name], ref, rtol=1e-5, atol=1e-6)
    assert calls == []
    assert not torch.allclose(outs["masked"][1], outs["unmasked"][1])  # the padding mask was applied
    torch.testing.assert_close(outs["masked"][0], outs["unmasked"][0])
    prefill = torch.randn(4, 9, 5, 64)
    attention(module, prefill, k[:, :, :5], v[:, :, :5], None, scaling=0.125)
    attention(module, q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, scaling=0.125)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attention(module, q, k, v, mask, scaling=0.125)
    with pytest.raises(ValueError, match="softcap"):  # transformers' SDPA refuses soft-capping: it got the call
        attention(module, q, k, v, mask, scaling=0.125, softcap=30.0)
    assert calls == [(4, 9, 5, 64), (4, 9, 1, 64), (4, 9, 1, 64), (4, 9, 1, 64)]
    before = ALL_ATTENTION_FUNCTIONS["sdpa"]
    with sampling_levers._decode_attention():
        inside = ALL_ATTENTION_FUNCTIONS["sdpa"]
        with sampling_levers._decode_attention():  # nested generate calls leave the outer one in place
            assert ALL_ATTENTION_FUNCTIONS["sdpa"] is inside
    assert inside is not before and ALL_ATTENTION_FUNCTIONS["sdpa"] is before


def test_decode_attention_same_greedy_tokens(compose, monkeypatch):
    """In generate (fp32, prompts of several lengths, so left padding), every decoding step takes the three-operator
    path with the lever on and none with it off, for the same greedy tokens."""
    import torch

    from zoo import sampling_levers

    model, tok = _adapted(compose)
    model.get_base_model().set_attn_implementation("sdpa")
    taken, real = [], sampling_levers._decode_attention_or

    def counting(sdpa):
        inner = real(lambda *a, **k: (taken.append(False), sdpa(*a, **k))[1])
        return lambda *a, **k: (taken.append(True), inner(*a, **k))[1]

    monkeypatch.setattr(sampling_levers, "_decode_attention_or", counting)
    outs, fast = {}, {}
    for on in (True, False):
        taken.clear()
        outs[on] = _sample(model, tok, _levers(decode_attention=on), temperature=0.0)
        fast[on] = taken.count(True) - taken.count(False)
    assert outs[True] == outs[False]
    assert fast[True] > 0 and fast[False] == 0
