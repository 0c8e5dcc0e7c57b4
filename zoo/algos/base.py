"""What every algorithm module shares: its context, its TRL config, the NaN guard and resumable fitting.

An algorithm module exposes:
  CONFIG_CLASS  the TRL (or zoo) config dataclass that `algo.args.*` fills
  PRODUCES      "policy" (the next stage starts from it) or "reward_model" (later stages score with it)
  EXTRA_KEYS    zoo-level keys its YAML may carry besides `name` and `args`
  train(ctx) -> (trained model, metrics dict)
  check_args(args, path)  optional: cross-field rules on the built config, raising ConfigError
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class Context:
    cfg: DictConfig  # the whole run config
    stage: str  # stage name (the algorithm's name for the final stage)
    algo: DictConfig  # this stage's algorithm config
    args: Any  # the TRL config built from trainer.* + algo.args.*
    policy: Any  # zoo.models.PolicyBundle the stage starts from
    rows: list[dict]  # this stage's disjoint share of the training rows
    gold_fn: Any  # the task's gold reward function, or None
    stage_dir: Path
    resume: bool
    artifacts: dict = field(default_factory=dict)  # earlier stages' outputs, e.g. {"reward_model": path}


def guarded(trainer_cls):
    """`trainer_cls` that stops on a NaN/inf loss before the optimizer step, so no bad checkpoint is written."""

    class Guarded(trainer_cls):
        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            if not torch.isfinite(loss).all():
                from transformers.trainer_utils import get_last_checkpoint

                out = self.args.output_dir
                last = get_last_checkpoint(out) if os.path.isdir(out) else None
                raise NonFiniteLossError(
                    f"loss is {loss.item()} at step {self.state.global_step + 1}; training stopped before the "
                    f"optimizer step. Last good checkpoint: {last or 'none yet'}. Lower the learning rate or check "
                    f"the data, then rerun with resume=true."
                )
            return loss

    Guarded.__name__ = Guarded.__qualname__ = f"Zoo{trainer_cls.__name__}"
    return Guarded


def fit(trainer, ctx: Context) -> dict:
    """Train, continuing from the stage's last checkpoint under resume=true."""
    from transformers.trainer_utils import get_last_checkpoint

    out = ctx.args.output_dir
    last = get_last_checkpoint(out) if os.path.isdir(out) else None
    if last and not ctx.resume:
        raise RuntimeError(f"{out} already holds checkpoints ({Path(last).name}); pass resume=true to continue that "
                           f"run, or choose a new paths.output_dir")
    result = trainer.train(resume_from_checkpoint=last if ctx.resume else None)
    return {f"{ctx.stage}/{k}": v for k, v in result.metrics.items()}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def preference_pairs(ctx: Context) -> list[dict]:
    """The stage's preference pairs: given by the dataset, or sampled from the policy and ranked by gold.

    Sampled pairs are cached in the stage dir, so a resumed run trains on exactly the same pairs.
    """
    from zoo.data import has_preferences
    from zoo.data.pairs import sample_pairs

    if has_preferences(ctx.rows):
        return ctx.rows
    cache = ctx.stage_dir / "pairs.jsonl"
    if cache.exists():
        return read_jsonl(cache)
    if ctx.gold_fn is None:
        raise ValueError(f"data.name={ctx.cfg.data.name}: the rows have no chosen/rejected pairs and the task has no "
                         f"gold signal (data.gold) to rank policy samples with")
    pairs = sample_pairs(ctx.policy.model, ctx.policy.tokenizer, ctx.rows, ctx.gold_fn, ctx.algo.pairs,
                         seed=ctx.cfg.trainer.seed)
    if not pairs:
        raise ValueError(f"{ctx.stage}: sampling produced no preference pairs (all samples tied); raise "
                         f"{ctx.stage}.pairs.num_samples or temperature")
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(cache, pairs)
    print(f"[zoo] {ctx.stage}: {len(pairs)} preference pairs from {len(ctx.rows)} prompts -> {cache}")
    return pairs


def columns(rows: list[dict], keep: tuple[str, ...]) -> list[dict]:
    return [{k: r[k] for k in keep} for r in rows]
