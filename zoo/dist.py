"""Which process this is, and the few collectives the zoo's own code needs when `zoo.launch` starts several.

Every helper is a no-op on one process (no process group), so single-process code paths stay as they were.
TRL's trainers handle their own distribution; these serve what the zoo adds around them: one writer of the run
dir, barriers before others read what it wrote, and PPO's rollout statistics and gradients.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta

# A long main-process-only step (an export, a judge pass) must not trip the collective timeout of the others.
TIMEOUT_ENV = "PREFZOO_DIST_TIMEOUT_MIN"


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank() -> int:
    d = _dist()
    return d.get_rank() if d else int(os.environ.get("RANK", 0))


def world() -> int:
    d = _dist()
    return d.get_world_size() if d else 1


def is_main() -> bool:
    return rank() == 0


def init(cpu: bool) -> None:
    """Join the process group the launcher (torchrun / accelerate launch) described in the environment, through
    Accelerate's shared state, so the TRL trainers built later find the same group. No-op on one process."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or _dist():
        return
    from accelerate import PartialState

    PartialState(cpu=cpu, timeout=timedelta(minutes=float(os.environ.get(TIMEOUT_ENV, 120))))


def barrier() -> None:
    d = _dist()
    if d:
        d.barrier()


def shard(items: list) -> list:
    """This process's share of `items` (every world-th, from its rank): all of them on one process."""
    return items[rank()::world()] if world() > 1 else items


def gather(items: list) -> list:
    """Every process's `items` (e.g. pairs sampled from its shard), concatenated in rank order, on every process.
    Picklable rows only; the identity on one process."""
    d = _dist()
    if not d:
        return items
    parts: list = [None] * d.get_world_size()
    d.all_gather_object(parts, items)
    return [x for part in parts for x in part]


@contextmanager
def main_first():
    """The main process runs the block first (e.g. writes a cache), then the others (which read it)."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def all_sum(tensor):
    """The tensor summed over processes (a new tensor; the input is left as it was)."""
    d = _dist()
    if not d:
        return tensor.clone()
    out = tensor.detach().clone()
    d.all_reduce(out, op=d.ReduceOp.SUM)
    return out


def broadcast_(tensors) -> None:
    """Overwrite every process's tensors with the main process's (in place)."""
    d = _dist()
    if d:
        for t in tensors:
            d.broadcast(t.data, src=0)


def means(pairs: dict) -> dict[str, float]:
    """{name: (sum, count)} of this process -> {name: sum over processes / count over processes}, in one collective
    (the tensors on the device the process group communicates on)."""
    if not pairs:
        return {}
    import torch

    stacked = torch.stack([torch.stack([s.float().reshape(()), c.float().reshape(())]) for s, c in pairs.values()])
    total = all_sum(stacked)
    return {n: (total[i, 0] / total[i, 1].clamp(min=1e-12)).item() for i, n in enumerate(pairs)}


def masked_whiten(x, mask, shift_mean: bool = True):
    """zoo.rl.math.masked_whiten with the mean and variance of the real tokens of every process's batch."""
    import torch

    mask = mask.to(x.dtype)
    total = all_sum(torch.stack([(x * mask).sum(), mask.sum()]))
    count = total[1].clamp(min=1)
    mean = total[0] / count
    var = all_sum(((x - mean) ** 2 * mask).sum()) / count
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def average_gradients(params) -> None:
    """Data-parallel without a DDP wrapper: every process steps with the mean gradient (one flat all-reduce), so
    the weights stay equal across processes. The same parameters have gradients everywhere (the same graph)."""
    if world() == 1:
        return
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    flat = all_sum(torch.cat([g.reshape(-1) for g in grads])) / world()
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))
