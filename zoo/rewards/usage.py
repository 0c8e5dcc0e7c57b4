"""Which scorers a run trained on: the harness marks an eval signal the policy was optimised against (e.g.
`gold = training signal` when PPO's reward or DPO's pair ranking was the task's gold), so a reader never takes a
trained-on score for held-out evidence.

Recorded as it happens rather than declared per algorithm: every scorer the reward registry hands out is
`tracked` under its registry name, and a call made while a stage trains (`training(stage)`, inside `recording()`)
records (scorer name, stage). Measuring inside a stage (curve points, diagnostics logged along training) runs
under `measuring()`, which records nothing.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from zoo import costs

_STAGE: ContextVar[str | None] = ContextVar("zoo_training_stage", default=None)
_CALLS: ContextVar[dict | None] = ContextVar("zoo_scorer_calls", default=None)


class Tracked:
    """A scorer (same call, same attributes) that records its use by a training stage under `name`."""

    def __init__(self, name: str, fn):
        self.name, self.fn = name, fn
        self.__name__ = getattr(fn, "__name__", name)

    def __call__(self, prompts, completions, **columns):
        stage = _record(self.name)
        if stage is not None:  # the stage's cost (zoo.costs): completions this scorer labelled for training
            costs.add("scored_completions", len(completions))
            costs.add(f"scored/{self.name}", len(completions))
        return self.fn(prompts, completions, **columns)

    def __getattr__(self, attr):  # e.g. RBR's `report`, a WeightedSum's `named`
        return getattr(self.__dict__["fn"], attr)


def _record(name: str) -> str | None:
    """Note that the stage training now (returned; None outside training) used scorer `name`."""
    record, stage = _CALLS.get(), _STAGE.get()
    if record is not None and stage is not None and stage not in record[0].setdefault(name, []):
        record[0][name].append(stage)
        if record[1] is not None:
            record[1](record[0])
    return stage


def tracked(name: str, fn):
    return fn if fn is None or isinstance(fn, Tracked) else Tracked(name, fn)


@contextmanager
def recording(initial: dict | None = None, on_new=None):
    """Yields {scorer name: [stages that called it while training]}, filled as the run goes. `initial`: what an
    interrupted run of the stage had recorded (a resumed stage may not call again a scorer it used before the
    crash, e.g. pairs ranked by the gold and cached); `on_new(calls)` runs at each new record, to persist it."""
    calls: dict[str, list[str]] = {k: list(v) for k, v in (initial or {}).items()}
    with costs.scoped(_CALLS, (calls, on_new)):
        yield calls


def training(stage: str):
    return costs.scoped(_STAGE, stage)


@contextmanager
def measuring():
    with costs.scoped(_STAGE, None), costs.paused():
        yield


def declare(fn) -> None:
    """Record that the training stage optimises against `fn` (and, for a weighted sum, each of its parts) though it
    does not call it now: best-of-n selects with its scorer only when it decodes."""
    for part in [fn, *(inner for _, _, inner in getattr(fn, "named", []))]:
        if isinstance(part, Tracked):
            _record(part.name)
