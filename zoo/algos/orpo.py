"""ORPO (odds-ratio preference optimisation) with TRL's experimental ORPOTrainer: SFT on the chosen completion
and an odds-ratio preference term in one loss, no reference model. `algo.args.beta` is the paper's lambda (the
weight of the odds-ratio term). Pairs come from the data, or are sampled and ranked by the gold signal as for DPO.
"""

from __future__ import annotations

from zoo.algos.experimental import ORPOConfig, ORPOTrainer, reference_free
from zoo.algos.preference import POLICY_ON_PAIRS

CONFIG_CLASS = ORPOConfig
PRODUCES, EXTRA_KEYS, check_rows, check_config = POLICY_ON_PAIRS
train = reference_free(ORPOTrainer)
