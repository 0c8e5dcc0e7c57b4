"""Supervised fine-tuning with TRL's SFTTrainer (loss on completion tokens only)."""

from __future__ import annotations

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from zoo.algos.base import Context, fit, guarded
from zoo.data import sft_rows

CONFIG_CLASS = SFTConfig
PRODUCES = "policy"
EXTRA_KEYS: tuple[str, ...] = ()


def train(ctx: Context):
    dataset = Dataset.from_list(sft_rows(ctx.rows, f"data.name={ctx.cfg.data.name}"))
    trainer = guarded(SFTTrainer)(
        model=ctx.policy.model,
        args=ctx.args,
        train_dataset=dataset,
        processing_class=ctx.policy.tokenizer,
        peft_config=ctx.policy.peft_config,
    )
    metrics = fit(trainer, ctx)
    return trainer.model, metrics
