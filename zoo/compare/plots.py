"""The PNG plots: gold (and independent, and proxy-vs-gold) along each run's path from the shared start, training
curves one panel per (stage, metric), length along training, and for tasks with exact answers accuracy and
the lengths of right and wrong answers along training. matplotlib (Agg) is imported only when plotting,
so reading and tabulating runs works without it. A plot whose runs have fewer than two points each is not
written; the reason is returned instead, for compare.md to say."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoo.compare import context
from zoo.compare.runs import Run, number
from zoo.compare.trajectories import group_mean, shared_stages, trajectory, xy


@dataclass
class Plot:
    name: str
    path: Path | None  # None: not written
    note: str  # what it shows, or why it was not written


def _scorer(groups: dict[str, list[Run]], key: str) -> str:
    found = sorted({str(r.config[key]) for runs in groups.values() for r in runs if r.config.get(key)})
    return f"{key}={'/'.join(found)}" if found else key


def trained_note(groups: dict[str, list[Run]], column: str) -> str:
    """Whether the runs trained on an eval column (run/trained_on): a reader must know if a reward axis is the
    training signal or held-out evidence."""
    recorded = [r.metrics["run/trained_on"] for runs in groups.values() for r in runs
                if isinstance(r.metrics.get("run/trained_on"), list)]
    if not recorded:
        return ""
    users = sum(column in columns for columns in recorded)
    return ("; trained on by no run" if users == 0 else "; trained on by every run" if users == len(recorded)
            else f"; trained on by {users} of {len(recorded)} runs")


def axis_labels(groups: dict[str, list[Run]]) -> dict[str, str]:
    """What each plotted quantity is, named from the runs' configs (KL: against which policy)."""
    return {"kl": f"KL to {context.reference_text(groups)}\n(nats per completion, mean over held-out prompts)",
            "gold_reward": f"gold reward ({_scorer(groups, 'data.gold')}{trained_note(groups, 'gold_reward')})",
            "independent_reward": f"independent reward ({_scorer(groups, 'data.independent')}"
                                  f"{trained_note(groups, 'independent_reward')})",
            "proxy_reward": "proxy reward (the run's reward functions / reward model)",
            "length": "completion length (tokens, mean over held-out prompts)",
            "accuracy": "exact-answer accuracy (held-out prompts)",
            "length_correct": "length of the right answers (tokens, mean)",
            "length_incorrect": "length of the wrong answers (tokens, mean)",
            "step": f"optimizer steps after {context.reference_text(groups)}"}


def frontier_runs(groups: dict[str, list[Run]], x: str, y: str) -> tuple[dict[str, list[Run]], list[Run]]:
    """({label: the runs with at least two (x, y) points}, the runs left out for having fewer)."""
    kept = {label: [r for r in runs if len(xy(trajectory(r), x, y)) >= 2] for label, runs in groups.items()}
    short = [r for label, runs in groups.items() for r in runs if r not in kept[label]]
    return {label: runs for label, runs in kept.items() if runs}, short


def plot(groups: dict[str, list[Run]], out: Path, metrics=("loss",)) -> list[Plot]:
    """Write every plot that has data; returns each one's Plot (skipped ones with their reason)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return [Plot("*.png", None, f"not written: matplotlib is not installed ({e})")]
    from zoo.compare.curves import curves_figure

    colours = {label: plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")(i) for i, label in enumerate(groups)}
    labels = axis_labels(groups)
    proxy = any(number(r.metrics.get("eval/proxy_reward")) is not None for runs in groups.values() for r in runs)
    runs = [r for rs in groups.values() for r in rs]
    # A run whose evaluated policy is its start (a reward-model-only pipeline: eval/kl exactly 0, no curve) has no
    # path to draw: its "after" is its "before".
    still = all(number(r.metrics.get("eval/kl")) == 0.0 and not r.curve for r in runs)
    if still:
        why = "not written: every run's evaluated policy is its start (eval/kl = 0, no curve points): no path"
        made = [Plot(name, None, why) for name in ("frontier.png", "frontier_independent.png", "proxy_vs_gold.png",
                                                   "length.png")] + [curves_figure(plt, groups, colours, out, metrics)]
    else:
        made = [
            _trajectory_figure(plt, groups, colours, out, "frontier.png", "kl", "gold_reward", labels,
                               "Gold reward vs KL"),
            _trajectory_figure(plt, groups, colours, out, "frontier_independent.png", "kl", "independent_reward",
                               labels, "Independent (held-out) reward vs KL"),
            _trajectory_figure(plt, groups, colours, out, "proxy_vs_gold.png", "proxy_reward", "gold_reward", labels,
                               "Gold vs proxy reward") if proxy else
            Plot("proxy_vs_gold.png", None, "not written: no run has a proxy reward (eval/proxy_reward)"),
            curves_figure(plt, groups, colours, out, metrics),
            _length_figure(plt, groups, colours, out, labels),
        ]
        if any(number(r.metrics.get("eval/accuracy")) is not None for r in runs):
            made.append(_accuracy_figure(plt, groups, colours, out, labels))
    for p in made:
        if p.path is None:
            print(f"[compare] {p.name} {p.note}")
    return made


def _trains_nothing(run: Run) -> bool:
    """A run with no optimizer step after its baseline (best-of-n numbers its points by n, a fixed response has
    one point): it has no place on an optimizer-step axis."""
    return number(run.metrics.get("run/cost/optimizer_steps")) == 0


def _stepped(groups: dict[str, list[Run]]) -> dict[str, list[Run]]:
    """The groups' runs that took optimizer steps after their baseline, groups left with none dropped: the runs an
    optimizer-step axis can place."""
    kept = {label: [r for r in runs if not _trains_nothing(r)] for label, runs in groups.items()}
    return {label: runs for label, runs in kept.items() if runs}


def _length_figure(plt, groups, colours, out: Path, labels: dict) -> Plot:
    stepped = _stepped(groups)
    if not stepped:
        return Plot("length.png", None, "not written: no run took an optimizer step after its baseline")
    made = _trajectory_figure(plt, stepped, colours, out, "length.png", "step", "length", labels,
                              "Completion length along training")
    untrained = [label for label in groups if label not in stepped]
    if untrained and made.path is not None:
        made = Plot(made.name, made.path, f"{made.note}; left out (no optimizer steps): {', '.join(untrained)}")
    return made


def _error(points: list[dict], axis: str) -> list[list[float]]:
    """errorbar's [[below], [above]]: the 95% interval's distance from the mean, 0 where there is none."""
    return [[0.0 if p[f"{axis}_low"] is None else p[axis] - p[f"{axis}_low"] for p in points],
            [0.0 if p[f"{axis}_high"] is None else p[f"{axis}_high"] - p[axis] for p in points]]


def _dodge(labels: list[str], x: str) -> dict[str, float]:
    """On a step axis every group's means sit at the same steps; shifting each group a little keeps one group's
    error bars from hiding another's (a KL axis needs none: the groups' KLs differ)."""
    width = 0.35 if x == "step" else 0.0
    return {label: width * (i - (len(labels) - 1) / 2) for i, label in enumerate(labels)}


def _shifted(point: dict, dx: float) -> dict:
    return {**point, **{k: point[k] + dx for k in ("x", "x_low", "x_high") if point[k] is not None}}


def _frame_the_points(ax, points: list[tuple[float, float, float]]) -> None:
    """Axes around the runs' own points: with 2-3 seeds a t-interval can be many times their spread and would
    squeeze every path into a corner, so a bar reaching past the frame is cut at it (the faint points show the
    spread)."""
    for axis, values in ((ax.set_xlim, [p[1] for p in points]), (ax.set_ylim, [p[2] for p in points])):
        low, high = min(values), max(values)
        pad = 0.15 * (high - low) or 0.1 * (abs(high) or 1.0)
        axis(low - pad, high + pad)


def _draw_paths(ax, groups, colours, x: str, y: str, labels: dict) -> None:
    """Onto one axes: each run's path from the start (faint), its group's seed mean ± 95% CI on both axes (bold),
    the shared start as a black star; the final harness is each mean path's last, outlined point."""
    shared = shared_stages(groups) | {"start"}
    # One run per seed: runs of a seed share their start (and a shared stage), so each seed counts once.
    per_seed = {str(r.config.get("trainer.seed")): r for runs in reversed(list(groups.values())) for r in runs}
    pooled = [p for p in group_mean(list(per_seed.values()), x, y) if p["stage"] in shared]
    dodge = _dodge(list(groups), x)
    for label, runs in groups.items():
        colour = colours[label]
        for run in runs:
            _, xs, ys = zip(*xy(trajectory(run), x, y))
            ax.plot(xs, ys, color=colour, alpha=0.25, lw=0.8, marker="o", ms=2.5)
        mean = [_shifted(p, dodge[label]) for p in group_mean(runs, x, y)]
        own = [p for p in mean if p["stage"] not in shared]
        if not own:
            continue
        # The mean path leaves the shared part where this group's own seeds left it (a group missing a seed
        # starts from its seeds' mean start, not the pooled one).
        joined = [p for p in mean if p["stage"] in shared][-1:] + own
        ax.plot([p["x"] for p in joined], [p["y"] for p in joined], color=colour, lw=1.8)
        ax.errorbar([p["x"] for p in own], [p["y"] for p in own], xerr=_error(own, "x"), yerr=_error(own, "y"),
                    color=colour, lw=0, elinewidth=1.5, marker="o", ms=4, capsize=2,
                    label=f"{label} ({len(runs)} seed{'s' * (len(runs) != 1)})")
        ax.scatter([own[-1]["x"]], [own[-1]["y"]], s=80, color=colour, edgecolors="black", zorder=6)  # over the star
    if len(pooled) > 1:  # a stage every group went through (SFT after a base-model baseline): drawn once
        ax.plot([p["x"] for p in pooled], [p["y"] for p in pooled], color="black", lw=1.5, ls="--")
        later = pooled[1:]
        names = "/".join(sorted(shared - {"start"}))
        ax.errorbar([p["x"] for p in later], [p["y"] for p in later], xerr=_error(later, "x"),
                    yerr=_error(later, "y"), color="black", lw=0, elinewidth=1.2, marker="s", ms=5, capsize=2,
                    label=f"{names}, shared by every group (all seeds)")
    if pooled and pooled[0]["stage"] == "start":
        start = pooled[0]
        ax.errorbar([start["x"]], [start["y"]], yerr=_error([start], "y"), color="black", capsize=3, lw=0,
                    elinewidth=1.2)
        ax.scatter([start["x"]], [start["y"]], s=220, marker="*", color="black", zorder=5,
                   label=f"start: {context.reference_text(groups)}")
    _frame_the_points(ax, [pt for runs in groups.values() for r in runs for pt in xy(trajectory(r), x, y)])
    ax.set_xlabel(labels.get(x, x))
    ax.set_ylabel(labels.get(y, y))
    ax.grid(alpha=0.3)


FRAME_NOTE = "the frame fits the runs' points, so an interval reaching past it is cut at the edge"


def _trajectory_figure(plt, groups, colours, out: Path, name: str, x: str, y: str, labels: dict,
                       what: str) -> Plot:
    """One panel of _draw_paths: y against x for every run with two points of both."""
    kept, short = frontier_runs(groups, x, y)
    if not kept:
        return Plot(name, None, f"not written: no run has two points of {y} and {x} (start, curve points, final)")
    fig, ax = plt.subplots(figsize=(9, 6.5))
    _draw_paths(ax, kept, colours, x, y, labels)
    ax.set_title(context.title(groups, f"{what}: runs faint, seed mean ± 95% CI bold, final outlined"), fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=min(3, len(kept) + 1))
    path = out / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    note = (f"{what}: {sum(map(len, kept.values()))} runs from the start through their curve points to the final "
            f"harness; {FRAME_NOTE}")
    if short:
        note += f"; left out (fewer than two points): {', '.join(str(r.dir) for r in short)}"
    return Plot(name, path, note)


ACCURACY_PANELS = ("accuracy", "length_correct", "length_incorrect")


def _accuracy_figure(plt, groups, colours, out: Path, labels: dict) -> Plot:
    """A task with exact answers (arithmetic): held-out accuracy, and the lengths of the right and of the wrong
    answers, along training, one panel each: whether an algorithm makes wrong answers longer (Liu et al. 2025's
    reading of GRPO's length normalisation) shows in the third panel against the second."""
    kept, _ = frontier_runs(_stepped(groups), "step", "accuracy")
    if not kept:
        return Plot("accuracy.png", None, "not written: no run has two points of accuracy along training")
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    for ax, y in zip(axes, ACCURACY_PANELS):
        panel, _ = frontier_runs(kept, "step", y)
        if panel:
            _draw_paths(ax, panel, colours, "step", y, labels)
            ax.set_title(labels[y], fontsize=10)
        else:
            ax.set_visible(False)
    for ax in (axes[0], axes[2]):  # one step-axis label, under the middle panel: three would run into each other
        ax.set_xlabel("")
    limits = [axes[i].get_ylim() for i in (1, 2) if axes[i].get_visible()]
    for i in (1, 2) if limits else ():  # right and wrong answers on one length scale, compared across panels
        axes[i].set_ylim(min(low for low, _ in limits), max(high for _, high in limits))
    fig.suptitle(context.title(groups, "Accuracy and answer length along training: runs faint, seed mean ± 95% CI "
                                       "bold, final outlined"), fontsize=11, y=1.03)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="lower center", ncol=min(4, len(names)), bbox_to_anchor=(0.5, -0.08))
    path = out / "accuracy.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Plot("accuracy.png", path, f"held-out accuracy and the mean length of right and of wrong answers along "
                                      f"training, {sum(map(len, kept.values()))} runs; {FRAME_NOTE} (the two length "
                                      f"panels share one scale)")
