"""TRL's experimental preference trainers, imported in this one place (not an algorithm itself).

TRL 1.16 ships ORPO and CPO (whose `loss_type="simpo"` is SimPO, and `"alphapo"` AlphaPO) under
`trl.experimental`, where names and modules may change between releases: orpo.py, cpo.py and simpo.py take them
from here, so a rename upstream touches this file alone. Both are reference-free: they train on pairs without a
reference model (the harness still measures KL to the starting policy, like every algorithm's).
"""

from __future__ import annotations

from datasets import Dataset
from trl.experimental.cpo import CPOConfig, CPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from zoo.algos.base import Context, columns, fit, guarded
from zoo.algos.preference import PAIR_COLUMNS

__all__ = ["CPOConfig", "CPOTrainer", "ORPOConfig", "ORPOTrainer", "train_reference_free"]


def reference_free(trainer_cls):
    """The `train(ctx)` of an algorithm that runs the reference-free pairwise `trainer_cls` (ORPO, CPO/SimPO) on the
    stage's preference pairs."""
    from zoo.algos.preference import preference_pairs

    def train(ctx: Context):
        return train_reference_free(ctx, preference_pairs(ctx), trainer_cls)

    return train


def train_reference_free(ctx: Context, pairs: list[dict], trainer_cls) -> tuple:
    """A reference-free pairwise trainer (ORPO, CPO/SimPO) on `pairs`, the stage's policy wrapped by TRL in the
    stage's adapter. Returns (trained model, stage metrics)."""
    trainer = guarded(trainer_cls)(
        model=ctx.policy.model, args=ctx.args, train_dataset=Dataset.from_list(columns(pairs, PAIR_COLUMNS)),
        processing_class=ctx.policy.tokenizer, peft_config=ctx.policy.peft_config,
    )
    metrics = fit(trainer, ctx)
    metrics[f"{ctx.stage}/num_pairs"] = len(pairs)
    return trainer.model, metrics
