"""ORPO (odds-ratio preference optimisation) with TRL's experimental ORPOTrainer: SFT on the chosen completion
and an odds-ratio preference term in one loss, no reference model. `algo.args.beta` is the paper's lambda (the
weight of the odds-ratio term). Pairs come from the data, or are sampled and ranked by the gold signal as for DPO.
"""

from __future__ import annotations

from zoo.algos.base import Context
from zoo.algos.experimental import ORPOConfig, ORPOTrainer, train_reference_free
from zoo.algos.preference import check_gold_pairs, check_pair_rows, preference_pairs

CONFIG_CLASS = ORPOConfig
PRODUCES = "policy"
EXTRA_KEYS = ("pairs",)
check_rows = check_pair_rows
check_config = check_gold_pairs


def train(ctx: Context):
    return train_reference_free(ctx, preference_pairs(ctx), ORPOTrainer)
