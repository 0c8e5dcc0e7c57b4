"""AI labelling, in one place: the judge an RLAIF algorithm's `judge:` block describes, its validation, what its
labels say about it (label_metrics), and its check against gold before it labels anything (judge_check). The
pairs themselves (two samples per prompt, soft labels, position consistency) are made by
zoo.data.pairs.preference_rows, the routine every scorer shares.

    judge:
      kind: logprob        # logprob: pairwise P("A") vs P("B"), both orders averaged (soft labels)
                           # pointwise: expected 1-10 score of each response, P(a > b) = sigmoid(s_a - s_b)
                           # reward: a reward function of the zoo (`reward:` below), hard labels, ties 0.5
      model: null          # logprob/pointwise: null = the stage's starting weights; a conf/model name
                           # (e.g. qwen2.5-0.5b), a local model dir or a hub id
      constitution: default
      principle: harm      # a principle name of the constitution, or a question written out
      reward: null         # kind=reward: a reward function name (e.g. sentiment, reward_model, rbr)
      noise: 0.0           # flip each pair's verdict with this probability (zoo.judges.NoisyJudge, seeded by
                           # trainer.seed): over a gold rule judge, a labeller of known accuracy 1 - noise

and the judge's check before it labels anything (judge_check below; zoo.eval.judge_quality for the definitions):

    judge_check:
      pairs: 32            # gold-labelled pairs to score the judge on; 0 = no check
      at_chance: warn      # warn (a loud banner) | stop (raise before training) | off (log the numbers only)
      min_gold_margin: 0.0 # sampled pairs: keep those whose gold scores differ by more than this
      path: null           # a .jsonl/.json/.parquet file of {prompt, chosen, rejected} rows to use instead
"""

from __future__ import annotations

import dataclasses

from omegaconf import DictConfig, OmegaConf

from zoo import dist, seeds
from zoo.errors import ConfigError, UserError
from zoo.judges import NoisyJudge, PairwiseLogProbJudge, PointwiseScoreJudge, RewardModelJudge, RuleJudge, load_scorer
from zoo.rlaif.judge_config import JudgeCheckConfig, JudgeConfig

CHECK_DEFAULTS = dataclasses.asdict(JudgeCheckConfig())


class JudgeAtChanceError(UserError, RuntimeError):
    """The judge's labels could not be told from coin flips on gold-labelled pairs, and the config said stop."""


def check_judge(judge: DictConfig, path: str) -> None:
    """The `judge:` block at config path `path` (zoo.rlaif.judge_config.JudgeConfig): its kind, and what that kind
    needs. Runs before anything loads."""
    from zoo import rewards
    from zoo.checks import check_block

    kind = check_block(judge, JudgeConfig, path)["kind"] or "logprob"
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
    DPO reference too); `path`: the block's config path, for errors. With `noise` > 0, the judge's verdicts are
    flipped with that probability (NoisyJudge, seeded by trainer.seed)."""
    check_judge(spec, path)  # also done when the run's config is validated; here for callers of the API
    kind = spec.get("kind") or "logprob"
    if kind == "reward":
        from zoo import rewards

        (_, _, fn), = rewards.named_functions({spec.get("reward"): 1.0}, artifacts, cfg)
        judge = RuleJudge(fn)
    else:
        scorer = load_scorer(cfg, spec.get("model"), start_path=start_path,
                             start=None if frozen_start is None else (frozen_start, tokenizer))
        judge = (RewardModelJudge(PointwiseScoreJudge(scorer, principle=principle_text(spec))) if kind == "pointwise"
                 else PairwiseLogProbJudge(scorer, principle=principle_text(spec)))
    noise = float(spec.get("noise") or 0.0)
    return NoisyJudge(judge, noise, seed=seeds.seed_for("judge.noise", cfg.trainer.seed)) if noise else judge


def label_metrics(stage: str, pairs: list[dict], spec=None, gold_fn=None) -> dict:
    """What the labels say about the judge: how many pairs it labelled, its position consistency, its confidence,
    the label noise the judge block `spec` added (only when it added some), and, when the task has a gold signal
    (`gold_fn`), how often the labels the stage trains on agree with it (gold_agreement below)."""
    consistency = pairs[0].get("position_consistency") if pairs else None
    agreement = {f"{stage}/labels/{k}": v for k, v in gold_agreement(pairs, gold_fn).items()} if gold_fn else {}
    return {f"{stage}/num_pairs": len(pairs), f"{stage}/judge_position_consistency": consistency,
            f"{stage}/mean_label_confidence": sum(r["p_chosen"] for r in pairs) / len(pairs) if pairs else None,
            **noise_metrics(stage, spec), **agreement}


def gold_agreement(pairs: list[dict], gold_fn) -> dict:
    """The labels trained on, read against the gold: `gold_agreement` = the share of the pairs the gold separates
    whose chosen completion the gold scores higher, over `gold_separated` such pairs (of `len(pairs)`). The judge
    check measures the judge on a few dozen gold-ranked pairs before it labels; this reads every label it gave.
    A diagnostic: measured outside training (zoo.rewards.usage.measuring), so the gold is not marked trained on."""
    from zoo.rewards import usage

    with usage.measuring():
        prompts = [r["prompt"] for r in pairs]
        chosen = gold_fn(prompts, [r["chosen"] for r in pairs])
        rejected = gold_fn(prompts, [r["rejected"] for r in pairs])
    separated = [(c, r) for c, r in zip(chosen, rejected) if c is not None and r is not None and c != r]
    return {"gold_agreement": sum(c > r for c, r in separated) / len(separated) if separated else None,
            "gold_separated": len(separated)}


def noise_metrics(stage: str, spec) -> dict:
    """{<stage>/judge_noise: the flip probability} when the judge block `spec` sets one, else {}."""
    noise = float((spec or {}).get("noise") or 0.0)
    return {f"{stage}/judge_noise": noise} if noise else {}


def check_judge_check(algo, path: str) -> None:
    """The optional `judge_check:` block of an RLAIF algorithm (zoo.rlaif.judge_config.JudgeCheckConfig; absent:
    CHECK_DEFAULTS)."""
    from pathlib import Path

    from zoo.checks import check_block, require

    block, path = algo.get("judge_check"), f"{path}.judge_check"
    if block is None:
        return
    file = check_block(block, JudgeCheckConfig, path)["path"]
    if file is not None:
        require(Path(file).expanduser().is_file() and Path(file).suffix in (".jsonl", ".json", ".parquet"),
                f"{path}.path={file!r}: expected a .jsonl, .json or .parquet file of {{prompt, chosen, rejected}} rows")


def judge_check(ctx, judge=None) -> dict:
    """Score the stage's judge on gold-labelled pairs before it labels anything; returns the stage metrics
    `<stage>/judge/*` ({} when skipped). `ctx`: the stage's zoo.algos.base.Context; `judge`: the judge the stage
    labels with, or None to build it here from the stage's `judge:` block (as labelling will).

    The pair set, first that applies: `judge_check.path`; the stage's rows when they carry chosen/rejected; the
    safety task's template responses (ideal vs unacceptable); two samples per prompt from the starting policy
    ranked by the task's gold reward. None of these (no gold signal): skipped with a note. So is a judge that is
    the task's gold reward itself (online_dpo_gold), which agrees with gold by construction.

    At chance (zoo.eval.judge_quality.at_chance: the 95% interval of accuracy reaches 0.5): a banner under
    at_chance=warn, JudgeAtChanceError under stop. The result is kept in the stage dir, so a resumed run reports
    the same numbers without measuring again.
    """
    import json
    import sys

    from zoo.eval.judge_quality import at_chance, judge_quality
    from zoo.files import write_json
    from zoo.rewards import usage

    spec = {**CHECK_DEFAULTS, **OmegaConf.to_container(ctx.algo.get("judge_check") or OmegaConf.create({}),
                                                        resolve=True)}
    key = f"{ctx.config_path}.judge_check"
    if spec["pairs"] == 0:
        return {}
    cache = ctx.stage_dir / "judge_check.json"
    with dist.main_first():  # under zoo.launch the main process measures, the others read its file
        if cache.exists():
            found = json.loads(cache.read_text())
        else:
            if _judge_is_gold(ctx):  # nothing to measure; its accuracy is still a point of an accuracy axis
                print(f"[zoo] {ctx.stage}: the judge is the task's gold signal ({ctx.cfg.data.gold}); it agrees with "
                      f"gold by construction, judge check skipped")
                return {f"{ctx.stage}/judge/{k}": v for k, v in
                        {"accuracy": 1.0, "position_consistency": 1.0, "by_construction": 1.0, "num_pairs": 0}.items()}
            # A diagnostic: nothing here trains, and the run's random stream (e.g. a LoRA init after it) is left as is.
            with usage.measuring(), seeds.preserved():
                pairs, source = _gold_pairs(ctx, spec)
                if pairs is None:
                    print(f"[zoo] {ctx.stage}: judge check skipped: {source}")
                    return {}
                if judge is None:
                    judge = build_judge(ctx.algo.judge, cfg=ctx.cfg, start_path=ctx.policy.path,
                                        tokenizer=ctx.policy.tokenizer, artifacts=ctx.artifacts,
                                        frozen_start=ctx.policy.model, path=f"{ctx.config_path}.judge")
                found = {**judge_quality(judge, pairs), "source": source}
            found["at_chance"] = at_chance(found)
            write_json(cache, found)
    metrics = {f"{ctx.stage}/judge/{k}": (float(v) if isinstance(v, bool) else v) for k, v in found.items()
               if k != "source"}
    metrics[f"{ctx.stage}/judge/num_pairs"] = metrics.pop(f"{ctx.stage}/judge/n")
    if not found["n"]:
        print(f"[zoo] {ctx.stage}: judge check: no gold-labelled pair ({found['source']}); nothing measured")
        return metrics
    line = (f"accuracy vs gold {found['accuracy']:.2f} (95% interval {found['accuracy_low']:.2f}-"
            f"{found['accuracy_high']:.2f}), position consistency {found['position_consistency']:.2f}, ties "
            f"{found['ties']:.2f}, order-averaged label accuracy {found['label_accuracy']:.2f}, on {found['n']} "
            f"pairs ({found['source']})")
    if not found["at_chance"] or spec["at_chance"] == "off":
        print(f"[zoo] {ctx.stage}: judge check: {line}")
        return metrics
    message = (f"{ctx.stage}: the judge is AT CHANCE: {line}. Its labels cannot be told from coin flips, so "
               f"training on them teaches noise. Choose another judge ({ctx.config_path}.judge.model / principle)")
    if spec["at_chance"] == "stop":
        raise JudgeAtChanceError(f"{message}. Stopped before training by {key}.at_chance=stop; set it to warn "
                                 f"to train anyway.")
    bar = "!" * 100
    print(f"\n{bar}\n[zoo] WARNING {message}; {key}.at_chance=stop refuses such a run.\n{bar}\n", file=sys.stderr,
          flush=True)
    return metrics


def _judge_is_gold(ctx) -> bool:
    """The judge is the task's gold reward itself, with no label noise (a noisy one is what a check measures)."""
    judge = ctx.algo.judge
    return (judge.get("kind") == "reward" and ctx.gold_fn is not None and judge.get("reward") == ctx.cfg.data.gold
            and not judge.get("noise"))


def _gold_pairs(ctx, spec: dict) -> tuple[list[dict] | None, str]:
    """(pairs, where they came from), or (None, why there are none)."""
    from zoo.eval import judge_quality as jq

    n = spec["pairs"]
    if spec["path"] is not None:
        from zoo.data.io import read_rows

        rows = [row for _, row in read_rows(str(spec["path"]))]
        missing = [c for c in ("prompt", "chosen", "rejected") if rows and c not in rows[0]]
        if missing:
            raise ConfigError(f"{ctx.config_path}.judge_check.path={str(spec['path'])!r}: rows lack {missing}; "
                              f"expected {{prompt, chosen, rejected}}")
        return jq.pairs_from_rows(rows, n), f"{spec['path']}, its chosen/rejected as gold"
    if jq.pairs_from_rows(ctx.rows, 1):
        return jq.pairs_from_rows(ctx.rows, n), f"data={ctx.cfg.data.name}'s own chosen/rejected as gold"
    if ctx.cfg.data.name == "safety":
        return (jq.safety_pairs(ctx.rows, n, ctx.cfg.data.seed),
                "safety templates: ideal vs unacceptable response per prompt")
    if ctx.gold_fn is None:
        return None, (f"data={ctx.cfg.data.name} has no gold signal (data.gold) or chosen/rejected rows; set "
                      f"{ctx.config_path}.judge_check.path to a file of gold-labelled pairs to score the judge")
    g = ctx.algo.pairs
    pairs = jq.sampled_gold_pairs(ctx.policy.model, ctx.policy.tokenizer, ctx.rows, ctx.gold_fn, n,
                                  max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                                  min_margin=spec["min_gold_margin"],
                                  seed=seeds.seed_for("judge_check.samples", ctx.cfg.trainer.seed))
    return pairs, f"2 samples per prompt from the starting policy ranked by gold {ctx.cfg.data.gold}"
