"""What the online trainers (PPO, GRPO, RLOO) share: the reward they optimise and their prompt dataset.

Reward functions go to TRL one by one, with their weights in `reward_weights`, so TRL logs each by name
(`rewards/<name>/mean`, `/std`) beside the group statistics it logs itself (`reward_std`,
`frac_reward_zero_std`, completion lengths, `clip_ratio`). Which reward: `reward.functions` if configured,
else the reward model of an earlier `rm` stage, else the task's gold signal.
"""

from __future__ import annotations

from datasets import Dataset

from zoo.algos.base import Context, fit, guarded
from zoo.data import prompt_rows
from zoo.errors import ConfigError


def reward_to_optimise(ctx: Context) -> list[tuple[str, float, object]]:
    """(name, weight, fn): the run's reward (built once by the entry point), else the task's gold signal."""
    named = ctx.rewards
    if not named:
        if ctx.gold_fn is None:
            raise ValueError(f"{ctx.stage}: no reward to optimise: set reward.functions, run an `rm` stage first, "
                             f"or use a task with a gold signal (data.gold)")
        print(f"[zoo] {ctx.stage}: optimising the task's gold signal ({ctx.cfg.data.gold}) directly")
        named = [(ctx.cfg.data.gold, 1.0, ctx.gold_fn)]
    return named


def reward_functions(ctx: Context) -> tuple[list, list[float]]:
    """The reward as separate functions and weights, the way TRL's GRPO/RLOO trainers take them."""
    named = reward_to_optimise(ctx)
    return [_named(fn, name) for name, _, fn in named], [w for _, w, _ in named]


def _named(fn, name: str):
    """`fn` under the configured name (TRL logs rewards/<__name__>), without renaming a shared function."""

    def reward(prompts, completions, **columns):
        return fn(prompts, completions, **columns)

    reward.__name__ = name
    reward.report = getattr(fn, "report", {})
    return reward


def prompt_dataset(ctx: Context) -> Dataset:
    return Dataset.from_list(prompt_rows(ctx.rows))


def with_weights(args, weights: list[float]):
    """Put the configured weights in the TRL config unless the user set reward_weights explicitly."""
    if args.reward_weights is None:
        args.reward_weights = weights
    elif len(args.reward_weights) != len(weights):
        raise ConfigError(f"algo.args.reward_weights has {len(args.reward_weights)} weights for {len(weights)} "
                          f"reward functions")
    return args


def reward_reports(fns) -> dict:
    """Metrics a reward function computed about itself when it was built (e.g. RBR's fitted ranking accuracy)."""
    out = {}
    for fn in fns:
        out.update(getattr(fn, "report", {}))
        for _, _, inner in getattr(fn, "named", []):  # a WeightedSum
            out.update(getattr(inner, "report", {}))
    return out


def train_with(trainer_cls, ctx: Context):
    """Train a TRL group-baseline trainer (GRPOTrainer, RLOOTrainer) on the stage's prompts and reward."""
    fns, weights = reward_functions(ctx)
    trainer = guarded(trainer_cls)(
        model=ctx.policy.model,
        reward_funcs=fns,
        args=with_weights(ctx.args, weights),
        train_dataset=prompt_dataset(ctx),
        processing_class=ctx.policy.tokenizer,
        peft_config=ctx.policy.peft_config,
    )
    return trainer.model, {**fit(trainer, ctx), **reward_reports(fns)}
