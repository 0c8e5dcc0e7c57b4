"""Contrastive Preference Optimisation with TRL's experimental CPOTrainer: a reference-free DPO-style loss on the
policy's own log-probs plus `cpo_alpha` x NLL on the chosen completion. `algo.args.loss_type` picks the
preference term (sigmoid, hinge, ipo, simpo, alphapo); algo=simpo is the SimPO setting of this trainer.
"""

from __future__ import annotations

from zoo.algos.base import Context
from zoo.algos.experimental import CPOConfig, CPOTrainer, train_reference_free
from zoo.algos.preference import check_gold_pairs, check_pair_rows, preference_pairs

CONFIG_CLASS = CPOConfig
PRODUCES = "policy"
EXTRA_KEYS = ("pairs",)
check_rows = check_pair_rows
check_config = check_gold_pairs


def train(ctx: Context):
    return train_reference_free(ctx, preference_pairs(ctx), CPOTrainer)
