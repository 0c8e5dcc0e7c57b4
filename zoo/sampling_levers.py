"""The sampling levers (trainer.zoo.contiguous_head / cdf_sampling / merged_lora_sampling / cast_once_sampling /
packed_sampling / fused_projections / sdpa_sampling / decode_attention) and the decoding levers (length_buckets /
static_cache / compiled_decode) around `generate`: wherever the zoo samples (zoo.generation.sample: the harness,
preference pairs, PPO rollouts, critique/revise) and around TRL's own `generate` calls (GRPO/RLOO, through `fit`).
Which are on comes from zoo.levers (`active`, set for a run by `using`); each is measured in
results/bench/sampling*.json and tested on and off for the same tokens or the same distribution in
tests/test_levers.py.
"""

from __future__ import annotations

import functools
import weakref
from contextlib import ExitStack, contextmanager, nullcontext

from zoo.levers import active


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


def _lora_layers(model) -> list:
    """LoRA-wrapped plain Linear layers with unmerged active adapters (4-bit bases merge lossily: left alone)."""
    import torch

    try:
        from peft.tuners.lora import Linear as LoraLinear
    except ImportError:  # pragma: no cover - peft is a dependency
        return []
    return [m for m in model.modules() if isinstance(m, LoraLinear) and not m.merged
            and type(m.base_layer) is torch.nn.Linear and not m.disable_adapters
            and all(a in m.lora_A for a in m.active_adapters)]


def _autocast_dtype(weight):
    """The dtype autocast would cast `weight` to in this block (its own where autocast is off). Autocast keeps no
    cast of frozen weights, so a bf16-autocast decode step re-casts every fp32 base weight: a folded weight made in
    that dtype up front skips the cast."""
    import torch

    device = weight.device.type
    if weight.is_floating_point() and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return weight.dtype


def _plus_delta(layer, name: str, weight):
    """`weight` + adapter `name`'s delta as a new tensor: one `addmm` (W + scaling * B @ A, the weight read and the
    result written once) for a plain adapter, peft's own `get_delta_weight` for any other kind (DoRA, fan-in-fan-out,
    other adapter layers). The two differ by fp32 rounding of the delta."""
    import torch

    a, b = layer.lora_A[name], layer.lora_B[name]
    plain = (type(a) is torch.nn.Linear and type(b) is torch.nn.Linear and not layer.use_dora.get(name, False)
             and not getattr(layer, "fan_in_fan_out", False) and a.weight.dtype == b.weight.dtype == weight.dtype)
    if plain:
        return torch.addmm(weight, b.weight, a.weight, alpha=layer.scaling[name])
    return weight + layer.get_delta_weight(name).to(weight.dtype)


@contextmanager
def _merged_lora(model):
    """Sample with each adapter folded into a temporary copy of its base weight (in the autocast dtype when autocast
    is on): one matmul per layer instead of three, and no per-step weight cast. The base tensors are swapped back
    afterwards, never merged and unmerged in place (that round trip would drift frozen bf16 weights). Sampling is
    in eval mode everywhere the zoo samples, so LoRA dropout is off either way; TRL's GRPO samples in train mode,
    where this also leaves the dropout out (as its vLLM path does)."""
    import torch

    layers = _lora_layers(model)
    saved = []
    try:
        with torch.no_grad():
            for layer in layers:
                weight = layer.base_layer.weight
                merged = weight.data
                for name in layer.active_adapters:
                    merged = _plus_delta(layer, name, merged)
                merged = merged.to(_autocast_dtype(weight))
                saved.append((layer, weight.data))
                weight.data = merged
                layer.merged_adapters = list(layer.active_adapters)  # peft's forward then uses the base layer only
        yield
    finally:
        for layer, data in saved:
            layer.base_layer.weight.data = data
            layer.merged_adapters = []


def model_autocast(model, dtype):
    """torch.autocast in `dtype` on the device `model` lives on; a no-op context for dtype None."""
    if dtype is None:
        return nullcontext()
    import torch

    return torch.autocast(next(model.parameters()).device.type, dtype=dtype)


def _lora_parts(model) -> tuple[set[int], set[int]]:
    """ids of (the LoRA A/B layers of every LoRA layer whose adapters are merged, the base layers LoRA wraps), in one
    walk over the model. Folded adapters (`_merged_lora`) leave peft's forward running the base layer alone, so
    casting or packing their A/B would be wasted work; and peft merges adapters into base layers in place (through
    `.data`, which bumps no version), so a copy of a base weight cannot be known to be current from one call to
    the next."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return set(), set()
    folded, bases = set(), set()
    for layer in model.modules():
        if isinstance(layer, LoraLayer):
            bases.add(id(layer.base_layer))
            if layer.merged:
                folded.update(id(m) for adapters in (layer.lora_A, layer.lora_B) for m in adapters.values())
    return folded, bases


@functools.cache
def _onednn_bf16() -> bool:
    """Whether this process's oneDNN runs bf16 on this CPU (asked once)."""
    import torch

    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _packable(weight, dtype) -> bool:
    """Whether oneDNN can take `weight` prepacked for a `dtype` linear layer on CPU: fp32 wherever torch has oneDNN
    (every x86-64 CPU; torch's own fp32 `F.linear` takes MKL's gemm instead), bf16 on a CPU whose oneDNN build runs
    bf16 (the path torch's own bf16 `F.linear` takes there)."""
    import torch

    if weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    return dtype == torch.float32 or (dtype == torch.bfloat16 and _onednn_bf16())


def _packed_linear(x, *, packed, bias, dtype):
    """`F.linear(x, weight, bias)` (under autocast: in its dtype), the weight prepacked in oneDNN's blocked layout."""
    import torch

    return torch.ops.mkldnn._linear_pointwise(x.to(dtype), packed, bias, "none", [], "")


# Copies of frozen weights outside LoRA's layers (the LM head above all), kept from one generate call to the next
# while the weight is unchanged: {module: (key, (weight or packed weight, bias))}. Dropped with the module.
_KEPT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _copy_for_sampling(module, dtype, packing: bool, keepable: bool = True):
    """(weight, bias) of a Linear `module` in `dtype`, the weight reordered for oneDNN if `packing`. A frozen fp32
    weight's copy is kept in `_KEPT` and made again only when the module's tensors change (another tensor, storage
    or version); a weight that trains, one already in `dtype` (a folded adapter, new at every call), a layer the
    caller says not to keep (LoRA's base layers) and anything inside inference mode are copied for this call only."""
    import torch

    weight, bias = module.weight, module.bias
    keep = (keepable and weight.dtype != dtype and not weight.requires_grad
            and (bias is None or not bias.requires_grad) and not torch.is_inference_mode_enabled())
    key = (id(weight), weight.data_ptr(), weight._version, dtype, packing,
           None if bias is None else (id(bias), bias.data_ptr(), bias._version))
    if keep:
        kept = _KEPT.pop(module, None)  # the old copy goes before a new one is made
        if kept is not None and kept[0] == key:
            _KEPT[module] = kept
            return kept[1]
    cast = weight.detach().to(dtype)
    made = (torch.ops.mkldnn._reorder_linear_weight(cast) if packing else cast,
            None if bias is None else bias.detach().to(dtype))
    if keep:
        _KEPT[module] = (key, made)
    return made


@contextmanager
def _cast_once(model, pack: bool = False):
    """Under autocast, give every plain Linear layer its weight (and bias) in the autocast dtype for the block.
    Autocast keeps no cast of a weight that needs no gradient between calls, so each decoding step would cast
    every fp32 weight again (on SmolLM2 the 49k-row LM head alone is 28M values per step). Made once per generate
    call instead, and for a frozen weight outside LoRA's layers (the head) once for as long as it is unchanged
    (`_copy_for_sampling`): the same casts, so bit-identical logits. The module's own tensors stay as they are (the
    head is tied to the input embedding, which must stay fp32); the copies cost one bf16 copy of the weights while
    sampling, and the kept ones (the head's: 57 MB on SmolLM2-135M) stay between calls. Weights already in the
    autocast dtype (folded adapters) are left alone.

    `pack` (trainer.zoo.packed_sampling): the bf16 weights, folded adapters included, also reordered once into
    oneDNN's blocked layout (`torch.ops.mkldnn._reorder_linear_weight`), which torch's bf16 `F.linear` otherwise
    does inside every call: oneDNN's inner-product primitive on the same bf16 values, where `F.linear` takes its
    matmul primitive. The logits were bit-identical on the AVX512-BF16 CPU measured; tests/test_levers.py bounds
    them at bf16 rounding on any CPU. Only on CPUs whose oneDNN runs bf16; elsewhere the plain cast. Without
    autocast (the harness, and everything on CPUs without native bf16) the fp32 weights are packed the same way and
    run oneDNN's fp32 inner product instead of MKL's gemm: the same products summed in another order (logits within
    fp32 rounding), for a copy of the weights while sampling; not kept between calls."""
    import torch

    swapped = []
    folded, bases = _lora_parts(model)
    try:
        for module in model.modules():
            if type(module) is not torch.nn.Linear or "forward" in module.__dict__ or id(module) in folded:
                continue  # an outer call cast it, or an adapter folded into its base weight that will not run
            dtype = _autocast_dtype(module.weight)
            packing = pack and _packable(module.weight, dtype)
            if dtype == module.weight.dtype and not packing:
                continue
            weight, bias = _copy_for_sampling(module, dtype, packing, keepable=id(module) not in bases)
            if packing:
                module.forward = functools.partial(_packed_linear, packed=weight, bias=bias, dtype=dtype)
            else:
                module.forward = functools.partial(torch.nn.functional.linear, weight=weight, bias=bias)
            swapped.append(module)
        yield
    finally:
        for module in swapped:
            del module.forward


# Projections a decoder layer computes from one input, one after another: attention's queries, keys and values, the
# MLP's gate and up (Llama, Mistral, Qwen2, Gemma and the other models transformers writes this way).
FUSABLE = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def _plain_base(module):
    """The plain Linear that computes `module`'s output by itself or under a LoRA layer (whose adapters, folded or
    not, add to what the base layer returns for the same input), else None. A layer whose forward something else
    replaced for the block is left to it."""
    import torch

    base = getattr(module, "base_layer", module)
    if type(base) is not torch.nn.Linear or "forward" in base.__dict__:
        return None
    return base if base is module or hasattr(module, "lora_A") else None


def _fusable_groups(model) -> list[list]:
    """The base Linear layers of each FUSABLE group of `model` that can run as one: plain, same input size, device
    and weight dtype, all with a bias or none."""
    groups = []
    for module in model.modules():
        for names in FUSABLE:
            members = [getattr(module, name, None) for name in names]
            bases = [None if m is None else _plain_base(m) for m in members]
            if any(b is None for b in bases):
                continue
            first = bases[0].weight
            if (len({id(b) for b in bases}) == len(bases)
                    and all(b.in_features == bases[0].in_features and b.weight.device == first.device
                            and b.weight.dtype == first.dtype for b in bases)
                    and len({b.bias is None for b in bases}) == 1):
                groups.append(bases)
    return groups


class _Fused:
    """One matmul for a group's projections; each member's forward returns its slice of the output for the input it
    was last run on."""

    def __init__(self, weight, bias, dtype, packing: bool, sizes: list[int]):
        self.weight, self.bias, self.dtype, self.packing, self.sizes = weight, bias, dtype, packing, sizes
        self.input, self.parts = None, ()

    def part(self, x, *, index: int):
        import torch

        if self.input is not x:  # the group's first call for this input (or an input only this member sees)
            if self.packing:
                out = _packed_linear(x, packed=self.weight, bias=self.bias, dtype=self.dtype)
            else:
                out = torch.nn.functional.linear(x.to(self.dtype), self.weight, self.bias)
            self.input, self.parts = x, out.split(self.sizes, dim=-1)
        return self.parts[index]


@contextmanager
def _fused_projections(model, pack: bool = False):
    """trainer.zoo.fused_projections: each decoder layer's q/k/v projections run as one matmul while sampling, and
    its MLP's gate/up as another, on one weight made by stacking theirs (in the autocast dtype, folded adapters
    included; packed for oneDNN when `pack` and the CPU allows, as `_cast_once` would pack each). Decoding a few rows
    at a time, a matmul costs more than its weight's bytes (the 192-row key and value projections of SmolLM2-135M
    ran at a third of the larger ones' rate): at GRPO's shape 65.1 -> 59.9 ms a decoding step. Each row of the
    output is the same dot product as before; the logits agree to rounding and greedy tokens are the same
    (tests/test_levers.py). Each member keeps its own output for an input the others do not see (it computes the
    group's, then takes its slice). Entered after `_merged_lora` (it stacks the folded weights) and before
    `_cast_once` (which leaves the layers it finds replaced alone)."""
    import torch

    swapped = []
    try:
        for bases in _fusable_groups(model):
            dtype = _autocast_dtype(bases[0].weight)
            packing = pack and _packable(bases[0].weight, dtype)
            weight = torch.cat([b.weight.detach().to(dtype) for b in bases])
            bias = None if bases[0].bias is None else torch.cat([b.bias.detach().to(dtype) for b in bases])
            fused = _Fused(torch.ops.mkldnn._reorder_linear_weight(weight) if packing else weight, bias, dtype,
                           packing, [b.out_features for b in bases])
            for index, base in enumerate(bases):
                base.forward = functools.partial(fused.part, index=index)
                swapped.append(base)
        yield
    finally:
        for base in swapped:
            del base.forward


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
                    stack.enter_context(_merged_lora(model))
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
