"""Direct Preference Optimization with TRL's DPOTrainer; every `loss_type` TRL supports is selectable.

Under LoRA the reference policy is the same weights with the adapter disabled; under peft=none TRL loads a
frozen copy of the starting weights.
"""

from __future__ import annotations

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from zoo.algos.base import Context, columns, fit, guarded, preference_pairs

CONFIG_CLASS = DPOConfig
PRODUCES = "policy"
EXTRA_KEYS = ("pairs",)


def check_args(args, path: str) -> None:
    """Cross-field rules DPOTrainer only enforces after the model has loaded."""
    from zoo.config import ConfigError

    if "exo_pair" in args.loss_type and args.label_smoothing <= 0:
        raise ConfigError(f"{path}.label_smoothing={args.label_smoothing}: loss_type exo_pair needs "
                          f"label_smoothing > 0 (the EXO paper uses 1e-3)")


def train(ctx: Context):
    pairs = preference_pairs(ctx)
    dataset = Dataset.from_list(columns(pairs, ("prompt", "chosen", "rejected")))
    trainer = guarded(DPOTrainer)(
        model=ctx.policy.model,
        ref_model=None,
        args=ctx.args,
        train_dataset=dataset,
        processing_class=ctx.policy.tokenizer,
        peft_config=ctx.policy.peft_config,
    )
    metrics = fit(trainer, ctx)
    metrics[f"{ctx.stage}/num_pairs"] = len(pairs)
    return trainer.model, metrics
