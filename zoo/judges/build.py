"""A judge from the `judge:` block of an RLAIF algorithm's config (algo=rlaif, rlaif_rm, online_dpo).

    judge:
      kind: logprob        # logprob: pairwise P("A") vs P("B"), both orders averaged (soft labels)
                           # pointwise: expected 1-10 score of each response, P(a > b) = sigmoid(s_a - s_b)
                           # reward: a reward function of the zoo (`reward:` below), hard labels, ties 0.5
      model: null          # logprob/pointwise: null = the stage's starting weights; a conf/model name
                           # (e.g. qwen2.5-0.5b), a local model dir or a hub id
      constitution: default
      principle: harm      # a principle name of the constitution, or a question written out
      reward: null         # kind=reward: a reward function name (e.g. sentiment, reward_model, rbr)
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from zoo.judges.pairwise import LogProbScorer, PairwiseLogProbJudge, PointwiseScoreJudge, RewardModelJudge, RuleJudge

KINDS = ("logprob", "pointwise", "reward")


def judge_model_path(name: str | None, start_path: str, cache_dir: str) -> str:
    """The judge LM's directory: the stage's start (None), a conf/model/<name>.yaml, or a dir / hub id."""
    from zoo.config import CONF_DIR
    from zoo.models import resolve_model_path

    if not name:
        return start_path
    named = CONF_DIR / "model" / f"{name}.yaml"
    if named.is_file():  # its values may interpolate ${paths.*}, so it is read inside a config that has them
        model_cfg = OmegaConf.merge({"paths": {"cache_dir": cache_dir}}, {"model": OmegaConf.load(named)}).model
    else:
        model_cfg = OmegaConf.create({"source": "path", "name_or_path": name})
    return resolve_model_path(model_cfg, cache_dir)


def principle_text(spec: DictConfig) -> str:
    from zoo.rlaif.constitution import load_constitution

    constitution = load_constitution(spec.get("constitution") or "default")
    return next((p.critique for p in constitution.principles if p.name == spec.principle), spec.principle)


def build_judge(ctx, spec: DictConfig, frozen_start=None):
    """The configured judge. `frozen_start`: an already-loaded frozen copy of the stage's starting weights,
    reused as the judge LM when `model` is null (online DPO keeps one for its DPO reference too)."""
    from zoo.config import check_judge

    check_judge(spec, f"{ctx.stage}.judge")  # also done by config.validate; here for callers of the API
    kind = spec.get("kind") or "logprob"
    if kind == "reward":
        from zoo import rewards

        name = spec.get("reward")
        named = rewards.named_functions({name: 1.0}, ctx.artifacts, ctx.cfg)
        return RuleJudge(named[0][2])
    from zoo.models import load_reference, load_tokenizer

    if spec.get("model") or frozen_start is None:
        lm_path = judge_model_path(spec.get("model"), ctx.policy.path, ctx.cfg.paths.cache_dir)
        model, tokenizer = load_reference(ctx.cfg, lm_path), load_tokenizer(lm_path)
    else:
        model, tokenizer = frozen_start, ctx.policy.tokenizer
    scorer = LogProbScorer(model, tokenizer)
    if kind == "pointwise":
        return RewardModelJudge(PointwiseScoreJudge(scorer, principle=principle_text(spec)))
    return PairwiseLogProbJudge(scorer, principle=principle_text(spec))


def label_pairs(judge, rows: list[dict], firsts: list, seconds: list, min_margin: float) -> list[dict]:
    """Preference rows from two completions per prompt row: chosen = the one the judge prefers.

    Items whose P(a > b) is within `min_margin` of 0.5 are dropped (the judge cannot tell them apart).
    """
    prompts = [r["prompt"] for r in rows]
    extra = {k: [r.get(k) for r in rows] for k in rows[0] if k not in ("prompt", "chosen", "rejected")} if rows else {}
    probs = judge.judge(prompts, firsts, seconds, **extra)
    consistency = getattr(judge, "position_consistency", None)
    out = []
    for row, a, b, pa in zip(rows, firsts, seconds, probs):
        if abs(pa - 0.5) <= min_margin:
            continue
        chosen, rejected = (a, b) if pa > 0.5 else (b, a)
        out.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected, "p_chosen": max(pa, 1 - pa),
                    "position_consistency": consistency})
    return out
