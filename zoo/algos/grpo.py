"""GRPO with TRL's GRPOTrainer: group-relative advantages over `num_generations` samples per prompt.

`loss_type` grpo / dr_grpo / dapo / bnpo (and TRL's newer cispo / sapo / luspo / vespo), `beta` (KL),
`scale_rewards`, ... : any GRPOConfig field through `algo.args.*`. Presets: conf/algo/dr_grpo.yaml, dapo.yaml.
"""

from __future__ import annotations

import dataclasses
import re

from trl import GRPOConfig, GRPOTrainer

from zoo.algos.base import Context
from zoo.algos.online import train_with

CONFIG_CLASS = GRPOConfig
PRODUCES = "policy"
EXTRA_KEYS: tuple[str, ...] = ()


def loss_types() -> list[str]:
    """The loss types GRPOConfig's help lists ("Supported values are 'grpo', 'dr_grpo', ...")."""
    help_text = {f.name: f for f in dataclasses.fields(GRPOConfig)}["loss_type"].metadata["help"]
    return re.findall(r"'(\w+)'", re.search(r"Supported values are (.*?)\.", help_text).group(1))


def check_args(args, path: str) -> None:
    from zoo.errors import ConfigError

    if args.loss_type not in loss_types():
        raise ConfigError(f"{path}.loss_type={args.loss_type!r}: unknown value; allowed: {loss_types()}")
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
    if args.num_generations and batch % args.num_generations:
        raise ConfigError(f"{path}.num_generations={args.num_generations}: must divide the generation batch "
                          f"(per_device_train_batch_size x gradient_accumulation_steps = {batch})")


def train(ctx: Context):
    return train_with(GRPOTrainer, ctx)
