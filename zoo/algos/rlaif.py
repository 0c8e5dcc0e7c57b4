"""RLAIF, DPO form: sample two completions per prompt from the policy, label which is better with a zoo judge
under a constitution principle (both orders averaged), and run DPO on the AI-labelled pairs.

The judge model defaults to the policy's own starting weights (`judge.model: null`); any zoo model directory or
hub id works. Labels, soft probabilities and the judge's position consistency are saved with the pairs.
"""

from __future__ import annotations

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from zoo.algos.base import Context, columns, fit, guarded, read_jsonl, write_jsonl
from zoo.generation import sample
from zoo.judges import LogProbScorer, PairwiseLogProbJudge
from zoo.rlaif.constitution import load_constitution

CONFIG_CLASS = DPOConfig
PRODUCES = "policy"
EXTRA_KEYS = ("judge", "pairs")


def _judge(ctx: Context) -> PairwiseLogProbJudge:
    spec = ctx.algo.judge
    if spec.model:
        from zoo.models import load_reference, load_tokenizer, resolve_model_path

        from omegaconf import OmegaConf

        path = resolve_model_path(OmegaConf.create({"source": "path", "name_or_path": spec.model}),
                                  ctx.cfg.paths.cache_dir)
        scorer = LogProbScorer(load_reference(ctx.cfg, path), load_tokenizer(path))
    else:
        scorer = LogProbScorer(ctx.policy.model, ctx.policy.tokenizer)
    constitution = load_constitution(spec.constitution)
    principle = next((p.critique for p in constitution.principles if p.name == spec.principle), spec.principle)
    return PairwiseLogProbJudge(scorer, principle=principle)


def labelled_pairs(ctx: Context) -> tuple[list[dict], float | None]:
    cache = ctx.stage_dir / "ai_pairs.jsonl"
    if cache.exists():
        rows = read_jsonl(cache)
        return rows, (rows[0].get("position_consistency") if rows else None)
    p = ctx.algo.pairs
    prompts = [r["prompt"] for r in ctx.rows]
    s = sample(ctx.policy.model, ctx.policy.tokenizer, prompts, max_new_tokens=p.max_new_tokens,
               temperature=p.temperature, num_return_sequences=2, seed=ctx.cfg.trainer.seed, progress="rlaif: sampling")
    firsts, seconds = s.completions[0::2], s.completions[1::2]
    judge = _judge(ctx)
    probs = judge.judge(prompts, firsts, seconds)
    rows = []
    for prompt, a, b, pa in zip(prompts, firsts, seconds, probs):
        if abs(pa - 0.5) <= p.min_margin:  # the judge cannot tell them apart
            continue
        chosen, rejected = (a, b) if pa > 0.5 else (b, a)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "p_chosen": max(pa, 1 - pa),
                     "position_consistency": judge.position_consistency})
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(cache, rows)
    return rows, judge.position_consistency


def train(ctx: Context):
    pairs, consistency = labelled_pairs(ctx)
    if not pairs:
        raise ValueError(f"{ctx.stage}: the judge labelled no pair with confidence above pairs.min_margin")
    trainer = guarded(DPOTrainer)(
        model=ctx.policy.model, ref_model=None, args=ctx.args,
        train_dataset=Dataset.from_list(columns(pairs, ("prompt", "chosen", "rejected"))),
        processing_class=ctx.policy.tokenizer, peft_config=ctx.policy.peft_config,
    )
    metrics = fit(trainer, ctx)
    metrics.update({f"{ctx.stage}/num_pairs": len(pairs), f"{ctx.stage}/judge_position_consistency": consistency,
                    f"{ctx.stage}/mean_label_confidence": sum(r["p_chosen"] for r in pairs) / len(pairs)})
    return trainer.model, metrics
