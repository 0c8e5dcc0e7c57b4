"""Seed statistics: each group's mean, sample std and 95% t-interval per metric (and per change from the
baseline), the baseline policy's own row, and which score the win rates compare."""

from __future__ import annotations

import math
import statistics

from zoo.compare.context import baseline
from zoo.compare.runs import Run, number

# t_{0.975, df} for df = 1..30; beyond that the normal 1.96 is within 2% of the t quantile.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
UNIT_METRICS = ("accuracy", "refusal_f1", "self_bleu", "overoptimised")  # besides *_rate, *_accuracy, distinct_*


def bounds(key: str) -> tuple[float, float] | None:
    """The range a metric cannot leave, by its name without prefix: shares and scores in [0, 1], correlations
    in [-1, 1]; None for unbounded ones (rewards, KL, length, entropy, gaps)."""
    name = key.rpartition("/")[2]
    if name.endswith(("_corr", "_spearman")):
        return -1.0, 1.0
    if name in UNIT_METRICS or name.endswith(("_rate", "_accuracy")) or name.startswith("distinct_"):
        return 0.0, 1.0
    return None


def stats(values: list[float], limits: tuple[float, float] | None = None) -> dict:
    """n, mean, sample std (ddof=1) and the 95% t-interval of the mean; std and interval are None below n=2.

    With few seeds the t-interval of a share near 1 passes 1, a value the metric cannot take: `limits` clips
    the interval to the metric's range (mean, std, min and max are left as measured)."""
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else None
    half = (T975[n - 2] if n - 1 <= len(T975) else 1.96) * std / math.sqrt(n) if std is not None else None
    low, high = (None, None) if half is None else (mean - half, mean + half)
    if limits is not None and half is not None:
        low, high = max(low, limits[0]), min(high, limits[1])
    return {"n": n, "mean": mean, "std": std, "ci95_low": low, "ci95_high": high, "min": min(values),
            "max": max(values)}


def _is_metric(key: str) -> bool:
    head, _, tail = key.partition("/")
    return (head in ("eval", "before") or key in ("run/seconds", "run/eval_seconds", "run/peak_rss_mb")
            or key.startswith("run/cost/")
            or tail in ("train_loss", "accuracy"))


def _metric_order(key: str) -> tuple:
    rank = {"eval": 0, "before": 1, "run": 2}.get(key.partition("/")[0], 3)
    return rank, key


def summarise(groups: dict[str, list[Run]]) -> list[dict]:
    """The CSV rows: one per group x metric with at least one non-null value in that group."""
    keys = sorted({k for runs in groups.values() for r in runs for k in r.metrics if _is_metric(k)}, key=_metric_order)
    rows = []
    for label, runs in groups.items():
        for key in keys:
            values = [v for v in (number(r.metrics.get(key)) for r in runs) if v is not None]
            if values:
                rows.append({"group": label, "metric": key, **stats(values, bounds(key))})
    return rows


def baseline_rows(groups: dict[str, list[Run]], keys) -> dict[str, dict[str, dict]]:
    """{eval.baseline: {eval/x: stats}} of the baseline policy itself ("before"), one value per seed: runs of one
    seed share their start (the same SFT policy), so counting it once per group would multiply n."""
    out: dict[str, dict[str, dict]] = {}
    for ref in dict.fromkeys(baseline(r) for runs in groups.values() for r in runs):
        runs = [r for rs in groups.values() for r in rs if baseline(r) == ref]
        for key in keys:
            before = "before/" + key.partition("/")[2]
            per_seed: dict[str, list[float]] = {}
            for r in runs:
                if number(r.metrics.get(before)) is not None:
                    per_seed.setdefault(str(r.config.get("trainer.seed")), []).append(r.metrics[before])
            if per_seed:
                out.setdefault(ref, {})[key] = stats([statistics.fmean(v) for v in per_seed.values()], bounds(key))
    return out


def _change_bounds(key: str) -> tuple[float, float] | None:
    """A change of a metric in [lo, hi] lies in [-(hi - lo), hi - lo]."""
    limits = bounds(key)
    return None if limits is None else (limits[0] - limits[1], limits[1] - limits[0])


def changes(groups: dict[str, list[Run]], keys) -> list[dict]:
    """Rows like summarise's for each `eval/x` key's change from the baseline: eval/x - before/x within each
    run (the run's own start, so seed-to-seed differences in the start cancel), then statistics over seeds.
    A run missing either value is left out of n."""
    rows = []
    for label, runs in groups.items():
        for key in keys:
            before = "before/" + key.partition("/")[2]
            pairs = [(number(r.metrics.get(key)), number(r.metrics.get(before))) for r in runs]
            deltas = [after - start for after, start in pairs if after is not None and start is not None]
            if deltas:
                rows.append({"group": label, "metric": key, **stats(deltas, _change_bounds(key))})
    return rows


def score_field(groups: dict[str, list[Run]]) -> str | None:
    """Gold where any trained completion has it (the true objective), else the proxy the run optimised."""
    after = [s for runs in groups.values() for r in runs for s in r.samples if s.get("policy") == "after"]
    return next((f for f in ("gold", "proxy") if any(number(s.get(f)) is not None for s in after)), None)
