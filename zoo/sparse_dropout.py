"""Dropout that draws where the dropped elements are instead of a coin per element (`trainer.zoo.sparse_dropout`;
documented in conf/trainer/cpu.yaml).

LoRA puts a dropout (peft's `lora_dropout`, 0.05 here) on the input of every adapted linear layer: seven per
transformer layer. torch draws its mask on CPU with one Bernoulli draw per element from a scalar generator, and at
a GRPO step's shapes those 210 masks took ~0.3 s of a ~0.8 s forward. A Bernoulli(p) sequence is the same thing
as the positions of its ones, and the gaps between those are independent Geometric(p) numbers, so drawing ~p·n
gaps (torch's `geometric_`) and zeroing those positions gives a mask from the same distribution with a twentieth
of the random draws at p = 0.05. The kept elements are scaled exactly as torch scales them (x times 1/(1-p) in
x's dtype); the gradient is zero at the dropped positions and 1/(1-p) elsewhere. The draws differ from torch's
(another use of the same random stream), so runs are reproducible from their seed but do not repeat a run made
with the lever off.
tests/test_sparse_dropout.py checks the rate, the gaps' distribution, the scaling and the gradient.

It takes over from `nn.Dropout` modules on CPU tensors, in training mode, for 0 < p <= MAX_P (above that a draw
per element is as cheap); everywhere else torch's dropout runs.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

MAX_P = 0.25


def dropped_positions(n: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices in [0, n) each in the set independently with probability p, sorted (int64)."""
    chunks, last = [], 0.0
    want = int(n * p + 8 * math.sqrt(n * p) + 16)  # enough gaps to pass n almost always in one draw
    while last < n:
        # the positions (1-based) of the next `want` ones of the Bernoulli sequence, in float64 (exact integers)
        pos = torch.empty(want, dtype=torch.float64).geometric_(p, generator=generator).cumsum_(0).add_(last)
        chunks.append(pos)
        last = pos[-1].item()
        want = int((n - last) * p * 2) + 16
    pos = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    kept = int(torch.searchsorted(pos, pos.new_full((1,), n), right=True))  # sorted: those <= n come first
    return pos[:kept].long().sub_(1)


def sparse_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training-mode `F.dropout(x, p)` with the mask drawn as positions (see the module's docstring)."""
    if x.numel() == 0:
        return x.clone()
    idx = dropped_positions(x.numel(), p, generator).to(x.device)
    scale = torch.ones((), dtype=x.dtype, device=x.device).div_(1 - p)  # torch's own 1/(1-p), in x's dtype
    return x.mul(scale).reshape(-1).index_fill(0, idx, 0.0).view(x.shape)


def _forward(module: torch.nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    if module.training and 0 < module.p <= MAX_P and not module.inplace and x.device.type == "cpu":
        return sparse_dropout(x, module.p)
    return F.dropout(x, module.p, module.training, module.inplace)


@contextmanager
def sparse_dropouts(*models, enabled: bool = True):
    """Every `nn.Dropout` module of `models` (None skipped, each module once) draws its mask by positions for the
    duration of the block."""
    if not enabled:
        yield
        return
    seen, patched = set(), []
    for model in models:
        if model is None:
            continue
        for m in model.modules():
            if type(m) is torch.nn.Dropout and id(m) not in seen:
                seen.add(id(m))
                m.forward = _forward.__get__(m)
                patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward
