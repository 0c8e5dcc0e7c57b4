"""RLAIF, DPO form: sample two completions per prompt from the policy, label which is better with a zoo judge
under a constitution principle (both orders averaged), and run DPO on the AI-labelled pairs.

The other forms: `algo=rlaif_rm` trains a reward model on the same AI labels (then PPO or GRPO on it, see
conf/experiment/rlaif_rm.yaml), and `algo=online_dpo` labels fresh pairs from the current policy every K steps.
The judge (zoo.rlaif.judging) defaults to the policy's own starting weights; labels, soft probabilities and
the judge's position consistency are saved with the pairs (ai_pairs.jsonl in the stage dir). Before labelling,
the judge is scored on gold-labelled pairs (`judge_check:`, metrics rlaif/judge/*), with a loud warning, or an
error under judge_check.at_chance=stop, when its verdicts are at chance.
"""

from __future__ import annotations

from trl import DPOConfig

from zoo.algos.base import Context
from zoo.algos.preference import check_dpo_args, check_judge_pairs, labelled_pairs, train_dpo
from zoo.rlaif.judging import check_judge_check, judge_check, label_metrics

CONFIG_CLASS = DPOConfig
PRODUCES = "policy"
EXTRA_KEYS = ("judge", "pairs", "judge_check")
check_args = check_dpo_args


def check_config(algo, path: str) -> None:
    check_judge_pairs(algo, path)
    check_judge_check(algo, path)


def train(ctx: Context):
    checked = judge_check(ctx)
    pairs = labelled_pairs(ctx)
    model, metrics = train_dpo(ctx, pairs)
    return model, {**metrics, **label_metrics(ctx.stage, pairs, ctx.algo.judge, ctx.gold_fn), **checked}
