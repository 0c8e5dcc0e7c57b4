"""One run-level number against another across groups (`--versus <metric>`): e.g. the final gold reward of RLAIF
against the accuracy its judge measured, one point per group (seed mean, 95% t-intervals on both axes), the start
every group shares drawn as a band, so "how accurate must the labeller be before training beats the start" reads
off the plot. Plain data for the tests; matplotlib only to draw `versus_<metric>.png`.

`fit` reads that threshold off the runs themselves: each run's change (after - before, so the seed's start cancels)
against its x, one least-squares line over the runs, and the x where the line crosses 0 (`break_even`), with its
95% interval: the x at which a zero change is not rejected (inverse prediction, t with runs - 2 degrees of freedom;
unbounded when the slope is not separated from 0). The runs count as independent: runs of one seed share a start
and its samples, which the change removes only in part, so the interval errs narrow and says so.
"""

from __future__ import annotations

import math
from pathlib import Path

from zoo.compare import context
from zoo.compare.bootstrap import t975
from zoo.compare.runs import Run, number
from zoo.compare.stats import stats

Y = ("eval/gold_reward", "eval/independent_reward")


def points(groups: dict[str, list[Run]], x: str, y: str) -> list[dict]:
    """Per group with both numbers in at least one run: x and y seed statistics."""
    out = []
    for label, runs in groups.items():
        pairs = [(number(r.metrics.get(x)), number(r.metrics.get(y))) for r in runs]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if pairs:
            sx, sy = stats([a for a, _ in pairs]), stats([b for _, b in pairs])
            out.append({"group": label, "n": len(pairs), "x": sx["mean"], "x_low": sx["ci95_low"],
                        "x_high": sx["ci95_high"], "y": sy["mean"], "y_low": sy["ci95_low"], "y_high": sy["ci95_high"]})
    return out


def start(groups: dict[str, list[Run]], y: str) -> dict | None:
    """The shared start's y (`before/...`) over every run: what a point must clear."""
    values = [number(r.metrics.get("before/" + y.partition("/")[2])) for runs in groups.values() for r in runs]
    values = [v for v in values if v is not None]
    return stats(values) if values else None


FIT_FIELDS = ("metric", "x", "runs", "slope", "slope_low", "slope_high", "intercept", "break_even", "break_even_low",
              "break_even_high", "skipped")


def fit(groups: dict[str, list[Run]], x: str, y: str, skip: tuple[str, ...] = ()) -> dict | None:
    """The change of `y` (after - before) against `x` over every run that has both, groups whose label contains a
    string of `skip` left out (e.g. an arm with another budget); None below 3 runs or with one x value."""
    key = "before/" + y.partition("/")[2]
    found = [(number(r.metrics.get(x)), number(r.metrics.get(y)), number(r.metrics.get(key)))
             for label, runs in groups.items() if not any(s in label for s in skip) for r in runs]
    points = [(a, b - c) for a, b, c in found if None not in (a, b, c)]
    if len(points) < 3 or len({a for a, _ in points}) < 2:
        return None
    xs, ds = [a for a, _ in points], [d for _, d in points]
    n = len(xs)
    mx, md = sum(xs) / n, sum(ds) / n
    sxx = sum((v - mx) ** 2 for v in xs)
    slope = sum((v - mx) * (d - md) for v, d in zip(xs, ds)) / sxx
    intercept = md - slope * mx
    s2 = sum((d - intercept - slope * v) ** 2 for v, d in zip(xs, ds)) / (n - 2)
    t = t975(n - 2)
    half = t * math.sqrt(s2 / sxx)
    row = {"metric": y, "x": x, "runs": n, "slope": slope, "slope_low": slope - half, "slope_high": slope + half,
           "intercept": intercept, "break_even": -intercept / slope if slope else None, "break_even_low": None,
           "break_even_high": None, "skipped": ",".join(skip)}
    # {x0 : (intercept + slope x0)^2 <= t^2 s2 (1/n + (x0 - mx)^2 / sxx)}, a quadratic q2 x0^2 + q1 x0 + q0 <= 0
    q2 = slope ** 2 - t * t * s2 / sxx
    q1 = 2 * intercept * slope + 2 * t * t * s2 * mx / sxx
    q0 = intercept ** 2 - t * t * s2 * (1 / n + mx * mx / sxx)
    disc = q1 * q1 - 4 * q2 * q0
    if q2 > 0 and disc >= 0:  # the slope is separated from 0: a bounded interval around the crossing
        r1, r2 = sorted(((-q1 - math.sqrt(disc)) / (2 * q2), (-q1 + math.sqrt(disc)) / (2 * q2)))
        row.update(break_even_low=r1, break_even_high=r2)
    return row


def _break_even_text(line: dict) -> str:
    if line["break_even_low"] is None:
        return "slope not separated from 0, no break-even"
    return f"break-even {line['break_even']:.2f} [{line['break_even_low']:.2f}, {line['break_even_high']:.2f}]"


def fit_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []

    def g(v):
        return "—" if v is None else f"{v:.3g}"

    out = ["", f"Fit over runs: each run's change (after − before) against {rows[0]['x']}, one least-squares line; "
                "break-even = where it crosses 0, with the x values at which a zero change is not rejected (95%, "
                "t with runs − 2 df; unbounded — shown as — when the slope is not separated from 0). Runs count as "
                "independent (runs of one seed share their start's samples), so the intervals err narrow."
                + (f" Groups left out: {rows[0]['skipped']}." if rows[0]["skipped"] else ""), "",
           "| metric | runs | slope [95% CI] | change at x = 0 | break-even [95% CI] |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['metric']} | {r['runs']} | {g(r['slope'])} [{g(r['slope_low'])}, {g(r['slope_high'])}] | "
                   f"{g(r['intercept'])} | {g(r['break_even'])} [{g(r['break_even_low'])}, {g(r['break_even_high'])}] |")
    return out + [""]


def plot(groups: dict[str, list[Run]], x: str, out: Path, fits: dict[str, dict] | None = None) -> Path | None:
    drawn = [(y, points(groups, x, y)) for y in Y]
    drawn = [(y, p) for y, p in drawn if len(p) >= 2]
    if not drawn:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(drawn), figsize=(5.8 * len(drawn), 4.4), squeeze=False)
    for ax, (y, found) in zip(axes[0], drawn):
        base = start(groups, y)
        if base is not None:
            ax.axhspan(base["ci95_low"] if base["ci95_low"] is not None else base["mean"],
                       base["ci95_high"] if base["ci95_high"] is not None else base["mean"], color="grey", alpha=0.2)
            ax.axhline(base["mean"], color="grey", linewidth=1, label="the start (before), mean and 95% interval")
        for p in found:
            xerr = [[p["x"] - p["x_low"]], [p["x_high"] - p["x"]]] if p["x_low"] is not None else None
            yerr = [[p["y"] - p["y_low"]], [p["y_high"] - p["y"]]] if p["y_low"] is not None else None
            ax.errorbar([p["x"]], [p["y"]], xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=f"{p['group']} (n={p['n']})")
        line = (fits or {}).get(y)
        if line is not None and base is not None:  # the fitted change, drawn on the start's mean
            xs = [min(p["x"] for p in found), max(p["x"] for p in found)]
            ax.plot(xs, [base["mean"] + line["intercept"] + line["slope"] * v for v in xs], "--", color="black",
                    linewidth=1, label=f"fit over {line['runs']} runs: {_break_even_text(line)}")
        ax.set_xlabel(x)
        ax.set_ylabel(y + " (after)")
        ax.legend(fontsize=6, loc="best")
    fig.suptitle(context.title(groups, f"{', '.join(y for y, _ in drawn)} against {x}: seed means, 95% t-intervals"),
                 fontsize=9)
    fig.tight_layout()
    path = out / f"versus_{x.replace('/', '_')}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
