"""The sampling levers (trainer.zoo.contiguous_head / cdf_sampling / merged_lora_sampling / cast_once_sampling /
packed_sampling / fused_projections / sdpa_sampling / decode_attention) and the decoding levers (length_buckets /
static_cache / compiled_decode) around `generate`: wherever the zoo samples (zoo.generation.sample: the harness,
preference pairs, PPO rollouts, critique/revise) and around TRL's own `generate` calls (GRPO/RLOO, through `fit`).
Which are on comes from zoo.levers (`active`, set for a run by `using`); each is measured in
results/bench/sampling*.json and tested on and off for the same tokens or the same distribution in
tests/test_levers.py.
"""

from __future__ import annotations

import weakref
from contextlib import ExitStack, contextmanager, nullcontext

from zoo.levers import active
from zoo.sampling_weights import _cast_once, _fused_projections, _merged_lora


def _contiguous_input(module, args):
    return (args[0].contiguous(), *args[1:])


def cdf_multinomial(probs, num_samples, replacement=False, *, generator=None, out=None):
    """One draw per row of `probs` by inverse CDF: a uniform number against the running sum (in float64, so tokens
    of probability ~1e-12 keep their share). Rows need not sum to 1; zero-probability entries are never drawn.
    Other calls (several samples, `out=`) go to torch.multinomial."""
    import torch

    if num_samples != 1 or out is not None:
        kw = {} if out is None else {"out": out}
        fallback = _TORCH_MULTINOMIAL or torch.multinomial  # torch's own, whether or not it is patched now
        return fallback(probs, num_samples, replacement, generator=generator, **kw)
    cdf = probs.to(torch.float64).cumsum(-1)
    u = torch.rand((*probs.shape[:-1], 1), dtype=torch.float64, device=probs.device, generator=generator)
    return torch.searchsorted(cdf, u * cdf[..., -1:], right=True).clamp_(max=probs.shape[-1] - 1)


def model_autocast(model, dtype):
    """torch.autocast in `dtype` on the device `model` lives on; a no-op context for dtype None."""
    if dtype is None:
        return nullcontext()
    import torch

    return torch.autocast(next(model.parameters()).device.type, dtype=dtype)


# Models that trainer.zoo.eager_attention gave eager attention (zoo.models marks them when they load): the ones
# trainer.zoo.sdpa_sampling may switch to SDPA while they sample. An attention a user asked for is left as asked.
_EAGER_BY_LEVER: weakref.WeakSet = weakref.WeakSet()


def mark_eager_by_lever(model) -> None:
    _EAGER_BY_LEVER.add(model)


def _transformers_model(model):
    """The transformers model inside `model` (a PEFT wrapper's base model), or None."""
    from transformers import PreTrainedModel

    inner = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    return inner if isinstance(inner, PreTrainedModel) else None


@contextmanager
def _sdpa_attention(model):
    """trainer.zoo.sdpa_sampling: sample with torch's SDPA attention where the model trains with eager attention
    because trainer.zoo.eager_attention chose it. Eager attention is faster for a training step on CPU (the
    backward), SDPA for a decoding step (one query row against the cache): 69 -> 59 ms a step at GRPO's shape (8
    rows, bf16 autocast, all sampling levers). The same attention up to float rounding (tests/test_levers.py: same
    greedy tokens, logits within rounding). Switched back when the block ends."""
    inner = _transformers_model(model)
    if (inner is None or inner not in _EAGER_BY_LEVER or inner.config._attn_implementation != "eager"
            or not getattr(inner, "_supports_sdpa", False) or not inner._can_set_attn_implementation()):
        yield
        return
    inner.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        inner.set_attn_implementation("eager")


def _decode_attention_or(sdpa):
    """transformers' SDPA attention function `sdpa`, with decoding steps in fp32 on CPU done as three operators."""

    def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
        import torch

        batch, heads, rows, dim = query.shape
        groups = key.shape[1]
        plain = (rows == 1 and not dropout and query.device.type == "cpu"
                 and query.dtype == key.dtype == value.dtype == torch.float32
                 and not torch.is_autocast_enabled("cpu") and heads % groups == 0
                 and key.shape[-1] == value.shape[-1] == dim
                 and (attention_mask is None or (attention_mask.dtype == torch.bool and attention_mask.dim() == 4
                                                 and attention_mask.shape[1] == attention_mask.shape[2] == 1))
                 and all(kwargs.get(name) is None for name in ("softcap", "position_bias", "cache", "s_aux")))
        if not plain:
            return sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                        is_causal=is_causal, **kwargs)
        q = query.reshape(batch, groups, heads // groups, dim)  # a key/value head's query heads as its rows
        scores = torch.matmul(q, key.transpose(-1, -2)).mul_(dim ** -0.5 if scaling is None else scaling)
        if attention_mask is not None:
            scores.masked_fill_(attention_mask.logical_not(), float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1), value)
        return out.reshape(batch, 1, heads, dim), None

    return attention


@contextmanager
def _decode_attention():
    """trainer.zoo.decode_attention: while sampling, a decoding step's attention (one query row per sequence) in
    fp32 on CPU runs as a matmul, a softmax and a matmul over the grouped key/value heads instead of SDPA's CPU
    flash kernel, whose blocking costs more than the work at that size: 32 rows x 9 heads against 16-74 keys,
    66-180 µs against 186-293 µs a call (a throwaway microbenchmark); at 8 rows in bf16 the kernel is faster, so
    steps under autocast, and anything else (prefill, masks of another kind, soft-capping, dropout), keep it. The
    same attention to fp32 rounding (tests/test_levers.py). Acts on models sampling with transformers' `sdpa`
    attention; transformers' own function comes back when the block ends."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    # an override set before this block (transformers has no public accessor for it)
    own = getattr(ALL_ATTENTION_FUNCTIONS, "_local_mapping", {}).get("sdpa")
    current = ALL_ATTENTION_FUNCTIONS["sdpa"]
    if getattr(current, "zoo_decode", False):  # already in place (nested generate)
        yield
        return
    patched = _decode_attention_or(current)
    patched.zoo_decode = True
    ALL_ATTENTION_FUNCTIONS["sdpa"] = patched
    try:
        yield
    finally:
        if own is None:
            try:
                del ALL_ATTENTION_FUNCTIONS["sdpa"]  # the library-wide function shows through again
            except KeyError:  # a mapping without local overrides
                ALL_ATTENTION_FUNCTIONS["sdpa"] = current
        else:
            ALL_ATTENTION_FUNCTIONS["sdpa"] = own


def _compile_config():
    """Transformers compiles the decoding step itself when the cache is static, on accelerators only unless the
    config says every device (the flag is private in transformers 5.23: the one switch for CPU)."""
    from transformers import CompileConfig

    config = CompileConfig(fullgraph=False, dynamic=False)
    config._compile_all_devices = True
    return config


def decoding_kwargs(model) -> dict:
    """What trainer.zoo.static_cache / compiled_decode add to a `generate` call of `model` (a caller's own keyword
    wins).

    `static_cache`: transformers' StaticCache, preallocated for the prompt plus max_new_tokens, instead of a
    DynamicCache that concatenates every step: the same greedy tokens (tests/test_levers.py) and, with sampling, the
    same random stream. `compiled_decode`: the decoding step under torch.compile (inductor), which needs the static
    cache; the first call of every new (batch, prompt length) shape compiles (30-180 s for the 2-layer test model on
    2 loaded cores; toggling merged_lora_sampling recompiles too), so it pays only when many calls repeat one shape.
    Both off by default.

    Neither applies under autocast (a bf16 Trainer's GRPO/RLOO, PPO's rollouts, pairs in the training precision):
    the StaticCache takes its dtype from the first keys it stores, which leave rotary embeddings in fp32 while the
    values are bf16, and transformers 5.23 then fails to copy the values in; those calls keep the DynamicCache."""
    import torch

    if not (active("static_cache") or active("compiled_decode")):
        return {}
    if torch.is_autocast_enabled(next(model.parameters()).device.type):
        return {}
    if not active("compiled_decode"):  # transformers would compile a static-cache decode on a GPU by itself
        return {"cache_implementation": "static", "disable_compile": True}
    # disable_compile=False overrides TRL's GRPO, whose generation config disables compiling
    return {"cache_implementation": "static", "compile_config": _compile_config(), "disable_compile": False}


@contextmanager
def fast_generate(model, autocast_dtype=None):
    """The active sampling levers around `model.generate` calls inside the block. Each is result-preserving:
    `contiguous_head` gives the same tokens (tests/test_levers.py), `cdf_sampling` draws from the same
    distribution with another random stream, `merged_lora_sampling` the same logits up to rounding,
    `cast_once_sampling` bit-identical logits; `static_cache` / `compiled_decode` (`decoding_kwargs`) the same tokens.

    `autocast_dtype`: the mixed precision the caller's forward passes already run under (a Trainer with bf16 on
    wraps `model.forward` in autocast, so every decoding step is autocast, but `generate` itself is not). With a
    lever on, the whole `generate` call then runs under that autocast, so the folded and cast weights are made in
    its dtype once, instead of every fp32 weight being cast again at every decoding step."""
    hooks, original = [], model.__dict__.get("generate")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if active("contiguous_head") and head is not None:
        # Transformers scores the prompt's last position as hidden[:, -1:, :], a strided view; a Linear on a
        # strided 3-D input falls back to a batched matmul that copies the whole head once per row (49k x 576 x
        # batch), which cost more than the rest of a 32-token sample on 2 cores.
        hooks.append(head.register_forward_pre_hook(_contiguous_input))
    wrap_cdf, wrap_merge = active("cdf_sampling"), active("merged_lora_sampling")
    wrap_cast, wrap_pack = active("cast_once_sampling"), active("packed_sampling")
    wrap_fuse, wrap_attention = active("fused_projections"), active("decode_attention")
    wrap_cache, wrap_sdpa = active("static_cache") or active("compiled_decode"), active("sdpa_sampling")
    wrap = ((wrap_cdf or wrap_merge or wrap_cast or wrap_pack or wrap_fuse or wrap_cache or wrap_sdpa or wrap_attention)
            and callable(getattr(model, "generate", None)))
    if wrap:  # (reward models have no generate)
        inner = model.generate

        def generate(*args, **kwargs):
            with ExitStack() as stack:
                stack.enter_context(model_autocast(model, autocast_dtype))
                kwargs = {**decoding_kwargs(model), **kwargs}
                if wrap_merge:
                    stack.enter_context(_merged_lora(model, stack=wrap_fuse))
                if wrap_fuse:
                    stack.enter_context(_fused_projections(model, pack=wrap_pack))
                if wrap_cast or wrap_pack:
                    stack.enter_context(_cast_once(model, pack=wrap_pack))
                if wrap_cdf:
                    stack.enter_context(_patched_multinomial())
                if wrap_sdpa:
                    stack.enter_context(_sdpa_attention(model))
                if wrap_attention:
                    stack.enter_context(_decode_attention())
                return inner(*args, **kwargs)

        model.generate = generate
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
        if wrap:
            if original is None:
                del model.generate
            else:
                model.generate = original


_TORCH_MULTINOMIAL = None  # torch.multinomial itself, while cdf_multinomial stands in for it


@contextmanager
def _patched_multinomial():
    """Transformers' sampler draws each token with torch.multinomial, which on CPU fills an exponential variate per
    vocabulary entry: 14 ms per draw for 16 rows x 49k tokens on 2 cores (a third of a 32-token sample). The inverse
    CDF takes 0.3 ms."""
    global _TORCH_MULTINOMIAL
    import torch

    if _TORCH_MULTINOMIAL is not None:  # already in place (nested generate)
        yield
        return
    _TORCH_MULTINOMIAL = torch.multinomial
    torch.multinomial = cdf_multinomial
    try:
        yield
    finally:
        torch.multinomial, _TORCH_MULTINOMIAL = _TORCH_MULTINOMIAL, None
