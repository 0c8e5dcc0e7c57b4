"""Reward-model over-optimisation (Gao et al. 2022): the gold and the proxy reward as functions of d = sqrt(KL) from
the shared start, with the paper's functional forms fitted to each run.

Gains over the start (the path's first point), so both forms pass through 0 at d = 0:
    best-of-n   R(d) = d (alpha - beta d)        peak at d* = alpha / (2 beta), R(d*) = alpha^2 / (4 beta)
    RL          R(d) = d (alpha - beta ln d)     peak at d* = exp(alpha / beta - 1), R(d*) = beta d*
A run's points are its path (zoo.compare.trajectories: start, curve points, final harness); the form is best-of-n's
for algo=best_of_n and RL's otherwise. Least squares without intercept on the points with d > 0, per run, then per
group the seed mean and 95% t-interval of alpha, beta, d* and the fitted peak gain R(d*) (how high the gold gets
before it turns down: the paper's "a proxy trained on more data peaks later and higher" reads d* and R(d*) across
reward-model sizes), for the gold and for the proxy. A gold that has not
turned down shows as beta <= 0 (no peak): say so rather than read a peak off the fit.

Plain data and one plot (`overoptimisation.png`, matplotlib imported only to draw); `--overoptimisation` turns it on.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from zoo.compare.runs import Run, number
from zoo.compare.stats import stats
from zoo.compare.tables import plus3
from zoo.compare.trajectories import trajectory

METRICS = ("gold_reward", "proxy_reward")
COEFS = ("alpha", "beta", "peak_d", "peak_gain")
FIELDS = ("group", "metric", "form", "coef", "n", "mean", "ci95_low", "ci95_high")


def form_of(run: Run) -> str:
    return "bon" if run.config.get("algo.name") == "best_of_n" else "rl"


def gains(run: Run, metric: str) -> list[tuple[float, float]]:
    """(d, metric - its start value) along the run's path, for points with a KL and a value."""
    path = trajectory(run)
    start = number(path[0].get(metric))
    if start is None:
        return []
    out = []
    for p in path:
        kl, y = number(p.get("kl")), number(p.get(metric))
        if kl is not None and y is not None:
            out.append((math.sqrt(max(kl, 0.0)), y - start))
    return out


def fit(points: list[tuple[float, float]], form: str) -> dict | None:
    """{alpha, beta, peak_d, peak_gain} of R(d) fitted to (d, gain) points by least squares; None with fewer than 2
    points. The peak is None where beta <= 0 (the curve never turns down)."""
    pts = [(d, y) for d, y in points if d > 0]
    if len(pts) < 2:
        return None
    d = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    second = d * d if form == "bon" else d * np.log(d)
    (alpha, beta), *_ = np.linalg.lstsq(np.stack([d, -second], axis=1), y, rcond=None)
    peak = height = None
    if beta > 0:
        peak = alpha / (2 * beta) if form == "bon" else math.exp(min(alpha / beta - 1, 50.0))
        height = float(curve(form, alpha, beta, np.array([peak]))[0])
    return {"alpha": float(alpha), "beta": float(beta), "peak_d": peak, "peak_gain": height}


def curve(form: str, alpha: float, beta: float, d: np.ndarray) -> np.ndarray:
    return d * (alpha - beta * (d if form == "bon" else np.log(np.maximum(d, 1e-9))))


def rows(groups: dict[str, list[Run]]) -> list[dict]:
    """Per group, metric and coefficient: the seed statistics of the per-run fits."""
    out = []
    for label, runs in groups.items():
        for metric in METRICS:
            fits = [(form_of(r), fit(gains(r, metric), form_of(r))) for r in runs]
            fits = [(f, c) for f, c in fits if c is not None]
            if not fits:
                continue
            forms = sorted({f for f, _ in fits})
            for coef in COEFS:
                values = [c[coef] for _, c in fits if c[coef] is not None]
                if values:
                    s = stats(values)
                    out.append({"group": label, "metric": metric, "form": "/".join(forms), "coef": coef,
                                "n": s["n"], "mean": s["mean"], "ci95_low": s["ci95_low"],
                                "ci95_high": s["ci95_high"]})
    return out


PAIR_FIELDS = ("metric", "coef", "form", "group", "other", "n", "mean", "ci95_low", "ci95_high", "verdict")


def _seed(run: Run):
    return run.config.get("trainer.seed")


def between(groups: dict[str, list[Run]], metric: str = "gold_reward") -> list[dict]:
    """Where the gold peaks, group against group (e.g. reward models trained on more data): per pair of groups of
    the same form, the within-seed difference (group − other) of d* and of the peak's height, over the seeds where
    both fits turned down, with a verdict only where the 95% interval excludes 0. Paired by seed because the
    groups of one seed share their start."""
    fitted = {label: {(form_of(r), _seed(r)): c for r in runs if (c := fit(gains(r, metric), form_of(r)))}
              for label, runs in groups.items()}
    labels, out = list(groups), []
    for i, label in enumerate(labels):
        for other in labels[i + 1:]:
            for form in ("bon", "rl"):
                both = [(fitted[label][k], fitted[other][k]) for k in fitted[label] if k[0] == form and k in fitted[other]]
                for coef in ("peak_d", "peak_gain"):
                    diffs = [a[coef] - b[coef] for a, b in both if a[coef] is not None and b[coef] is not None]
                    if not diffs:
                        continue
                    st = stats(diffs)
                    low, high = st["ci95_low"], st["ci95_high"]
                    verdict = ("not separated" if low is None or low <= 0 <= high else
                               f"{label if low > 0 else other} {'later' if coef == 'peak_d' else 'higher'}")
                    out.append({"metric": metric, "coef": coef, "form": form, "group": label, "other": other,
                                "n": st["n"], "mean": st["mean"], "ci95_low": low, "ci95_high": high,
                                "verdict": verdict})
    return out


def between_markdown(found: list[dict]) -> list[str]:
    if not found:
        return []
    lines = ["", "### Where the gold peaks, between groups (paired by seed)", "",
             "The within-seed difference (group − other) of the fitted peak d* and of its height R(d*), over the seeds "
             "where both groups' gold turned down (beta > 0); a verdict only where the 95% interval excludes 0.", "",
             "| coef | form | group | other | n | group − other | verdict |", "|---|---|---|---|---|---|---|"]
    for r in found:
        interval = ("—" if r["ci95_low"] is None else f"[{plus3(r['ci95_low'])}, {plus3(r['ci95_high'])}]")
        lines.append(f"| {r['coef']} | {r['form']} | {r['group']} | {r['other']} | {r['n']} | {plus3(r['mean'])} "
                     f"{interval} | {r['verdict']} |")
    return lines


def markdown(found: list[dict], groups: dict[str, list[Run]]) -> list[str]:
    if not found:
        return []
    lines = ["", "## Over-optimisation fits (Gao et al. 2022)", "",
             "d = sqrt(KL to the start); gains over the start. best-of-n: R(d) = d(alpha − beta·d); RL: R(d) = "
             "d(alpha − beta·ln d); least squares per run, then mean [95% t-interval] over seeds. peak_d is where "
             "the fitted curve is highest and peak_gain its height there, reported only for runs whose beta > 0 "
             "(n = how many); a gold whose beta is <= 0 has not turned down within the KL reached.", "",
             "| group | metric | form | alpha | beta | peak_d | peak_gain |", "|---|---|---|---|---|---|---|"]
    by = {(r["group"], r["metric"], r["coef"]): r for r in found}
    for label in groups:
        for metric in METRICS:
            cells = []
            for coef in COEFS:
                r = by.get((label, metric, coef))
                cells.append("—" if r is None else f"{plus3(r['mean'])} [{plus3(r['ci95_low'])}, {plus3(r['ci95_high'])}]"
                             + f" (n={r['n']})")
            form = next((r["form"] for r in found if r["group"] == label and r["metric"] == metric), None)
            if form:
                lines.append(f"| {label} | {metric} | {form} | " + " | ".join(cells) + " |")
    return lines


def plot(groups: dict[str, list[Run]], found: list[dict], out: Path) -> Path | None:
    """One panel per group: gold (left axis) and proxy (right axis) gains against d, every run's points and the
    curve of the seed-mean coefficients."""
    panels = [(label, runs) for label, runs in groups.items() if any(len(gains(r, "gold_reward")) >= 2 for r in runs)]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))
    fig, axes = plt.subplots(-(-len(panels) // cols), cols, figsize=(5.2 * cols, 4.0 * -(-len(panels) // cols)),
                             squeeze=False)
    mean = {(r["group"], r["metric"], r["coef"]): r["mean"] for r in found}
    for ax, (label, runs) in zip(axes.flat, panels):
        twin = ax.twinx()
        for metric, axis, colour, marker in (("gold_reward", ax, "tab:blue", "o"), ("proxy_reward", twin, "tab:red", "x")):
            pts = [p for r in runs for p in gains(r, metric)]
            if not pts:
                if metric == "proxy_reward":
                    twin.set_axis_off()  # no proxy in these runs (best-of-n by the gold itself)
                continue
            axis.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, color=colour, marker=marker, alpha=0.6,
                         label=f"{metric.split('_')[0]} (runs)")
            for r in runs:  # each seed's own path, faint, so a run that peaks and falls reads as one
                own = sorted(gains(r, metric))
                axis.plot([p[0] for p in own], [p[1] for p in own], color=colour, alpha=0.25, linewidth=0.8,
                          linestyle="-" if metric == "gold_reward" else "--")
            a, b = mean.get((label, metric, "alpha")), mean.get((label, metric, "beta"))
            if a is not None and b is not None:
                d = np.linspace(0, max(p[0] for p in pts) * 1.05, 80)
                form = form_of(runs[0])
                axis.plot(d, curve(form, a, b, d), color=colour, linestyle="-" if metric == "gold_reward" else "--",
                          label=f"{metric.split('_')[0]} fit ({'bon' if form == 'bon' else 'RL'})")
            axis.tick_params(axis="y", labelcolor=colour)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("d = sqrt(KL to the start)")
        ax.set_ylabel("gold gain over the start", color="tab:blue")
        twin.set_ylabel("proxy (reward model) gain", color="tab:red")
        handles = [h for a_ in (ax, twin) for h in a_.get_legend_handles_labels()[0]]
        ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    seeds = max(len(runs) for _, runs in panels)
    fig.suptitle(f"Gold vs proxy as the proxy is optimised ({seeds} seed{'s' * (seeds != 1)} per panel at most)",
                 fontsize=10)
    fig.tight_layout()
    path = out / "overoptimisation.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
