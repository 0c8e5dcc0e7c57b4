"""One home for what a stage's training cost, in units every algorithm shares, so a comparison can state its
budget rule and show each arm's cost beside its metrics (a DPO step, a PPO step and an online-DPO step are not the
same work):

  generated_tokens    tokens the policy sampled while training (preference pairs, rollouts, TRL's GRPO/RLOO
                      generate, online-DPO rounds), up to and including the first EOS (counted by
                      zoo.generation.counting_generate)
  scored_completions  completions a training scorer (reward function, gold signal, judge) scored
  gold_scored         ... of which the task's gold signal scored (the "labelled completions" of a budget)
  optimizer_steps     the stage's optimizer steps
  seconds             the stage's wall-clock seconds

Counted as the work happens, while a stage trains (`metering`), never while the zoo measures (`paused`: curve
points, the harness). Each checkpoint keeps the counts at that step (zoo.algos.base), and a stage resumed from it
restarts from them, so a resumed run reports the cost an uninterrupted one would (wall seconds aside: they cover
the process that finished). A leaf: imports nothing from the zoo.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from contextvars import ContextVar

KEYS = ("generated_tokens", "scored_completions", "gold_scored", "optimizer_steps", "seconds")

_METER: ContextVar[tuple[dict, object] | None] = ContextVar("zoo_cost_meter", default=None)


@contextmanager
def scoped(var: ContextVar, value):
    """`var` set to `value` inside the block (the zoo's run-wide switches: this meter, zoo.rewards.usage's stage)."""
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)


@contextmanager
def metering(initial: dict | None = None, on_change=None):
    """Yields the stage's counts {key: number}, filled as it trains; `initial`: what an interrupted run of the stage
    had persisted; `on_change(counts)` runs after each addition, to persist them."""
    counts = {key: 0 for key in KEYS}
    counts.update(initial or {})
    with scoped(_METER, (counts, on_change)):
        yield counts


def paused():
    """Measuring, not training: nothing inside is counted."""
    return scoped(_METER, None)


def add(key: str, amount) -> None:
    meter = _METER.get()
    if meter is None or not amount:
        return
    counts, on_change = meter
    counts[key] = counts.get(key, 0) + amount
    if on_change is not None:
        on_change(counts)


# Beside a checkpoint's weights: the stage's counts at that step.
CHECKPOINT_FILE = "zoo_cost.json"


def save_into(checkpoint_dir) -> None:
    """Keep the counts so far in a checkpoint dir (nothing when no stage is metering)."""
    meter = _METER.get()
    if meter is not None:
        with open(os.path.join(checkpoint_dir, CHECKPOINT_FILE), "w") as f:
            json.dump(meter[0], f)


def restore_from(checkpoint_dir) -> None:
    """Resume the counts a checkpoint kept: what was counted after it is counted again as it is redone."""
    meter, path = _METER.get(), os.path.join(checkpoint_dir, CHECKPOINT_FILE)
    if meter is None or not os.path.exists(path):
        return
    counts, on_change = meter
    with open(path) as f:
        saved = json.load(f)
    counts.clear()
    counts.update(saved)
    if on_change is not None:
        on_change(counts)


def steps(trainer: str, global_step: int) -> None:
    """A trainer's optimizer steps so far (`trainer`: its name within the stage, e.g. an online-DPO round): kept per
    trainer, so a trainer resumed from a checkpoint replaces its count rather than adding to it."""
    meter = _METER.get()
    if meter is None:
        return
    counts, on_change = meter
    counts.setdefault("steps_by_trainer", {})[trainer] = global_step
    counts["optimizer_steps"] = sum(counts["steps_by_trainer"].values())
    if on_change is not None:
        on_change(counts)
