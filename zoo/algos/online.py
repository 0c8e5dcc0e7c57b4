"""What the group-baseline online trainers (GRPO, RLOO) share: their reward functions and prompt dataset.

Reward functions go to TRL one by one, with their weights in `reward_weights`, so TRL logs each by name
(`rewards/<name>/mean`, `/std`) beside the group statistics it logs itself (`reward_std`,
`frac_reward_zero_std`, completion lengths, `clip_ratio`). Which reward: `reward.functions` if configured,
else the reward model of an earlier `rm` stage, else the task's gold signal.
"""

from __future__ import annotations

from datasets import Dataset

from zoo import rewards
from zoo.algos.base import Context
from zoo.data import prompt_rows


def reward_functions(ctx: Context) -> tuple[list, list[float]]:
    named = rewards.named_functions(ctx.cfg.reward.functions, ctx.artifacts, ctx.cfg)
    if not named and "reward_model" in ctx.artifacts:
        named = rewards.named_functions({"reward_model": 1.0}, ctx.artifacts, ctx.cfg)
    if not named:
        if ctx.gold_fn is None:
            raise ValueError(f"{ctx.stage}: no reward to optimise: set reward.functions, run an `rm` stage first, "
                             f"or use a task with a gold signal (data.gold)")
        print(f"[zoo] {ctx.stage}: optimising the task's gold signal ({ctx.cfg.data.gold}) directly")
        named = [(ctx.cfg.data.gold, 1.0, ctx.gold_fn)]
    fns = []
    for name, _, fn in named:
        if getattr(fn, "__name__", None) != name:
            fn.__name__ = name  # TRL logs rewards/<__name__>
        fns.append(fn)
    return fns, [w for _, w, _ in named]


def prompt_dataset(ctx: Context) -> Dataset:
    return Dataset.from_list(prompt_rows(ctx.rows))


def with_weights(args, weights: list[float]):
    """Put the configured weights in the TRL config unless the user set reward_weights explicitly."""
    if args.reward_weights is None:
        args.reward_weights = weights
    elif len(args.reward_weights) != len(weights):
        from zoo.config import ConfigError

        raise ConfigError(f"algo.args.reward_weights has {len(args.reward_weights)} weights for {len(weights)} "
                          f"reward functions")
    return args
