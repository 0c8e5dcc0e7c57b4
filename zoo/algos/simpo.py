"""SimPO (simple preference optimisation): a reference-free margin between the length-normalised log-probs of
chosen and rejected, `beta` x (avg log p(chosen) - avg log p(rejected)) - `simpo_gamma`, no NLL term. It runs
on TRL's experimental CPOTrainer with `loss_type=simpo` and `cpo_alpha=0` (set in conf/algo/simpo.yaml; a
nonzero `cpo_alpha` adds CPO's NLL term, the paper's CPO-SimPO variant).
"""

from __future__ import annotations

from zoo.algos.experimental import CPOConfig, CPOTrainer, reference_free
from zoo.algos.preference import POLICY_ON_PAIRS
from zoo.checks import require

CONFIG_CLASS = CPOConfig
PRODUCES, EXTRA_KEYS, check_rows, check_config = POLICY_ON_PAIRS
train = reference_free(CPOTrainer)


def check_args(args, path: str) -> None:
    require(args.loss_type == "simpo", f"{path}.loss_type={args.loss_type!r}: algo=simpo is CPOTrainer with "
                                       f"loss_type=simpo; for the other CPO losses use algo=cpo")
