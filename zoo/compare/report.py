"""The written outputs: compare.csv (every metric's seed statistics), compare.md (the headline table, the
diagnostics table, the paired win-rate matrix, the run dirs), samples.md (completions side by side), and the
same table and plots logged to W&B on request."""

from __future__ import annotations

import csv
import os
from fnmatch import fnmatch
from pathlib import Path

from zoo.compare.runs import Run, number, prompt_key
from zoo.compare.stats import changes, paired_win_rates, score_field

HEADLINE = ("eval/gold_reward", "eval/proxy_reward", "eval/independent_reward", "eval/kl", "eval/win_rate",
            "eval/fluency", "eval/length", "eval/eos_rate", "eval/distinct_2", "eval/accuracy", "run/seconds")
# Over-optimisation, mode collapse, sycophancy, capability, safety: in that order, as name patterns because a
# probe may add metrics (syco_*) without this table having to list each.
DIAGNOSTICS = ("reward_length_corr", "proxy_gold_spearman", "proxy_gold_gap", "overoptimised", "self_bleu",
               "token_entropy", "syco_*", "arithmetic_accuracy", "choice_accuracy", "harmless_rate", "helpful_rate",
               "refusal_f1")
CSV_FIELDS = ("group", "metric", "n", "mean", "std", "ci95_low", "ci95_high", "min", "max")
TRAINED_ON = "run/trained_on"


def _fmt(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 1e4 else f"{x:.4g}"


def _cell(row: dict | None, runs: int) -> str:
    if row is None:
        return "—"
    text = _fmt(row["mean"])
    if row["std"] is not None:
        text += f" ± {_fmt(row['std'])} [{_fmt(row['ci95_low'])}, {_fmt(row['ci95_high'])}]"
    return text + (f" (n={row['n']})" if row["n"] < runs else "")


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows({k: "" if r[k] is None else r[k] for k in CSV_FIELDS} for r in rows)


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


def _headline(groups: dict[str, list[Run]], by_key: dict) -> list[str]:
    columns = [m for m in HEADLINE if any((g, m) in by_key for g in groups)]
    trained = any(_records_trained_on(r) for runs in groups.values() for r in runs)
    lines = ["Cells: mean ± sample std [95% t-interval of the mean] over seeds; (n=k) where only k runs had a value. "
             "Intervals are clipped to the metric's range: [0, 1] for rates, accuracies, distinct-n, self-BLEU, "
             "refusal F1 and overoptimised; [-1, 1] for correlations.", ""]
    if trained:
        lines += ["trained on: the eval columns the group's runs optimised against (union over its runs); a score "
                  "in a trained-on column is the training signal, not held-out evidence.", ""]
    head = ["group", "runs"] + (["trained on"] if trained else []) + columns
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
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
             "value (eval/); change: eval/x − before/x within each run, then over its seeds; cells as above "
             "(a change's interval is clipped to ± the metric's range).", "",
             "| metric | group | after | change vs before |", "|---|---|---|---|"]
    for key in keys:
        for label, runs in groups.items():
            lines.append(f"| {key.partition('/')[2]} | {label} | {_cell(by_key.get((label, key)), len(runs))} | "
                         f"{_cell(delta.get((label, key)), len(runs))} |")
    return lines


def _win_rates(groups: dict[str, list[Run]]) -> list[str]:
    score = score_field(groups)
    rates = paired_win_rates(groups, score)
    if not rates:
        return []
    scored = [g for g in groups if any(g in pair for pair in rates)]  # groups with no scored prompt: no row
    lines = ["", f"## Paired win rate ({score})", "",
             f"Row vs column: the share of held-out prompts both answered where the row's {score} (mean over its "
             "seeds) is higher; ties count 1/2.", "",
             "| | " + " | ".join(scored) + " |", "|---" * (len(scored) + 1) + "|"]
    for a in scored:
        cells = ["—" if a == b else f"{rates[a, b]:.3f}" if (a, b) in rates else "" for b in scored]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return lines


def markdown(groups: dict[str, list[Run]], rows: list[dict]) -> str:
    """The headline table (mean ± std [95% CI] over seeds), the diagnostics that any group has (after and change
    from before), the paired win-rate matrix, and the run dirs."""
    by_key = {(r["group"], r["metric"]): r for r in rows}
    n_runs = sum(len(runs) for runs in groups.values())
    lines = [f"# Comparison of {n_runs} runs in {len(groups)} groups", ""]
    lines += _headline(groups, by_key) + _diagnostics(groups, by_key) + _win_rates(groups)
    lines += ["", "## Runs", ""]
    for label, runs in groups.items():
        lines.append(f"- {label}: " + ", ".join(f"`{r.dir}`" for r in runs))
    return "\n".join(lines) + "\n"


def _messages(value: list) -> str:
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in value if isinstance(m, dict))


def _completion_text(value) -> str:
    """A chat completion shows its assistant content (the reply), a plain one its text."""
    if isinstance(value, list):
        assistant = [str(m.get("content", "")) for m in value if isinstance(m, dict) and m.get("role") == "assistant"]
        return "\n".join(assistant) if assistant else _messages(value)
    return "" if value is None else str(value)


def _quote(text: str, indent: str = "") -> str:
    return "\n".join(f"{indent}> {line}" for line in (text.splitlines() or [""]))


def samples_markdown(groups: dict[str, list[Run]], count: int = 5) -> str:
    """The first `count` held-out prompts, each group's completion (from its first run) side by side."""
    first = next(iter(groups.values()))[0]
    prompts = [s.get("prompt") for s in first.samples if s.get("policy") == "after"][:count]
    lines = ["# Samples", "", "Each group's completion from its first run (by dir name), with its gold / proxy score."]
    for i, prompt in enumerate(prompts, 1):
        lines += ["", f"## Prompt {i}", "", _quote(_messages(prompt) if isinstance(prompt, list) else str(prompt)), ""]
        for label, runs in groups.items():
            rec = next((s for s in runs[0].samples if s.get("policy") == "after"
                        and prompt_key(s.get("prompt")) == prompt_key(prompt)), None)
            if rec is None:
                lines.append(f"- **{label}**: (this prompt is not in its samples)")
                continue
            lines += [f"- **{label}** (gold {rec.get('gold')}, proxy {rec.get('proxy')}):",
                      _quote(_completion_text(rec.get("completion")), "  ")]
    return "\n".join(lines) + "\n"


def log_wandb(rows: list[dict], pngs: list[Path], out: Path) -> None:
    """The CSV as a W&B table and the plots as images, in a `compare` job (offline unless WANDB_MODE says)."""
    import wandb

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "prefzoo"), job_type="compare",
                     mode=os.environ.get("WANDB_MODE", "offline"), dir=str(out))
    table = wandb.Table(columns=list(CSV_FIELDS), data=[[r[k] for k in CSV_FIELDS] for r in rows])
    run.log({"compare": table, **{p.stem: wandb.Image(str(p)) for p in pngs}})
    run.finish()
