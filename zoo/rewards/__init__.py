"""Reward functions, one protocol for all of them (the one TRL's GRPOTrainer calls):

    fn(prompts: list, completions: list, **columns) -> list[float | None]

`completions` are in the prompt's format (strings, or lists of messages for conversational prompts); extra
dataset columns (e.g. `answer`) arrive as keyword lists. None means "this function does not apply here".
Functions are selected by name with weights in conf/reward/*.yaml.
"""

from __future__ import annotations

from typing import Callable

from zoo.rewards.sentiment import sentiment_reward
from zoo.rewards.verifiable import accuracy_reward

RewardFn = Callable[..., list]

# Reward functions that need no construction. Ones that do (a trained reward model) are built in `build`.
REWARDS: dict[str, RewardFn] = {
    "sentiment": sentiment_reward,
    "accuracy": accuracy_reward,
}


class WeightedSum:
    """Weighted sum of several reward functions; a function's None is skipped, all None gives None."""

    def __init__(self, named: list[tuple[str, float, RewardFn]]):
        self.named = named
        self.__name__ = "+".join(n for n, _, _ in named)

    def __call__(self, prompts, completions, **columns):
        parts = [(w, fn(prompts, completions, **columns)) for _, w, fn in self.named]
        out = []
        for i in range(len(completions)):
            vals = [w * r[i] for w, r in parts if r[i] is not None]
            out.append(sum(vals) if vals else None)
        return out


def get(name: str) -> RewardFn:
    if name not in REWARDS:
        raise KeyError(f"unknown reward function {name!r}; known: {sorted(REWARDS)}")
    return REWARDS[name]


def build(functions, artifacts: dict, cfg) -> WeightedSum | None:
    """Build the configured proxy reward: `functions` maps a name to a weight (or to {weight, path})."""
    named = []
    for name, spec in (functions or {}).items():
        weight = spec if isinstance(spec, (int, float)) else spec.get("weight", 1.0)
        if name == "reward_model":
            from zoo.rewards.reward_model import RewardModelReward

            path = None if isinstance(spec, (int, float)) else spec.get("path")
            path = path or artifacts.get("reward_model")
            if path is None:
                raise ValueError("reward.functions.reward_model needs a path, or an `rm` stage earlier in the run")
            named.append((name, float(weight), RewardModelReward(path, cfg)))
        else:
            named.append((name, float(weight), get(name)))
    return WeightedSum(named) if named else None
