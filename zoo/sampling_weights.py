"""The weights a `generate` call runs on, made once per call by the sampling levers (zoo/sampling_levers.py
`fast_generate` enters these blocks): adapters folded into a copy of each base weight
(trainer.zoo.merged_lora_sampling), every Linear's weight cast to the autocast dtype (cast_once_sampling) and
prepacked for oneDNN (packed_sampling), and each layer's q/k/v and gate/up weights stacked into one multiply
(fused_projections). Each block swaps the module's tensors or forwards for the call and restores them;
tests/test_levers.py checks each against the plain layers.
"""

from __future__ import annotations

import functools
import weakref
from contextlib import contextmanager


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


def _row_blocks(model, layers) -> dict[int, object]:
    """{id(layer): its rows of one new buffer} for the LoRA layers of each FUSABLE group (q/k/v, gate/up) whose
    members all fold here: folded straight into the buffer, the group's weights lie end to end, and
    `_fused_projections` multiplies by them as they are instead of stacking a copy (`_stacked`)."""
    import torch

    folding = {id(layer.base_layer): layer for layer in layers}
    blocks = {}
    for group in _fusable_groups(model):
        members = [folding.get(id(base)) for base in group]
        if any(m is None for m in members):
            continue
        weights = [m.base_layer.weight for m in members]
        buffer = torch.empty(sum(w.shape[0] for w in weights), weights[0].shape[1],
                             dtype=_autocast_dtype(weights[0]), device=weights[0].device)
        for member, rows in zip(members, buffer.split([w.shape[0] for w in weights])):
            blocks[id(member)] = rows
    return blocks


@contextmanager
def _merged_lora(model, stack: bool = False):
    """Sample with each adapter folded into a temporary copy of its base weight (in the autocast dtype when autocast
    is on): one matmul per layer instead of three, and no per-step weight cast. The base tensors are swapped back
    afterwards, never merged and unmerged in place (that round trip would drift frozen bf16 weights). Sampling is
    in eval mode everywhere the zoo samples, so LoRA dropout is off either way; TRL's GRPO samples in train mode,
    where this also leaves the dropout out (as its vLLM path does). `stack` (fused_projections will run): the copies
    of a q/k/v or gate/up group are rows of one buffer (`_row_blocks`)."""
    import torch

    layers = _lora_layers(model)
    saved = []
    try:
        with torch.no_grad():
            blocks = _row_blocks(model, layers) if stack else {}
            for layer in layers:
                weight = layer.base_layer.weight
                merged = weight.data
                for name in layer.active_adapters:
                    merged = _plus_delta(layer, name, merged)
                rows = blocks.get(id(layer))
                merged = merged.to(_autocast_dtype(weight)) if rows is None else rows.copy_(merged)
                saved.append((layer, weight.data))
                weight.data = merged
                layer.merged_adapters = list(layer.active_adapters)  # peft's forward then uses the base layer only
        yield
    finally:
        for layer, data in saved:
            layer.base_layer.weight.data = data
            layer.merged_adapters = []


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

    base = module._modules.get("base_layer", module)
    if type(base) is not torch.nn.Linear or "forward" in base.__dict__:
        return None
    return base if base is module or "lora_A" in module._modules else None


def _fusable_groups(model) -> list[list]:
    """The base Linear layers of each FUSABLE group of `model` that can run as one: plain, same input size, device
    and weight dtype, all with a bias or none. (Submodules looked up in `_modules`: `getattr` of a name a module
    lacks raises inside torch, and over every module of a model that took ~24 ms a call.)"""
    groups = []
    for module in model.modules():
        for names in FUSABLE:
            if names[0] not in module._modules:
                continue
            members = [module._modules.get(name) for name in names]
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


def _stacked(weights, dtype):
    """`torch.cat(weights)` in `dtype`; weights already in `dtype` lying end to end in one tensor (a group folded by
    `_merged_lora`) are viewed as one without the copy."""
    import torch

    first = weights[0]
    storage, start = first.untyped_storage().data_ptr(), first.storage_offset()
    starts = [start + sum(w.numel() for w in weights[:i]) for i in range(len(weights))]
    if all(w.dtype == dtype and w.is_contiguous() and w.untyped_storage().data_ptr() == storage
           and w.storage_offset() == at for w, at in zip(weights, starts)):  # each a view, so the span is in bounds
        return first.as_strided((sum(w.shape[0] for w in weights), first.shape[1]), (first.shape[1], 1))
    return torch.cat([w.detach().to(dtype) for w in weights])


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
            weight = _stacked([b.weight.detach() for b in bases], dtype)
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
