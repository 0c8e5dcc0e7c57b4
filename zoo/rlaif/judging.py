"""AI labelling, in one place: the judge an RLAIF algorithm's `judge:` block describes, its validation, and
preference pairs labelled by it (two samples per prompt, soft labels, position consistency).

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

from omegaconf import DictConfig

from zoo.errors import ConfigError
from zoo.generation import sample
from zoo.judges import LogProbScorer, PairwiseLogProbJudge, PointwiseScoreJudge, RewardModelJudge, RuleJudge

KINDS = ("logprob", "pointwise", "reward")
KEYS = ("kind", "model", "constitution", "principle", "reward")


def check_judge(judge: DictConfig, path: str) -> None:
    """The `judge:` block at config path `path`: its kind, and what that kind needs. Runs before anything loads."""
    from zoo import rewards

    unknown = set(judge) - set(KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; a judge block takes {list(KEYS)}")
    kind = judge.get("kind") or "logprob"
    if kind not in KINDS:
        raise ConfigError(f"{path}.kind={kind!r}: expected one of {list(KINDS)}")
    if kind == "reward":
        if judge.get("reward") not in rewards.KNOWN:
            raise ConfigError(f"{path}.reward={judge.get('reward')!r}: kind=reward needs a reward function; known: "
                              f"{rewards.KNOWN}")
    else:
        from zoo.models import check_model_name
        from zoo.rlaif.constitution import check_constitution

        if not judge.get("principle"):
            raise ConfigError(f"{path}.principle: a constitution principle's name or a question is required for "
                              f"kind={kind}")
        check_constitution(judge.get("constitution"), f"{path}.constitution")
        check_model_name(judge.get("model"), f"{path}.model")


def principle_text(spec: DictConfig) -> str:
    from zoo.rlaif.constitution import load_constitution

    constitution = load_constitution(spec.get("constitution") or "default")
    return next((p.critique for p in constitution.principles if p.name == spec.principle), spec.principle)


def build_judge(spec: DictConfig, *, cfg, start_path: str, tokenizer, artifacts: dict, frozen_start=None, path: str):
    """The judge `spec` describes. `start_path`/`tokenizer`: the stage's starting weights, the judge LM when
    `model` is null; `frozen_start`: an already-loaded frozen copy of them to reuse (online DPO keeps one for its
    DPO reference too); `path`: the block's config path, for errors."""
    check_judge(spec, path)  # also done when the run's config is validated; here for callers of the API
    kind = spec.get("kind") or "logprob"
    if kind == "reward":
        from zoo import rewards

        (_, _, fn), = rewards.named_functions({spec.get("reward"): 1.0}, artifacts, cfg)
        return RuleJudge(fn)
    from zoo.models import load_reference, load_tokenizer, named_model_path

    if spec.get("model") or frozen_start is None:
        lm_path = named_model_path(spec.get("model"), start_path, cfg.paths.cache_dir)
        model, tokenizer = load_reference(cfg, lm_path), load_tokenizer(lm_path)
    else:
        model = frozen_start
    scorer = LogProbScorer(model, tokenizer)
    if kind == "pointwise":
        return RewardModelJudge(PointwiseScoreJudge(scorer, principle=principle_text(spec)))
    return PairwiseLogProbJudge(scorer, principle=principle_text(spec))


def label_pairs(judge, rows: list[dict], firsts: list, seconds: list, min_margin: float) -> list[dict]:
    """Preference rows from two completions per prompt row: chosen = the one the judge prefers.

    Items whose P(a > b) is within `min_margin` of 0.5 are dropped (the judge cannot tell them apart).
    """
    from zoo.data import task_columns

    probs = judge.judge([r["prompt"] for r in rows], firsts, seconds, **task_columns(rows))
    consistency = getattr(judge, "position_consistency", None)
    out = []
    for row, a, b, pa in zip(rows, firsts, seconds, probs):
        if abs(pa - 0.5) <= min_margin:
            continue
        chosen, rejected = (a, b) if pa > 0.5 else (b, a)
        out.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected, "p_chosen": max(pa, 1 - pa),
                    "position_consistency": consistency})
    return out


def sample_and_label(model, tokenizer, rows: list[dict], judge, pairs_cfg, seed: int, progress: str) -> list[dict]:
    """Two samples per prompt from `model`, labelled by `judge`."""
    s = sample(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=pairs_cfg.max_new_tokens,
               temperature=pairs_cfg.temperature, num_return_sequences=2, seed=seed, progress=progress)
    return label_pairs(judge, rows, s.completions[0::2], s.completions[1::2], pairs_cfg.min_margin)


def label_metrics(stage: str, pairs: list[dict]) -> dict:
    """What the labels say about the judge: how many pairs it labelled, its position consistency, its confidence."""
    consistency = pairs[0].get("position_consistency") if pairs else None
    return {f"{stage}/num_pairs": len(pairs), f"{stage}/judge_position_consistency": consistency,
            f"{stage}/mean_label_confidence": sum(r["p_chosen"] for r in pairs) / len(pairs) if pairs else None}
