"""Direct Preference Optimization with TRL's DPOTrainer; every `loss_type` TRL supports is selectable.

Under LoRA the reference policy is the same weights with the adapter disabled; under peft=none TRL loads a
frozen copy of the starting weights. Pairs come from the data, or are sampled from the policy and ranked by the
task's gold signal (`pairs:`).
"""

from __future__ import annotations

from trl import DPOConfig

from zoo.algos.base import Context
from zoo.algos.preference import check_dpo_args, check_gold_pairs, check_pair_rows, preference_pairs, train_dpo

CONFIG_CLASS = DPOConfig
PRODUCES = "policy"
EXTRA_KEYS = ("pairs",)
check_rows = check_pair_rows
check_args = check_dpo_args
check_config = check_gold_pairs


def train(ctx: Context):
    return train_dpo(ctx, preference_pairs(ctx))
