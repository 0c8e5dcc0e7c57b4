"""Reward modelling with TRL's RewardTrainer (Bradley-Terry on chosen/rejected), on the policy's backbone.

A share of the pairs (`eval_fraction`) is held out and the pairwise accuracy on it is reported, the number
that says whether the reward model learned the preference at all.
"""

from __future__ import annotations

from trl import RewardConfig

from zoo.algos.base import Context
from zoo.algos.preference import check_pair_rows, check_reward_model_config, preference_pairs, train_reward_model

CONFIG_CLASS = RewardConfig
PRODUCES = "reward_model"
EXTRA_KEYS = ("pairs", "eval_fraction")
check_rows = check_pair_rows
check_config = check_reward_model_config


def train(ctx: Context):
    return train_reward_model(ctx, preference_pairs(ctx))
