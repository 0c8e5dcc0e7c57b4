"""Online (iterative) DPO with a judge: every K optimizer steps, sample fresh pairs from the current policy,
label them with a zoo judge, and continue DPO on them. The judge is first scored on gold-labelled pairs
(`judge_check:`, zoo.rlaif.judging.judge_check; skipped when it is the task's gold itself).

Round r (of `rounds`): take the next K x batch prompts of the stage's share (cycling), sample two completions
each from the current policy, label them with the judge (zoo.rlaif.judging: log-prob pairwise by default, or
pointwise, or any reward function), and run K DPO steps on the labelled pairs. The DPO reference and, with
`judge.model: null`, the judge are one frozen copy of the stage's starting weights, so neither drifts with the
policy. Each round is a fresh DPOTrainer over the current weights (optimizer and learning-rate schedule start
again; a constant schedule is the usual choice), as in iterative DPO.

Resumable: each finished round leaves stage_dir/rounds/<r>/ (its pairs and the trainable weights after it);
a crash inside a round resumes from that round's last checkpoint under resume=true.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics

import torch
from trl import DPOConfig

from zoo import dist, resume, seeds
from zoo.algos.base import Context, training_precision
from zoo.algos.preference import check_dpo_args, check_judge_pairs, train_dpo
from zoo.checks import number
from zoo.data.pairs import preference_rows
from zoo.files import atomic_dir, write_json, write_jsonl
from zoo.rewards import usage
from zoo.rlaif.judging import build_judge, check_judge_check, judge_check, noise_metrics

CONFIG_CLASS = DPOConfig
PRODUCES = "policy"
EXTRA_KEYS = ("judge", "pairs", "rounds", "steps_per_round", "judge_check")
check_args = check_dpo_args


def check_config(algo, path: str) -> None:
    check_judge_pairs(algo, path)
    check_judge_check(algo, path)
    number(algo, "rounds", path, lambda v: v >= 1, "an integer >= 1", integer=True)
    number(algo, "steps_per_round", path, lambda v: v >= 1, "an integer >= 1", integer=True)


def round_prompts(rows: list[dict], round_index: int, n: int) -> list[dict]:
    """Round r's n rows: the share read cyclically, so successive rounds see new prompts first."""
    if not rows:
        raise ValueError("online_dpo: the stage has no prompt rows")
    start = round_index * n
    return [rows[(start + i) % len(rows)] for i in range(n)]


def round_steps(rounds: int, k: int, max_steps: int) -> list[int]:
    """DPO steps of each round: `rounds` x K, or, when max_steps > 0 (the shared knob), max_steps in rounds of
    K with the remainder last."""
    if max_steps is None or max_steps <= 0:
        return [k] * rounds
    return [min(k, max_steps - start) for start in range(0, max_steps, k)]


def _trainable_state(model) -> dict:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _load_round(model, round_dir) -> None:
    state = torch.load(round_dir / "trainable.pt", map_location="cpu")
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise RuntimeError(f"{round_dir}: saved weights {sorted(missing)[:3]} do not fit this model (a different "
                           f"model or peft config than the run that wrote them?)")
    model.load_state_dict(state, strict=False)


def _save_round(model, round_dir, pairs: list[dict], info: dict) -> None:
    """Atomically: the directory appears only with everything in it."""
    with atomic_dir(round_dir) as tmp:
        write_jsonl(tmp / "pairs.jsonl", pairs)
        torch.save(_trainable_state(model), tmp / "trainable.pt")
        write_json(tmp / "round.json", info)


def train(ctx: Context):
    from zoo.models import load_reference, wrap_peft

    rounds, k = int(ctx.algo.rounds), int(ctx.algo.steps_per_round)  # >= 1: check_config
    steps = round_steps(rounds, k, ctx.args.max_steps)
    rounds = len(steps)
    per_round = k * ctx.args.per_device_train_batch_size * ctx.args.gradient_accumulation_steps
    reference = load_reference(ctx.cfg, ctx.policy.path)  # frozen start: DPO reference and default judge LM
    judge = build_judge(ctx.algo.judge, cfg=ctx.cfg, start_path=ctx.policy.path, tokenizer=ctx.policy.tokenizer,
                        artifacts=ctx.artifacts, frozen_start=reference, path=f"{ctx.config_path}.judge")
    checked = judge_check(ctx, judge)  # before the policy is wrapped: gold pairs are sampled from the start
    rounds_dir = ctx.stage_dir / "rounds"

    # Wrapped once here (TRL would wrap it in each round's trainer); every round then trains the same adapter.
    model = wrap_peft(ctx.policy)
    done = [r for r in range(rounds) if (rounds_dir / str(r)).is_dir()]
    resume.refuse_restart(done, ctx.resume, f"{rounds_dir} holds finished rounds {done}")
    if done:  # resumed: continue from the last finished round's weights
        _load_round(model, rounds_dir / str(done[-1]))
        print(f"[zoo] {ctx.stage}: rounds {done} already done, continuing after round {done[-1]}")

    infos = []
    for r in range(rounds):
        round_dir = rounds_dir / str(r)
        if r in done:
            infos.append(json.loads((round_dir / "round.json").read_text()))
            continue
        rows = round_prompts(ctx.rows, r, per_round)
        pending = ctx.stage_dir / f"round_{r}_pairs.jsonl"  # labelled before a crash: trained on after resume
        pairs = resume.made_once(pending, lambda share, r=r: preference_rows(
            model, ctx.policy.tokenizer, share, judge, ctx.algo.pairs,
            seed=seeds.seed_for("online_dpo.round", ctx.cfg.trainer.seed, round=r),
            progress=f"{ctx.stage} round {r}: sampling", precision=training_precision(ctx, model)), rows)
        info = {"round": r, "num_prompts": len(rows), "num_pairs": len(pairs), "steps": 0,
                "judge_position_consistency": getattr(judge, "position_consistency", None)}
        if ctx.gold_fn is not None and pairs:  # how good the policy's own samples were at the start of the round
            with usage.measuring():  # a diagnostic: the judge, not the gold, labels the pairs
                info["sample_gold"] = _mean_gold(ctx.gold_fn, rows, pairs)
        if pairs:
            args = dataclasses.replace(ctx.args, max_steps=steps[r],
                                       output_dir=os.path.join(ctx.args.output_dir, f"round_{r}"))
            round_ctx = dataclasses.replace(ctx, steps_before=sum(steps[:r]))  # curve points on the stage's steps
            _, round_metrics = train_dpo(round_ctx, pairs, model=model, ref_model=reference, args=args)
            info["steps"] = steps[r]
            info["train_loss"] = round_metrics.get(f"{ctx.stage}/train_loss")
            info["num_tokens"] = round_metrics.get(f"{ctx.stage}/num_tokens")
        else:
            print(f"[zoo] {ctx.stage} round {r}: the judge labelled no pair above pairs.min_margin; no update")
        if dist.is_main():  # one writer of the stage dir; the next round's gather keeps the others in step
            _save_round(model, round_dir, pairs, info)
            pending.unlink(missing_ok=True)
            shutil.rmtree(os.path.join(ctx.args.output_dir, f"round_{r}"), ignore_errors=True)
        infos.append(info)
        print(f"[zoo] {ctx.stage} round {r}: {info}")
    return model, {**stage_metrics(ctx.stage, infos), **noise_metrics(ctx.stage, ctx.algo.judge), **checked}


def stage_metrics(stage: str, infos: list[dict]) -> dict:
    """The stage's metrics from every round's record (so a resumed run reports what an uninterrupted one does):
    per-round values, and train_loss as the step-weighted mean over the rounds that trained."""
    metrics = {}
    for info in infos:
        for key in ("num_pairs", "sample_gold", "train_loss", "judge_position_consistency"):
            if info.get(key) is not None:
                metrics[f"{stage}/round{info['round']}/{key}"] = info[key]
    trained = [i for i in infos if i.get("train_loss") is not None and i.get("steps")]
    if trained:
        steps = sum(i["steps"] for i in trained)
        metrics[f"{stage}/train_loss"] = sum(i["train_loss"] * i["steps"] for i in trained) / steps
        metrics[f"{stage}/num_steps"] = steps
    tokens = [i["num_tokens"] for i in infos if i.get("num_tokens") is not None]
    if tokens:
        metrics[f"{stage}/num_tokens"] = sum(tokens)
    metrics[f"{stage}/rounds"] = len(infos)
    metrics[f"{stage}/num_pairs"] = sum(i["num_pairs"] for i in infos)
    return metrics


def _mean_gold(gold_fn, rows: list[dict], pairs: list[dict]) -> float | None:
    """Mean gold score of both completions of every pair (extra columns such as `answer` matched by prompt)."""
    from zoo.data import task_columns

    by_prompt = {repr(r["prompt"]): r for r in rows}
    paired_rows = [by_prompt[repr(p["prompt"])] for p in pairs]
    completions = [c for p in pairs for c in (p["chosen"], p["rejected"])]
    scores = gold_fn([r["prompt"] for r in paired_rows for _ in range(2)], completions,
                     **task_columns(paired_rows, repeat=2))
    scores = [s for s in scores if s is not None]
    return statistics.fmean(scores) if scores else None
