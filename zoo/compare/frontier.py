"""Reward-vs-KL frontiers compared at equal KL: which arm reaches more reward for the same KL from the shared start.

A run's path (zoo.compare.trajectories: the start, its curve points, its final harness) is a set of (KL, reward)
points. Its frontier value at a KL budget k is the best reward among its points with KL <= k: what the method
reached.without moving further than k nats from the start (the start itself is on every path, so a budget below
every trained point reads the start's reward). Per group and budget: the seed mean and 95% t-interval. Per pair
of groups and budget: the difference within each seed (both runs of a seed share their start), its mean and
t-interval over seeds, and a verdict only where the interval excludes 0 — "A above B at KL <= k", else "not
separated". Budgets are powers of two between the smallest and the largest KL any point reached.

Plain data, no matplotlib; compare.md's "Frontier at equal KL" section and frontier.csv are written from it.
"""

from __future__ import annotations

import math

from zoo.compare.runs import Run
from zoo.compare.stats import stats
from zoo.compare.tables import plus3
from zoo.compare.trajectories import trajectory, xy
from zoo.compare.verdicts import seed_of

FIELDS = ("metric", "budget", "group", "other", "n", "mean", "ci95_low", "ci95_high", "verdict")


def best_within(points: list[tuple[float, float, float]], budget: float) -> float | None:
    """The highest y among (step, x, y) points with x <= budget, or None."""
    inside = [y for _, x, y in points if x <= budget]
    return max(inside) if inside else None


def budgets(groups: dict[str, list[Run]], x: str = "kl", y: str = "gold_reward", most: int = 7) -> list[float]:
    """Powers of two from the smallest positive x any point reached (rounded up) to the largest, at most `most`."""
    positive = [px for runs in groups.values() for r in runs for _, px, _ in xy(trajectory(r), x, y) if px > 0]
    if not positive:
        return []
    low, high = math.ceil(math.log2(min(positive))), math.ceil(math.log2(max(positive)))
    grid = [2.0 ** e for e in range(low, high + 1)]
    step = max(1, math.ceil(len(grid) / most))
    return grid[::-1][::step][::-1]


def _values(paths: list[tuple], budget: float) -> dict:
    """{seed: frontier value} of the (seed, points) paths that have a point within the budget."""
    found = {seed: best_within(points, budget) for seed, points in paths}
    return {seed: value for seed, value in found.items() if value is not None}


def rows(groups: dict[str, list[Run]], x: str = "kl", y: str = "gold_reward",
         grid: list[float] | None = None) -> list[dict]:
    """One row per (budget, group) with the seed statistics, then one per (budget, pair) with the paired verdict."""
    grid = budgets(groups, x, y) if grid is None else grid
    labels, out = list(groups), []
    paths = {label: [(seed_of(r), xy(trajectory(r), x, y)) for r in runs] for label, runs in groups.items()}
    for budget in grid:
        found = {label: _values(paths[label], budget) for label in labels}
        for label in labels:
            if found[label]:
                s = stats(list(found[label].values()))
                out.append({"metric": y, "budget": budget, "group": label, "other": "", "n": s["n"],
                            "mean": s["mean"], "ci95_low": s["ci95_low"], "ci95_high": s["ci95_high"], "verdict": ""})
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                seeds = sorted(set(found[a]) & set(found[b]), key=str)
                if len(seeds) < 2:
                    continue
                s = stats([found[a][k] - found[b][k] for k in seeds])
                verdict = ("not separated" if s["ci95_low"] <= 0 <= s["ci95_high"] else
                           f"{a} above" if s["ci95_low"] > 0 else f"{b} above")
                out.append({"metric": y, "budget": budget, "group": a, "other": b, "n": s["n"], "mean": s["mean"],
                            "ci95_low": s["ci95_low"], "ci95_high": s["ci95_high"], "verdict": verdict})
    return out


def markdown(found: list[dict], y: str) -> list[str]:
    """The section: each group's frontier value per budget (a table), then the pairs the interval separates."""
    mine = [r for r in found if r["metric"] == y]
    grid = sorted({r["budget"] for r in mine})
    if not grid:
        return []
    groups = list(dict.fromkeys(r["group"] for r in mine if not r["other"]))
    cell = {(r["group"], r["budget"]): r for r in mine if not r["other"]}
    lines = ["", f"## Frontier at equal KL: {y}", "",
             f"Best {y} a run reached at KL <= budget (its start, curve points and final harness), mean [95% "
             "t-interval] over seeds; a pair's difference is taken within each seed (shared start) and called only "
             "where its interval excludes 0.", "",
             "| group | " + " | ".join(f"KL <= {b:g}" for b in grid) + " |", "|---" * (len(grid) + 1) + "|"]
    for g in groups:
        cells = []
        for b in grid:
            r = cell.get((g, b))
            cells.append("—" if r is None else f"{plus3(r['mean'])} [{plus3(r['ci95_low'])}, {plus3(r['ci95_high'])}]"
                         + (f" (n={r['n']})" if r["n"] < max(c["n"] for c in mine if not c["other"]) else ""))
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    separated = [r for r in mine if r["other"] and r["verdict"] != "not separated"]
    lines += ["", f"Separated pairs ({len(separated)} of {sum(1 for r in mine if r['other'])} pair x budget "
                  "comparisons):" if separated else "No pair is separated at any budget.", ""]
    for r in separated:
        lines.append(f"- KL <= {r['budget']:g}: {r['verdict']} ({r['group']} − {r['other']} = {plus3(r['mean'])} "
                     f"[{plus3(r['ci95_low'])}, {plus3(r['ci95_high'])}], {r['n']} seeds)")
    return lines
