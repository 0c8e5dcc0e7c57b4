"""RLAIF, reward-model form: label pairs of policy samples with a zoo judge (as algo=rlaif does), then train a
reward model on the AI labels. Later stages (PPO, GRPO, RLOO) optimise it, as after an `rm` stage:

    python -m zoo.train experiment=rlaif_rm              # AI-labelled RM -> PPO
    python -m zoo.train experiment=rlaif_rm algo=grpo    # AI-labelled RM -> GRPO
"""

from __future__ import annotations

from trl import RewardConfig

from zoo.algos.base import Context
from zoo.algos.preference import check_eval_fraction, check_judge_pairs, labelled_pairs, train_reward_model
from zoo.rlaif.judging import check_judge_check, judge_check, label_metrics

CONFIG_CLASS = RewardConfig
PRODUCES = "reward_model"
EXTRA_KEYS = ("judge", "pairs", "eval_fraction", "judge_check")


def check_config(algo, path: str) -> None:
    check_judge_pairs(algo, path)
    check_eval_fraction(algo, path)
    check_judge_check(algo, path)


def train(ctx: Context):
    checked = judge_check(ctx)  # the judge against gold, before its labels train anything (<stage>/judge/*)
    pairs = labelled_pairs(ctx)
    model, metrics = train_reward_model(ctx, pairs)
    # Held-out accuracy here is agreement with the judge's labels, not with any human or gold preference.
    return model, {**metrics, **label_metrics(ctx.stage, pairs, ctx.algo.judge, ctx.gold_fn), **checked}
