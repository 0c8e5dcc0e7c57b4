"""K-wise reward modelling (InstructGPT): each prompt's K completions ranked, all K(K-1)/2 comparisons of a prompt
trained together as one batch element (zoo.rl.ranked_rm). The ranked rows come from the data ({prompt,
completions, ranking}), or K = `pairs.num_samples` samples per prompt from the policy ranked by the task's gold
signal. A share of the prompts (`eval_fraction`) is held out; `<stage>/accuracy` is the pairwise accuracy over
every ranked pair of the held-out prompts, the number to set beside algo=rm's at equal labelling cost (the same
count of labelled completions: K per prompt here, 2 per pair there).
"""

from __future__ import annotations

import dataclasses

from datasets import Dataset
from trl import RewardConfig

from zoo import seeds
from zoo.algos.base import Context, fit, guarded, training_precision
from zoo.algos.preference import check_reward_model_config, consumable_pairs, split_pairs
from zoo.checks import require
from zoo.errors import DataError

CONFIG_CLASS = RewardConfig
PRODUCES = "reward_model"
EXTRA_KEYS = ("pairs", "eval_fraction")
RANKED_COLUMNS = ("prompt", "completions", "ranking")
check_config = check_reward_model_config


def check_rows(rows: list[dict], cfg, path: str) -> None:
    if rows and set(RANKED_COLUMNS) <= set(rows[0]):
        return
    if rows and "prompt" in rows[0] and cfg.data.get("gold"):
        return
    have = sorted(rows[0]) if rows else []
    raise DataError(f"{path}=rm_ranked: the rows of data.name={cfg.data.name} have columns {have}; expected ranked rows "
                    f"{{prompt, completions, ranking}}, or prompts of a task with a gold signal (data.gold) to rank "
                    f"policy samples with")


def ranked_rows(ctx: Context) -> list[dict]:
    """The stage's ranked rows: given by the data, or K samples per prompt ranked by gold, made once per stage."""
    from zoo import resume
    from zoo.data.pairs import preference_rows

    if ctx.rows and set(RANKED_COLUMNS) <= set(ctx.rows[0]):
        return ctx.rows

    def make(share):
        with training_precision(ctx):
            return preference_rows(ctx.policy.model, ctx.policy.tokenizer, share, ctx.gold_fn, ctx.algo.pairs,
                                   seed=seeds.seed_for("pairs.samples", ctx.cfg.trainer.seed), ranked=True)

    prompts = ctx.rows[:consumable_pairs(ctx.args, len(ctx.rows))]
    rows = resume.made_once(ctx.stage_dir / "ranked.jsonl", make, prompts,
                            note=f"{ctx.stage}: ranked rows of {ctx.algo.pairs.num_samples} samples")
    require(bool(rows), f"{ctx.stage}: every prompt's samples tied; raise {ctx.config_path}.pairs.num_samples or "
                        f"temperature")
    return rows


def train(ctx: Context):
    from zoo.models import load_reward_model, wrap_peft
    from zoo.rl.ranked_rm import RankedCollator, RankedRewardTrainer

    rows = ranked_rows(ctx)
    train_rows, eval_rows = split_pairs(rows, ctx.algo.eval_fraction, ctx.cfg.data.seed)
    bundle = load_reward_model(ctx.cfg, ctx.policy.path)
    trainer = guarded(RankedRewardTrainer)(
        model=wrap_peft(bundle), args=dataclasses.replace(ctx.args, remove_unused_columns=False),
        train_dataset=Dataset.from_list([{k: r[k] for k in RANKED_COLUMNS} for r in train_rows]),
        data_collator=RankedCollator(bundle.tokenizer, ctx.args.max_length), processing_class=bundle.tokenizer,
    )
    metrics = fit(trainer, ctx)
    accuracy, n = trainer.held_out_accuracy(eval_rows) if eval_rows else (None, 0)
    k = sum(len(r["completions"]) for r in rows)
    metrics.update({f"{ctx.stage}/accuracy": accuracy, f"{ctx.stage}/eval_pairs": n,
                    f"{ctx.stage}/num_prompts": len(rows), f"{ctx.stage}/labelled_completions": k,
                    f"{ctx.stage}/num_comparisons": sum(_pairs(r["ranking"]) for r in rows)})
    return trainer.model, metrics


def _pairs(ranking: list[int]) -> int:
    return sum(a < b for a in ranking for b in ranking)
