"""compare.md and compare.csv: what the numbers are measured against (the runs' evaluation baseline, with a
warning when runs differ), the headline table with the baseline policy as its first row, the verdicts, the
diagnostics, the cost, the paired win rates, the plots and the run dirs; and the same table and plots on W&B."""

from __future__ import annotations

import os
from fnmatch import fnmatch
from pathlib import Path

from zoo.compare import context, tables
from zoo.compare.groups import config_drift
from zoo.compare.runs import Run, number
from zoo.compare.stats import baseline_rows, changes

HEADLINE = ("eval/gold_reward", "eval/proxy_reward", "eval/independent_reward", "eval/kl", "eval/win_rate",
            "eval/fluency", "eval/length", "eval/eos_rate", "eval/distinct_2", "eval/accuracy", "run/seconds")
# Over-optimisation, mode collapse, sycophancy, capability, safety: in that order, as name patterns because a
# probe may add metrics (syco_*) without this table having to list each.
DIAGNOSTICS = ("reward_length_corr", "proxy_gold_spearman", "proxy_gold_gap", "overoptimised", "self_bleu",
               "token_entropy", "syco_*", "arithmetic_accuracy", "choice_accuracy", "harmless_rate", "helpful_rate",
               "refusal_f1", "rule_grader_agreement")
CSV_FIELDS = ("group", "metric", "n", "mean", "std", "ci95_low", "ci95_high", "min", "max")
TRAINED_ON = "run/trained_on"
DRIFT = ("runs of one group were composed from different configs (keys set in some runs only, by no override: "
         "conf/ changed between them?); not grouped by:")


def _cell(row: dict | None, runs: int) -> str:
    if row is None:
        return "—"
    text = tables.fmt(row["mean"])
    if row["std"] is not None:
        text += f" ± {tables.fmt(row['std'])} [{tables.fmt(row['ci95_low'])}, {tables.fmt(row['ci95_high'])}]"
    return text + (f" (n={row['n']})" if row["n"] < runs else "")


def write_csv(rows: list[dict], path: Path) -> None:
    tables.write_rows(rows, CSV_FIELDS, path)


def _records_trained_on(run: Run) -> bool:
    return isinstance(run.metrics.get(TRAINED_ON), list)


def _trained_on(runs: list[Run]) -> str:
    """The union of the eval columns the group's runs trained on. Runs written before the zoo recorded it have
    no entry, which is unknown rather than none, so the cell says so."""
    recorded = [r.metrics[TRAINED_ON] for r in runs if _records_trained_on(r)]
    if not recorded:
        return "not recorded"
    text = ", ".join(dict.fromkeys(str(c) for columns in recorded for c in columns)) or "—"
    missing = len(runs) - len(recorded)
    return text + (f" ({missing} of {len(runs)} not recorded)" if missing else "")


def _diagnostic_keys(groups: dict[str, list[Run]]) -> list[str]:
    present = sorted({k.partition("/")[2] for runs in groups.values() for r in runs for k, v in r.metrics.items()
                      if k.startswith("eval/") and number(v) is not None})
    return [f"eval/{name}" for pattern in DIAGNOSTICS for name in present if fnmatch(name, pattern)]


def _column(metric: str, short: str) -> str:
    return {"eval/kl": f"eval/kl (to {short})", "eval/win_rate": f"eval/win_rate (vs {short})"}.get(metric, metric)


def _headline(groups: dict[str, list[Run]], by_key: dict) -> list[str]:
    columns = [m for m in HEADLINE if any((g, m) in by_key for g in groups)]
    trained = any(_records_trained_on(r) for runs in groups.values() for r in runs)
    refs = context.references(groups)
    short = next(iter(refs)) if len(refs) == 1 else "each run's baseline"
    lines = ["## Headline", "",
             "Cells: mean ± sample std [95% t-interval of the mean] over seeds; (n=k) where only k runs had a value. "
             "Intervals are clipped to the metric's range: [0, 1] for rates, accuracies, distinct-n, self-BLEU, "
             "refusal F1 and overoptimised; [-1, 1] for correlations. The first row is the baseline policy itself "
             "(`before/*`, one value per seed: runs of a seed share it).", ""]
    if trained:
        lines += ["trained on: the eval columns the group's runs optimised against (union over its runs); a score "
                  "in a trained-on column is the training signal, not held-out evidence.", ""]
    head = ["group", "runs"] + (["trained on"] if trained else []) + [_column(m, short) for m in columns]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    all_runs = context.all_runs(groups)
    for ref, found in baseline_rows(groups, columns).items():
        seeds = max(row["n"] for row in found.values())
        cells = [f"before: {context.describe(ref, all_runs)}", f"{seeds} seed{'s' * (seeds != 1)}"]
        cells += (["—"] if trained else []) + [_cell(found.get(m), seeds) for m in columns]
        lines.append("| " + " | ".join(cells) + " |")
    for label, runs in groups.items():
        cells = [label, str(len(runs))] + ([_trained_on(runs)] if trained else [])
        cells += [_cell(by_key.get((label, m)), len(runs)) for m in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _diagnostics(groups: dict[str, list[Run]], by_key: dict) -> list[str]:
    keys = _diagnostic_keys(groups)
    if not keys:
        return []
    delta = {(r["group"], r["metric"]): r for r in changes(groups, keys)}
    lines = ["", "## Diagnostics", "",
             "Over-optimisation, mode collapse, sycophancy, capability and safety. after: the trained policy's "
             f"value (eval/); change: eval/x − before/x within each run, before being {context.reference_text(groups)}"
             ", then over its seeds; cells as above (a change's interval is clipped to ± the metric's range).", "",
             "| metric | group | after | change vs before |", "|---|---|---|---|"]
    starts = baseline_rows(groups, keys)
    for key in keys:
        for ref, found in starts.items():
            if key in found:
                lines.append(f"| {key.partition('/')[2]} | before: {context.describe(ref, context.all_runs(groups))} "
                             f"| {_cell(found[key], found[key]['n'])} | — |")
        for label, runs in groups.items():
            lines.append(f"| {key.partition('/')[2]} | {label} | {_cell(by_key.get((label, key)), len(runs))} | "
                         f"{_cell(delta.get((label, key)), len(runs))} |")
    return lines


def _about(groups: dict[str, list[Run]]) -> list[str]:
    """Task, budget, seeds and the reference point, read from the runs' configs; the warning when they differ."""
    reference = context.reference_text(groups)
    task = "/".join(sorted({str(r.config.get("data.name")) for r in context.all_runs(groups)}))
    lines = [f"Task: {task}; budget: {context.budget_text(groups)}; {context.seeds_text(groups)}; "
             f"{context.prompts_text(groups)}.", "",
             f"Reference point: `before/*`, KL (eval/kl) and the win rate (eval/win_rate) are measured against "
             f"{reference}.", ""]
    warning = context.reference_warning(groups)
    drift = config_drift(groups)
    if drift:
        lines += [f"Note: {DRIFT} {'; '.join(drift)}.", ""]
    return lines + ([f"**{warning}**", ""] if warning else [])


def _plots(plots) -> list[str]:
    if not plots:
        return []
    lines = ["", "## Plots", ""]
    for p in plots:
        lines += [f"- `{p.name}`: {p.note}" if p.path is None else f"![{p.name}]({p.path.name})\n\n{p.note}", ""]
    return lines


def markdown(groups: dict[str, list[Run]], rows: list[dict], found: tuple[list, list] = ([], []),
             plots=None) -> str:
    """The report: what it is measured against, the headline table (baseline row first), each group vs its start,
    each pair of groups, the diagnostics, the cost, the paired win rates, the plots, and the run dirs.
    `found`: zoo.compare.verdicts.all_verdicts' (pairs, starts)."""
    by_key = {(r["group"], r["metric"]): r for r in rows}
    pairs, starts = found
    n_runs = sum(len(runs) for runs in groups.values())
    reference = context.reference_text(groups)
    runs, arms = f"{n_runs} run{'s' * (n_runs != 1)}", f"{len(groups)} group{'s' * (len(groups) != 1)}"
    lines = [f"# Comparison of {runs} in {arms}", ""] + _about(groups) + _headline(groups, by_key)
    lines += tables.start_lines(starts, reference, groups) + tables.pair_lines(pairs, reference, bool(starts))
    lines += _diagnostics(groups, by_key) + tables.cost_lines(groups, by_key, reference, context.budget_rule(groups))
    lines += tables.win_matrix_lines(pairs, list(groups)) + _plots(plots)
    lines += ["", "## Runs", ""]
    for label, runs in groups.items():
        lines.append(f"- {label}: " + ", ".join(f"`{r.dir}`" for r in runs))
    return "\n".join(lines) + "\n"


def log_wandb(rows: list[dict], pngs: list[Path], out: Path) -> None:
    """The CSV as a W&B table and the plots as images, in a `compare` job (offline unless WANDB_MODE says)."""
    import wandb

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "prefzoo"), job_type="compare",
                     mode=os.environ.get("WANDB_MODE", "offline"), dir=str(out))
    table = wandb.Table(columns=list(CSV_FIELDS), data=[[r[k] for k in CSV_FIELDS] for r in rows])
    run.log({"compare": table, **{p.stem: wandb.Image(str(p)) for p in pngs}})
    run.finish()
