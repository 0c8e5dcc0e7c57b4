"""curves.png: the training curves, one panel per (stage, metric), so no two losses with different meanings (SFT
cross-entropy, a DPO loss, a PPO surrogate) share an axis. Online DPO's rounds are laid end to end on one step axis,
and a stage every group shares (the SFT before the algorithms) is drawn once, one grey line per seed."""

from __future__ import annotations

import math
from pathlib import Path

from zoo.compare import context
from zoo.compare.plots import Plot
from zoo.compare.runs import Run, number
from zoo.compare.trajectories import cumulative_steps, final_stages, stage_order

SHARED = "shared by every group (one line per seed)"


def grid(n: int) -> tuple[int, int]:
    cols = min(4, n)
    return math.ceil(n / cols), cols


def history_stages(groups: dict[str, list[Run]]) -> list[str]:
    """Stages with a history, in run order (the first run that has each decides)."""
    order: list[str] = []
    for runs in groups.values():
        for run in runs:
            for stage in stage_order(run) + sorted(run.history):
                if stage in run.history and stage not in order:
                    order.append(stage)
    return order


def steps_of(rows: list[dict], metric: str) -> list[tuple[float, float]]:
    return [(number(r["step"]), number(r[metric])) for r in cumulative_steps(rows)
            if number(r.get("step")) is not None and number(r.get(metric)) is not None]


def same_per_seed(groups: dict[str, list[Run]], stage: str, metrics, rel: float = 1e-6) -> bool:
    """Whether every run of a seed logged the same `stage` history (each metric at each step, to `rel`): the stage
    was trained the same way in every group. A stage the groups configure differently (a reward model on 32, 128
    or 512 pairs) logs other numbers, so it is not drawn as shared even though every group has it."""
    first: dict = {}
    for runs in groups.values():
        for run in runs:
            rows = run.history.get(stage, [])
            values = [(m, step, v) for m in metrics for step, v in steps_of(rows, m)]
            seen = first.setdefault(run.config.get("trainer.seed"), values)
            if len(seen) != len(values) or any(a[:2] != b[:2] or not math.isclose(a[2], b[2], rel_tol=rel, abs_tol=rel)
                                               for a, b in zip(seen, values)):
                return False
    return True


def panels(groups: dict[str, list[Run]], metrics) -> tuple[list[tuple[str, str, dict[str, list[Run]]]], list[str]]:
    """([(stage, metric, {label: runs drawn})], ["stage: metric" left out]): a stage every group went through before
    its own (zoo.compare.trajectories.final_stages), with the same history in every group for a seed
    (`same_per_seed`), draws one run per seed under SHARED; a run with fewer than two points of the metric is not
    drawn, and a panel with none is left out."""
    out, left_out, finals = [], [], final_stages(groups)
    for stage in history_stages(groups):
        shared = (len(groups) > 1 and stage not in finals
                  and all(any(stage in r.history for r in runs) for runs in groups.values())
                  and same_per_seed(groups, stage, metrics))
        for metric in metrics:
            drawn: dict[str, list[Run]] = {}
            seen_seeds = set()
            for label, runs in groups.items():
                for run in runs:
                    if len(steps_of(run.history.get(stage, []), metric)) < 2:
                        continue
                    seed = run.config.get("trainer.seed")
                    if shared and seed in seen_seeds:
                        continue
                    seen_seeds.add(seed)
                    drawn.setdefault(SHARED if shared else label, []).append(run)
            if drawn:
                out.append((stage, metric, drawn))
            else:
                left_out.append(f"{stage}: {metric}")
    return out, left_out


def curves_figure(plt, groups: dict[str, list[Run]], colours: dict, out: Path, metrics) -> Plot:
    found, left_out = panels(groups, metrics)
    short = f" (fewer than two logged points in every run: {', '.join(left_out)})" if left_out else ""
    if not found:
        return Plot("curves.png", None, f"not written: no stage history has two points of {', '.join(metrics)}"
                    + short)
    rows, cols = grid(len(found))
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.3 * rows), squeeze=False)
    handles = {}
    for ax, (stage, metric, drawn) in zip(axes.flat, found):
        for label, runs in drawn.items():
            for run in runs:
                xs, ys = zip(*steps_of(run.history[stage], metric))
                (line,) = ax.plot(xs, ys, lw=1, alpha=0.8, color="grey" if label == SHARED else colours[label])
                handles.setdefault(label, line)
        rounds = {r.get("segment") for runs in drawn.values() for run in runs for r in run.history[stage]} - {None}
        ax.set_title(f"{stage}: {metric}", fontsize=10)
        ax.set_xlabel("optimizer step" + (" (rounds end to end)" if len(rounds) > 1 else ""), fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(found):]:
        ax.set_visible(False)
    fig.suptitle(context.title(groups, "Training curves, one panel per stage and metric"), fontsize=11)
    fig.tight_layout()
    fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=min(4, len(handles)), fontsize=8,
               bbox_to_anchor=(0.5, 0.0))
    path = out / "curves.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Plot("curves.png", path, f"Training curves: {len(found)} panels (stage: metric); not drawn" + short
                if short else f"Training curves: {len(found)} panels (stage: metric)")
