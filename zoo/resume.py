"""What a stage leaves in its run dir for a resumed run to pick up, found and guarded in one place.

- `last_checkpoint` / `checkpoint_to_resume`: the one lookup of a stage's (or a round's) last checkpoint, and the
  refusal to start over one, or over any finished work (`refuse_restart`), unless the run says `resume=true`.
- `made_once`: rows a stage generates before it trains (policy-sampled pairs, AI labels, SL-CAI critiques and
  revisions, an online-DPO round's pairs), made once — each process makes its share, every process gets them all,
  the main process writes them — and read back on resume, so a resumed stage trains on exactly the same rows.
- `stop_on_nonfinite`: the NaN guard every trainer (TRL's and the zoo's PPO) calls before an optimizer step; its
  message names the checkpoint to resume from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from zoo import dist
from zoo.errors import NonFiniteLossError, UserError
from zoo.files import read_jsonl, write_jsonl


class RestartError(UserError, RuntimeError):
    """The run dir holds work of an earlier run and the run did not ask to resume it."""


def last_checkpoint(out_dir) -> str | None:
    """The newest complete `checkpoint-<step>` under `out_dir` (a checkpoint still being written has another
    name, zoo.files.atomic_dir), or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(out_dir)) if os.path.isdir(out_dir) else None


def refuse_restart(found, resume: bool, what: str) -> None:
    """Stop a fresh run (resume=false) that would start over `found` (a path, or a list of them) of an earlier run."""
    if found and not resume:
        raise RestartError(f"{what} of an earlier run; pass resume=true to continue it, or choose a new "
                           f"paths.output_dir")


def checkpoint_to_resume(out_dir, resume: bool) -> str | None:
    """The checkpoint a trainer writing to `out_dir` continues from: the last one under resume=true, none on a
    fresh run (which must not find any)."""
    last = last_checkpoint(out_dir)
    refuse_restart(last, resume, f"{out_dir} already holds checkpoints ({Path(last).name if last else ''})")
    return last if resume else None


def made_once(path: Path, make: Callable[[list], list[dict]], rows: list, *, note: str | None = None,
              also: Callable[[list[dict]], dict[Path, list[dict]]] | None = None) -> list[dict]:
    """The rows `make` generates from `rows`, kept at `path`: read back when the file exists (a resumed stage),
    otherwise made (under zoo.launch each process makes those of its share of `rows`, every process gets them
    all), written by the main process, and returned. `also(made)` names files derived from them, written first:
    `path` appears last, so its existence means everything was written. `note`: printed with the count."""
    path = Path(path)
    if path.exists():
        return read_jsonl(path)
    made = dist.gather(make(dist.shard(rows)))
    if dist.is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        for extra, extra_rows in (also(made) if also else {}).items():
            write_jsonl(extra, extra_rows)
        write_jsonl(path, made)
        if note:
            print(f"[zoo] {note}: {len(made)} rows -> {path}")
    dist.barrier()  # the file exists for everyone before anyone can resume from it
    return made


def stop_on_nonfinite(loss, step: int, out_dir) -> None:
    """Raise before the optimizer step when `loss` is NaN or infinite, so no bad checkpoint is written."""
    import torch

    if not torch.isfinite(loss).all():
        value = loss.item() if loss.numel() == 1 else loss.tolist()
        raise NonFiniteLossError(
            f"loss is {value} at step {step}; training stopped before the optimizer step. Last good checkpoint: "
            f"{last_checkpoint(out_dir) or 'none yet'}. Lower the learning rate or check the data, then rerun with "
            f"resume=true.")
