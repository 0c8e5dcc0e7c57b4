"""Preferred-FT (the DPO paper's baseline): supervised fine-tuning on the chosen completion of each preference pair,
the rejected one unused. The pairs are those DPO would train on: given by the data, or sampled from the policy and
ranked by the task's gold signal (`pairs:`), so DPO and Preferred-FT differ only in the loss.
"""

from __future__ import annotations

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from zoo.algos.base import Context, fit, guarded
from zoo.algos.preference import POLICY_ON_PAIRS, preference_pairs

CONFIG_CLASS = SFTConfig
PRODUCES, EXTRA_KEYS, check_rows, check_config = POLICY_ON_PAIRS


def train(ctx: Context):
    pairs = preference_pairs(ctx)
    trainer = guarded(SFTTrainer)(
        model=ctx.policy.model, args=ctx.args, processing_class=ctx.policy.tokenizer,
        train_dataset=Dataset.from_list([{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]),
        peft_config=ctx.policy.peft_config,
    )
    metrics = fit(trainer, ctx)
    metrics[f"{ctx.stage}/num_pairs"] = len(pairs)
    return trainer.model, metrics
