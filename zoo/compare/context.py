"""What a report's numbers are measured against and under which budget: the runs' evaluation baseline (the
reference of `before/*`, KL and win rate), the task, the step budget, the seeds, and the sweep's budget rule. Every
table and plot title takes its wording from here, read from the runs' configs."""

from __future__ import annotations

import re
from pathlib import Path

from zoo.compare.runs import Run

SWEEPS_DIR = Path(__file__).resolve().parents[2] / "conf" / "sweeps"  # the sweep files a run's `sweeps` choice names


def baseline(run: Run) -> str:
    """eval.baseline: `start` (the run's starting weights) or the stage whose policy is the reference. Runs
    written before the key existed were evaluated against their start."""
    return str(run.config.get("eval.baseline", "start"))


def _values(runs: list[Run], key: str) -> list[str]:
    return sorted({str(r.config[key]) for r in runs if r.config.get(key) is not None})


def describe(reference: str, runs: list[Run]) -> str:
    """`the sft policy (eval.baseline=sft)`, or `the starting weights, smollm2-135m (eval.baseline=start)`."""
    if reference == "start":
        models = "/".join(_values(runs, "model.name")) or "the base model"
        return f"the starting weights, {models} (eval.baseline=start)"
    return f"the {reference} policy (eval.baseline={reference})"


def all_runs(groups: dict[str, list[Run]]) -> list[Run]:
    return [r for runs in groups.values() for r in runs]


def references(groups: dict[str, list[Run]]) -> dict[str, list[str]]:
    """{eval.baseline: the groups whose runs use it}, in order of first use."""
    out: dict[str, list[str]] = {}
    for label, runs in groups.items():
        for ref in dict.fromkeys(baseline(r) for r in runs):
            out.setdefault(ref, []).append(label)
    return out


def reference_text(groups: dict[str, list[Run]]) -> str:
    """What before/*, KL and win rate are measured against, for a caption or an axis label."""
    refs = references(groups)
    runs = all_runs(groups)
    if len(refs) == 1:
        return describe(next(iter(refs)), runs)
    return "each run's own eval.baseline (" + "; ".join(describe(r, runs) for r in refs) + ")"


def reference_warning(groups: dict[str, list[Run]]) -> str | None:
    """A warning when the runs of one report were evaluated against different policies: their before/*, KL and
    win rates do not share a reference, so differences between those groups mix the training with the start."""
    refs = references(groups)
    if len(refs) < 2:
        return None
    which = "; ".join(f"eval.baseline={r}: {', '.join(labels)}" for r, labels in refs.items())
    return (f"WARNING: the runs in this report have different references ({which}); before/*, KL and win rates "
            "are measured against different policies and do not compare across them.")


def seeds_text(groups: dict[str, list[Run]]) -> str:
    counts = sorted({len(runs) for runs in groups.values()})
    many = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return f"{many} seed{'s' if counts[-1] != 1 else ''}" + (" per group" if len(groups) > 1 else "")


def _positive_steps(runs: list[Run], key: str) -> list[str]:
    return [s for s in _values(runs, key) if s.lstrip("-").isdigit() and int(s) > 0]


def budget_text(groups: dict[str, list[Run]]) -> str:
    """The step budget the runs ran under, and after which stage: the final stage's own `algo.args.max_steps` where
    the runs set one (a baseline's arms usually do), else trainer.max_steps per stage, else the epochs."""
    runs = all_runs(groups)
    after = [r for r in references(groups) if r != "start"]
    since = f" after {'/'.join(after)}" if after else ""
    own = _positive_steps(runs, "algo.args.max_steps")
    if own:
        return f"algo.args.max_steps={'/'.join(own)} in the final stage{since}"
    steps = _positive_steps(runs, "trainer.max_steps")
    budget = (f"trainer.max_steps={'/'.join(steps)}" if steps else
              f"trainer.num_train_epochs={'/'.join(_values(runs, 'trainer.num_train_epochs')) or '?'}")
    return budget + " per stage" + since


def prompts_text(groups: dict[str, list[Run]]) -> str:
    counts = _values(all_runs(groups), "eval.num_prompts")
    return f"{'/'.join(counts)} held-out prompts" if counts else "held-out prompts"


def title(groups: dict[str, list[Run]], what: str) -> str:
    """A figure title: what it shows, the task, the budget, the number of seeds and of held-out prompts."""
    task = "/".join(_values(all_runs(groups), "data.name")) or "task?"
    return f"{what}\n{task}: {budget_text(groups)}, {seeds_text(groups)}, {prompts_text(groups)}"


def budget_rule(groups: dict[str, list[Run]], sweeps_dir: Path = SWEEPS_DIR) -> str | None:
    """The sweep file's stated budget rule (a `# Budget rule: ...` comment, its first sentence), when the runs
    record the sweep they came from (the `sweeps` group choice) and that file is here; else None."""
    names = {r.choices.get("sweeps") for r in all_runs(groups)} - {None}
    for name in sorted(names):
        path = sweeps_dir / f"{name}.yaml"
        if not path.is_file():
            continue
        comments = " ".join(line.strip().lstrip("#").strip() for line in path.read_text().splitlines()
                            if line.strip().startswith("#"))
        found = re.search(r"Budget rule:\s*(.+?\.)(\s|$)", comments)
        if found:
            return f"Budget rule (sweeps/{name}.yaml, as the file reads now): {found.group(1)}"
    return None
