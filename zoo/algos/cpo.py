"""Contrastive Preference Optimisation with TRL's experimental CPOTrainer: a reference-free DPO-style loss on the
policy's own log-probs plus `cpo_alpha` x NLL on the chosen completion. `algo.args.loss_type` picks the
preference term (sigmoid, hinge, ipo, simpo, alphapo); algo=simpo is the SimPO setting of this trainer.
"""

from __future__ import annotations

from zoo.algos.experimental import CPOConfig, CPOTrainer, reference_free
from zoo.algos.preference import POLICY_ON_PAIRS

CONFIG_CLASS = CPOConfig
PRODUCES, EXTRA_KEYS, check_rows, check_config = POLICY_ON_PAIRS
train = reference_free(CPOTrainer)
