"""RLAIF, DPO form: sample two completions per prompt from the policy, label which is better with a zoo judge
under a constitution principle (both orders averaged), and run DPO on the AI-labelled pairs.

The other forms: `algo=rlaif_rm` trains a reward model on the same AI labels (then PPO or GRPO on it, see
conf/experiment/rlaif_rm.yaml), and `algo=online_dpo` labels fresh pairs from the current policy every K steps.
The judge (zoo.judges.build) defaults to the policy's own starting weights; labels, soft probabilities and
the judge's position consistency are saved with the pairs.
"""

from __future__ import annotations

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from zoo.algos.base import Context, columns, fit, guarded, read_jsonl, write_jsonl
from zoo.generation import sample
from zoo.judges.build import build_judge, label_pairs

CONFIG_CLASS = DPOConfig
PRODUCES = "policy"
EXTRA_KEYS = ("judge", "pairs")


def sample_and_label(model, tokenizer, rows: list[dict], judge, pairs_cfg, seed: int, progress: str) -> list[dict]:
    """Two samples per prompt from `model`, labelled by `judge` (zoo.judges.build.label_pairs)."""
    s = sample(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=pairs_cfg.max_new_tokens,
               temperature=pairs_cfg.temperature, num_return_sequences=2, seed=seed, progress=progress)
    return label_pairs(judge, rows, s.completions[0::2], s.completions[1::2], pairs_cfg.min_margin)


def labelled_pairs(ctx: Context) -> list[dict]:
    """The stage's AI-labelled pairs, cached in the stage dir so a resumed run trains on the same ones."""
    cache = ctx.stage_dir / "ai_pairs.jsonl"
    if cache.exists():
        return read_jsonl(cache)
    judge = build_judge(ctx, ctx.algo.judge, frozen_start=ctx.policy.model)  # the policy has not trained yet
    rows = sample_and_label(ctx.policy.model, ctx.policy.tokenizer, ctx.rows, judge, ctx.algo.pairs,
                            seed=ctx.cfg.trainer.seed, progress=f"{ctx.stage}: sampling")
    if not rows:
        raise ValueError(f"{ctx.stage}: the judge labelled no pair with confidence above pairs.min_margin")
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(cache, rows)
    return rows


def label_metrics(stage: str, pairs: list[dict]) -> dict:
    consistency = pairs[0].get("position_consistency") if pairs else None
    return {f"{stage}/num_pairs": len(pairs), f"{stage}/judge_position_consistency": consistency,
            f"{stage}/mean_label_confidence": sum(r["p_chosen"] for r in pairs) / len(pairs) if pairs else None}


def train(ctx: Context):
    pairs = labelled_pairs(ctx)
    trainer = guarded(DPOTrainer)(
        model=ctx.policy.model, ref_model=None, args=ctx.args,
        train_dataset=Dataset.from_list(columns(pairs, ("prompt", "chosen", "rejected"))),
        processing_class=ctx.policy.tokenizer, peft_config=ctx.policy.peft_config,
    )
    return trainer.model, {**fit(trainer, ctx), **label_metrics(ctx.stage, pairs)}
