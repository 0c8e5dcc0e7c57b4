"""Each run's path from the shared start to its final policy, the data of the frontier and length plots: the
baseline policy (step 0: `before/*`, KL 0), every curve.jsonl point of the stages after the baseline in step
order, and the final harness (`eval/*`) at the last step. Steps count optimizer steps after the baseline: a stage's
rounds are laid end to end (`cumulative_steps`) and a later stage starts where the earlier one ended.

Plain data, no matplotlib: the tests check the points a plot will draw."""

from __future__ import annotations

import statistics

from zoo.compare.context import baseline
from zoo.compare.runs import Run, number
from zoo.compare.stats import stats

FIRST_SEGMENT = "checkpoints"  # a trainer's default output dir: the segment of entries that name none


def cumulative_steps(rows: list[dict], lengths_from: list[dict] | None = None) -> list[dict]:
    """One stage's rows with `step` made cumulative over its segments.

    A stage that runs one trainer per round (online DPO: segments "round_0", "round_1", ...) restarts its step
    count at 0 each round, so drawn as logged the rounds pile up over the first few steps. Each segment's steps
    are offset by the previous segments' last steps, segments in order of first appearance. `lengths_from`: rows
    that know each segment's length (the stage's history, logged to every round's last step); without it the
    rows' own last steps are used, which undercounts a round that has only a mid-round curve point."""
    ends: dict[str, float] = {}  # segment -> its last step, in order of first appearance
    for row in [*(lengths_from or []), *rows]:
        step = number(row.get("step"))
        segment = row.get("segment", FIRST_SEGMENT)
        ends[segment] = max(ends.get(segment, 0.0), 0.0 if step is None else step)
    offsets, total = {}, 0.0
    for segment, end in ends.items():
        offsets[segment] = total
        total += end
    out = []
    for row in rows:
        step = number(row.get("step"))
        out.append(row if step is None else {**row, "step": step + offsets[row.get("segment", FIRST_SEGMENT)]})
    return out


def stage_order(run: Run) -> list[str]:
    """The run's stages in run order: `stages.*` as its config lists them, then the final `algo` stage."""
    names = list(dict.fromkeys(k.split(".")[1] for k in run.config if k.startswith("stages.") and k.count(".") > 1))
    final = run.config.get("algo.name")
    return names + ([str(final)] if final is not None and final not in names else [])


# Runs written before `<stage>/produces` was recorded: the algorithms that train a reward model, not the policy.
REWARD_MODEL_ALGOS = frozenset({"rm", "rm_ranked", "rlaif_rm"})


def produces_policy(run: Run, stage: str) -> bool:
    """Whether the stage trains the policy (and so moves along the path) or a reward model the later stages use."""
    recorded = run.metrics.get(f"{stage}/produces")
    if recorded is not None:
        return recorded == "policy"
    return run.config.get(f"stages.{stage}.name", stage) not in REWARD_MODEL_ALGOS  # the final stage: its algo


def stages_after_baseline(run: Run) -> list[str]:
    """The policy stages after the evaluation baseline: a reward-model stage between them (PPO's RM) takes no
    steps on the policy's path."""
    order, ref = stage_order(run), baseline(run)
    after = order[order.index(ref) + 1:] if ref in order else order
    return [stage for stage in after if produces_policy(run, stage)]


def _stage_steps(run: Run, stage: str, curve_rows: list[dict]) -> float:
    """A stage's length in optimizer steps: its history's last (cumulative) step, else trainer.max_steps, and never
    before its last curve point (a stage that trains nothing, best-of-n, numbers its points by n)."""
    last_point = max((number(r.get("step")) or 0.0 for r in curve_rows), default=0.0)
    logged = [number(r.get("step")) for r in cumulative_steps(run.history.get(stage, []))]
    logged = [s for s in logged if s is not None]
    if logged:
        return max(max(logged), last_point)
    max_steps = number(run.config.get("trainer.max_steps"))
    return max(max_steps if max_steps and max_steps > 0 else 0.0, last_point)


def trajectory(run: Run) -> list[dict]:
    """[{"stage", "step", <harness metrics without prefix>}, ...] from the start to the final harness."""
    start = {k.partition("/")[2]: v for k, v in run.metrics.items() if k.startswith("before/")}
    points = [{**start, "kl": start.get("kl", 0.0), "stage": "start", "step": 0.0}]
    offset = 0.0
    for stage in stages_after_baseline(run):
        rows = cumulative_steps([r for r in run.curve if r.get("stage") == stage], run.history.get(stage))
        steps = [r for r in rows if number(r.get("step")) is not None]
        points += [{**r, "stage": stage, "step": offset + r["step"], "stage_step": r["step"]}
                   for r in sorted(steps, key=lambda r: r["step"])]
        offset += _stage_steps(run, stage, steps)
    final = {k.partition("/")[2]: v for k, v in run.metrics.items() if k.startswith("eval/")}
    return points + [{**final, "stage": "final", "step": offset}]


def final_stages(groups: dict[str, list[Run]]) -> set[str]:
    """Each run's last stage: the one its group was trained differently in, even where the groups give it the same
    name (PPO and PPO-ptx are both `ppo`), so never drawn as shared by every group."""
    return {order[-1] for runs in groups.values() for r in runs if (order := stage_order(r))}


def shared_stages(groups: dict[str, list[Run]]) -> set[str]:
    """Stages on the path of every run of every group (an SFT stage after eval.baseline=start): drawn once, not in
    each group's colour."""
    runs = [r for rs in groups.values() for r in rs]
    if len(groups) < 2 or not runs:
        return set()
    on_path = [{p["stage"] for p in trajectory(r)} - {"start", "final"} for r in runs]
    return set.intersection(*on_path) - final_stages(groups)


def xy(points: list[dict], x: str, y: str) -> list[tuple[float, float, float]]:
    """(step, x, y) of the points where both are numbers."""
    return [(p["step"], number(p.get(x)), number(p.get(y))) for p in points
            if number(p.get(x)) is not None and number(p.get(y)) is not None]


def _positions(run: Run, x: str, y: str) -> dict[tuple[int, float], dict]:
    """The run's points with both metrics, keyed by (the stage's place on the path, the step within the stage):
    seeds of one configuration share the keys even where an earlier stage's length differed between them."""
    rank = {stage: i for i, stage in enumerate(["start", *stages_after_baseline(run), "final"])}
    return {(rank.get(p["stage"], len(rank)), p.get("stage_step", 0.0)): p for p in trajectory(run)
            if number(p.get(x)) is not None and number(p.get(y)) is not None}


def group_mean(runs: list[Run], x: str, y: str) -> list[dict]:
    """The group's seed mean along its trajectory: x and y's mean and 95% t-interval over the runs at each place
    on the path (a stage's curve point at a step, the final harness), and the mean of their steps. Places on the
    path of only some runs (a run resumed with an extra curve point) are left out: a mean over the seeds that
    have them would zig-zag the path."""
    placed = [_positions(run, x, y) for run in runs]
    placed = [p for p in placed if p]
    out = []
    for key in sorted(set.intersection(*(set(p) for p in placed)) if placed else ()):
        points = [p[key] for p in placed]
        xs, ys = [number(p[x]) for p in points], [number(p[y]) for p in points]
        sx, sy = stats(xs), stats(ys)
        out.append({"step": statistics.fmean(p["step"] for p in points), "stage": points[0]["stage"],
                    "n": len(points), "x": statistics.fmean(xs), "y": statistics.fmean(ys),
                    "x_low": sx["ci95_low"], "x_high": sx["ci95_high"], "y_low": sy["ci95_low"],
                    "y_high": sy["ci95_high"]})
    return out
