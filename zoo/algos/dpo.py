"""Direct Preference Optimization with TRL's DPOTrainer; every `loss_type` TRL supports is selectable.

Under LoRA the reference policy is the same weights with the adapter disabled; under peft=none TRL loads a
frozen copy of the starting weights. Pairs come from the data, or are sampled from the policy and ranked by the
task's gold signal (`pairs:`).
"""

from __future__ import annotations

from trl import DPOConfig

from zoo.algos.base import Context
from zoo.algos.preference import POLICY_ON_PAIRS, check_dpo_args, preference_pairs, train_dpo

CONFIG_CLASS = DPOConfig
PRODUCES, EXTRA_KEYS, check_rows, check_config = POLICY_ON_PAIRS
check_args = check_dpo_args


def train(ctx: Context):
    return train_dpo(ctx, preference_pairs(ctx))
