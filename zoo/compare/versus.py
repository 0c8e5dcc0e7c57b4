"""One run-level number against another across groups (`--versus <metric>`): e.g. the final gold reward of RLAIF
against the accuracy its judge measured, one point per group (seed mean, 95% t-intervals on both axes), the start
every group shares drawn as a band, so "how accurate must the labeller be before training beats the start" reads
off the plot. Plain data for the tests; matplotlib only to draw `versus_<metric>.png`."""

from __future__ import annotations

from pathlib import Path

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


def plot(groups: dict[str, list[Run]], x: str, out: Path) -> Path | None:
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
        ax.set_xlabel(x)
        ax.set_ylabel(y + " (after)")
        ax.legend(fontsize=6, loc="best")
    seeds = max(p["n"] for _, found in drawn for p in found)
    fig.suptitle(f"{', '.join(y for y, _ in drawn)} against {x}: seed means, 95% t-intervals ({seeds} seeds at most)",
                 fontsize=9)
    fig.tight_layout()
    path = out / f"versus_{x.replace('/', '_')}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
