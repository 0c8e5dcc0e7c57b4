"""Frozen Linear weights cast to the autocast dtype once, not at every forward (`trainer.zoo.cast_once_training`;
the lever is documented in conf/trainer/cpu.yaml).

Under bf16 autocast a Linear layer's fp32 weight is cast to bf16 every time the layer runs. Autocast keeps a cast
for the rest of its block only for leaf tensors that need a gradient; a frozen weight (LoRA's base layers, the
reference an adapter-disabled forward runs) is cast again at every forward of every step. On SmolLM2-135M that is
the 210 base weights, 80 ms a forward on 2 cores with cold caches: a GRPO step runs one such forward, a DPO step
one or two. `frozen_casts` gives each frozen plain Linear a forward that uses a bf16 copy made once per weight
version: the same `.to(bf16)` autocast makes, so the same outputs and gradients bit for bit
(tests/test_frozen_cast.py). The copies live while the block does (the Trainer's whole `train`); a forward and its
backward hold the same casts anyway, so the peak memory is about the same, and the copies stay between steps.

The sampling levers (zoo.levers `_cast_once`) ask the same object for the bf16 weight in oneDNN's packed layout,
so a frozen layer that is not folded (the LM head, adapters' untouched layers) is packed once per run, not once per
`generate` call.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F


class FrozenCast:
    """A frozen Linear layer's forward: under autocast, F.linear on its weight and bias cast once per version."""

    def __init__(self, module: torch.nn.Linear):
        self.module = module
        self.key = None
        self.weight = self.bias = self.packed = None

    def _frozen(self) -> bool:
        module = self.module
        return not module.weight.requires_grad and (module.bias is None or not module.bias.requires_grad)

    def cast(self, dtype: torch.dtype):
        """(weight, bias) in `dtype`, made anew only when the module's tensors changed (another tensor, storage or
        version) or `dtype` did. None where they cannot be kept: a weight that trains, or inside inference mode
        (an inference tensor cannot be saved for a later step's backward)."""
        if not self._frozen() or torch.is_inference_mode_enabled():
            return None
        weight, bias = self.module.weight, self.module.bias
        key = (id(weight), weight.data_ptr(), weight._version, dtype,
               None if bias is None else (id(bias), bias.data_ptr(), bias._version))
        if key != self.key:
            self.key = self.weight = self.bias = self.packed = None  # the old copies go before the new are made
            with torch.no_grad():
                self.weight = weight.detach().to(dtype)
                self.bias = None if bias is None else bias.detach().to(dtype)
            self.key = key
        return self.weight, self.bias

    def packed_as(self, dtype: torch.dtype):
        """(packed weight, bias): the bf16 weight in oneDNN's blocked layout for `torch.ops.mkldnn._linear_pointwise`
        (the caller checks oneDNN can take it), kept as long as the cast is; None as for `cast`."""
        cast = self.cast(dtype)
        if cast is None:
            return None
        if self.packed is None:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(cast[0])
        return self.packed, cast[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        module = self.module
        device = x.device.type
        if torch.is_autocast_enabled(device) and module.weight.dtype != torch.get_autocast_dtype(device):
            cast = self.cast(torch.get_autocast_dtype(device))
            if cast is not None:
                return F.linear(x, *cast)
        return F.linear(x, module.weight, module.bias)


def frozen_linears(*models) -> list:
    """Every plain Linear with a frozen floating-point weight in `models` whose forward nothing has replaced."""
    seen, found = set(), []
    for model in models:
        if model is None:
            continue
        for module in model.modules():
            if (type(module) is torch.nn.Linear and id(module) not in seen and "forward" not in module.__dict__
                    and module.weight.is_floating_point() and not module.weight.requires_grad):
                seen.add(id(module))
                found.append(module)
    return found


@contextmanager
def frozen_casts(*models, enabled: bool = True):
    """Give every frozen plain Linear layer of `models` a `FrozenCast` forward for the block; restored after."""
    modules = frozen_linears(*models) if enabled else []
    for module in modules:
        module.forward = FrozenCast(module)
    try:
        yield modules
    finally:
        for module in modules:
            if isinstance(module.__dict__.get("forward"), FrozenCast):
                del module.forward
