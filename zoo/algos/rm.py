"""Reward modelling with TRL's RewardTrainer (Bradley-Terry on chosen/rejected), on the policy's backbone.

A share of the pairs (`eval_fraction`) is held out and the pairwise accuracy on it is reported, the number
that says whether the reward model learned the preference at all.
"""

from __future__ import annotations

import random

from datasets import Dataset
from trl import RewardConfig, RewardTrainer

from zoo.algos.base import Context, columns, fit, guarded, preference_pairs
from zoo.models import load_reward_model

CONFIG_CLASS = RewardConfig
PRODUCES = "reward_model"
EXTRA_KEYS = ("pairs", "eval_fraction")


def split_pairs(pairs: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    shuffled = pairs[:]
    random.Random(seed).shuffle(shuffled)
    n_eval = max(1, round(len(shuffled) * fraction)) if len(shuffled) > 1 else 0
    return shuffled[n_eval:], shuffled[:n_eval]


def train(ctx: Context):
    return train_on_pairs(ctx, preference_pairs(ctx))


def train_on_pairs(ctx: Context, pairs: list[dict]):
    """Bradley-Terry reward model on `pairs`, a share held out for the accuracy metric."""
    train_pairs, eval_pairs = split_pairs(pairs, ctx.algo.eval_fraction, ctx.cfg.data.seed)
    keep = ("prompt", "chosen", "rejected")
    bundle = load_reward_model(ctx.cfg, ctx.policy.path)
    trainer = guarded(RewardTrainer)(
        model=bundle.model,
        args=ctx.args,
        train_dataset=Dataset.from_list(columns(train_pairs, keep)),
        eval_dataset=Dataset.from_list(columns(eval_pairs, keep)) if eval_pairs else None,
        processing_class=bundle.tokenizer,
        peft_config=bundle.peft_config,
    )
    metrics = fit(trainer, ctx)
    held_out = trainer.evaluate() if eval_pairs else {}  # too few pairs to hold any out: reported as null
    metrics[f"{ctx.stage}/accuracy"] = held_out.get("eval_accuracy")
    metrics[f"{ctx.stage}/eval_loss"] = held_out.get("eval_loss")
    metrics[f"{ctx.stage}/num_pairs"] = len(pairs)
    return trainer.model, metrics
