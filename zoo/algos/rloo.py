"""RLOO with TRL's RLOOTrainer: each sample's baseline is the mean reward of the other samples of its prompt."""

from __future__ import annotations

from trl import RLOOConfig, RLOOTrainer

from zoo.algos.base import Context
from zoo.algos.online import train_with

CONFIG_CLASS = RLOOConfig
PRODUCES = "policy"
EXTRA_KEYS: tuple[str, ...] = ()


def check_args(args, path: str) -> None:
    from zoo.errors import ConfigError

    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
    if args.num_generations and (args.num_generations < 2 or batch % args.num_generations):
        raise ConfigError(f"{path}.num_generations={args.num_generations}: RLOO needs >= 2 samples per prompt, "
                          f"dividing the generation batch ({batch})")


def train(ctx: Context):
    return train_with(RLOOTrainer, ctx)
