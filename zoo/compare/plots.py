"""The PNG plots: reward vs KL frontiers, training curves, proxy vs gold, length along training. matplotlib is
imported only when plotting, so reading and tabulating runs works without it."""

from __future__ import annotations

from pathlib import Path

from zoo.compare.runs import Run, number

FIRST_SEGMENT = "checkpoints"  # a trainer's default output dir: the segment of entries that name none


def _points(rows: list[dict], x: str, y: str) -> list[tuple[float, float]]:
    return [(number(r.get(x)), number(r.get(y))) for r in rows if number(r.get(x)) is not None
            and number(r.get(y)) is not None]


def cumulative_steps(rows: list[dict]) -> list[dict]:
    """One stage's rows with `step` made cumulative over its segments.

    A stage that runs one trainer per round (online DPO: segments "round_0", "round_1", ...) restarts its step
    count at 0 each round, so drawn as logged the rounds pile up over the first few steps. Each segment's steps
    are offset by the previous segments' last steps, segments in order of first appearance in the file."""
    ends: dict[str, float] = {}  # segment -> its last step, in order of first appearance
    for row in rows:
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


def _curve_by_stage(run: Run) -> dict[str, list[dict]]:
    stages: dict[str, list] = {}
    for row in run.curve:
        stages.setdefault(str(row.get("stage")), []).append(row)
    return stages


def plot(groups: dict[str, list[Run]], out: Path, metrics=("loss",)) -> list[Path]:
    """Write the plots that have data; returns their paths. Skipped (with one printed line) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"[compare] plots skipped: matplotlib is not installed ({e})")
        return []
    colours = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(groups)}
    written = []

    def figure(name, panels, draw, xlabel):
        """One PNG of `panels` axes; draw(ax, panel) returns whether it plotted anything (else nothing is saved)."""
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
        drew = [draw(ax, panel) for ax, panel in zip(axes[0], panels)]
        if any(drew):
            for ax, panel in zip(axes[0], panels):
                ax.set_xlabel(xlabel)
                ax.set_ylabel(panel)
                ax.grid(alpha=0.3)
                handles, labels = ax.get_legend_handles_labels()
                unique = dict(zip(labels, handles))  # one entry per group, not per run
                if unique:
                    # Below the axes, and the saved image grows to fit: group labels can be long.
                    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.15))
            fig.savefig(out / name, dpi=110, bbox_inches="tight")
            written.append(out / name)
        plt.close(fig)

    def scatter(ax, x, y, before=False):
        """Curve points small, each run's final eval point large, the starting policy as a grey x."""
        drew = False
        for label, runs in groups.items():
            for run in runs:
                pts = _points(run.curve, x, y)
                if pts:
                    ax.scatter(*zip(*pts), s=8, alpha=0.5, color=colours[label])
                final = _points([run.metrics], f"eval/{x}", f"eval/{y}")
                if final:
                    ax.scatter(*zip(*final), s=60, edgecolors="black", color=colours[label], label=label)
                start = _points([run.metrics], f"before/{x}", f"before/{y}") if before else []
                if start:
                    ax.scatter(*zip(*start), s=60, marker="x", color="grey", label="before")
                drew = drew or bool(pts or final)
        return drew

    def lines(ax, rows_of, key):
        drew = False
        for label, runs in groups.items():
            for run in runs:
                for rows in rows_of(run).values():
                    pts = _points(cumulative_steps(rows), "step", key)
                    if pts:
                        ax.plot(*zip(*pts), color=colours[label], alpha=0.8, lw=1, label=label)
                        drew = True
        return drew

    figure("frontier.png", ["gold reward"], lambda ax, _: scatter(ax, "kl", "gold_reward", before=True),
           "KL to the reference")
    if any(number(r.metrics.get("eval/independent_reward")) is not None for runs in groups.values() for r in runs):
        figure("frontier_independent.png", ["independent reward"],
               lambda ax, _: scatter(ax, "kl", "independent_reward", before=True), "KL to the reference")
    figure("curves.png", list(metrics), lambda ax, key: lines(ax, lambda r: r.history, key), "step")
    figure("proxy_vs_gold.png", ["gold reward"], lambda ax, _: scatter(ax, "proxy_reward", "gold_reward"),
           "proxy reward")
    figure("length.png", ["length (tokens)"], lambda ax, _: lines(ax, _curve_by_stage, "length"), "step")
    return written
