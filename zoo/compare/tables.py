"""The verdict tables (each group vs its start, each pair of groups, the paired win-rate matrix), the cost table,
and verdicts.csv: markdown built from zoo.compare.verdicts' rows."""

from __future__ import annotations

import csv
from pathlib import Path

from zoo.compare.runs import Run

VERDICT_FIELDS = ("a", "b", "metric", "mean_a", "mean_b", "estimate", "low", "high", "verdict", "pairing", "level",
                  "seeds", "prompts")
COST = (("run/cost/generated_tokens", "generated tokens"), ("run/cost/scored_completions", "scored completions"),
        ("run/cost/gold_scored", "gold-scored completions"), ("run/cost/optimizer_steps", "optimizer steps"),
        ("run/cost/seconds", "training seconds"), ("run/seconds", "run seconds (incl. eval)"))
INTERVAL_NOTE = ("95% interval: hierarchical bootstrap over seeds, then prompts within each seed (2000 draws, fixed "
                 "RNG seed); the estimate ± t(0.975, seeds − 1) × the bootstrap SE × √(n/(n−1)), since a percentile "
                 "interval from 3 seeds covers far less than 95%. Paired by seed (`trainer.seed`) where both groups "
                 "have the same seeds (a seed fixes the shared start); otherwise unpaired, the two groups' variances "
                 "added, Welch's degrees of freedom. Metrics without per-prompt values (fluency, "
                 "self-BLEU, distinct-2) resample seeds only. `not separated`: the interval contains 0 (0.5 for a "
                 "win rate).")


def fmt(x) -> str:
    if x is None:
        return "—"
    return f"{x:.0f}" if abs(x) >= 1e4 else f"{x:.4g}"


def signed(x) -> str:
    return "—" if x is None else ("+" if x >= 0 else "") + fmt(x)


def ci(row: dict, sign: bool = True) -> str:
    show = signed if sign else fmt
    if row["low"] is None:
        return f"{show(row['estimate'])} (no interval: a group has 1 seed)"
    return f"{show(row['estimate'])} [{show(row['low'])}, {show(row['high'])}]"


def metric_name(metric: str) -> str:
    """`win_rate:eval/gold_reward` reads `win rate (gold)`."""
    if metric.startswith("win_rate:"):
        return f"win rate ({metric.partition(':')[2].partition('/')[2].removesuffix('_reward')})"
    return metric


def _level(row: dict) -> str:
    seeds = f"{row['seeds']} seed{'s' * (row['seeds'] != 1)}"
    return f"{seeds} × {row['prompts']} prompts" if row["prompts"] else seeds


def trained_on(groups: dict[str, list[Run]], label: str, metric: str) -> str:
    """Whether the group's runs trained on the signal a metric scores (run/trained_on): `yes`, `no`, `?` when
    not recorded, `—` for a metric that is no reward (KL, fluency, diversity)."""
    column = metric.partition(":")[2] if metric.startswith("win_rate:") else metric
    if not column.endswith("_reward"):
        return "—"
    recorded = [r.metrics["run/trained_on"] for r in groups[label] if isinstance(r.metrics.get("run/trained_on"), list)]
    if not recorded:
        return "?"
    users = sum(column.partition("/")[2] in columns for columns in recorded)
    return "yes" if users == len(recorded) else "no" if users == 0 else f"{users} of {len(recorded)} runs"


def start_lines(starts: list[dict], reference: str, groups: dict[str, list[Run]]) -> list[str]:
    if not starts:
        return []
    words = {"A > B": "after > before", "B > A": "before > after"}
    lines = ["", "## Verdicts: each group vs its start", "",
             f"after − before within each run, the start being {reference}; a win rate is the share of prompts "
             "where the trained policy's completion scores above the start's. trained on it: whether the group's "
             "runs optimised that signal (`run/trained_on`); a rise on a signal they did not train on is held-out "
             "evidence. " + INTERVAL_NOTE, "",
             "seeds up: in how many runs the change was above 0 (a win rate above ½), a description beside the "
             "verdict, not a test.", "",
             "| metric | group | trained on it | before | after | after − before [95% CI] | seeds up | resampled "
             "| verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in starts:
        lines.append(f"| {metric_name(r['metric'])} | {r['a']} | {trained_on(groups, r['a'], r['metric'])} | "
                     f"{fmt(r['mean_b'])} | {fmt(r['mean_a'])} | {ci(r, not r['metric'].startswith('win_rate'))} | "
                     f"{r.get('runs_up', '—')} | {_level(r)} | {words.get(r['verdict'], r['verdict'])} |")
    return lines


def pair_lines(pairs: list[dict], reference: str, explained: bool = False) -> list[str]:
    """`explained`: the vs-start table above already says how the intervals are made."""
    if not pairs:
        return []
    lines = ["", "## Verdicts: pairs of groups", "", "A − B on each metric's trained policy (a win rate: the share of "
             "prompts where A's completion scores above B's, same seed, ties ½). Paired by seed, each seed's shared "
             "start cancels, so A − B is also the difference of their changes vs before. " +
             ("Intervals and verdicts as in the table above." if explained else INTERVAL_NOTE)]
    separated = sum(r["verdict"] in ("A > B", "B > A") for r in pairs)
    lines += ["", f"{len(pairs)} comparisons, each at 95% with no correction for multiplicity: among truly equal "
              f"pairs about 1 in 20 can read separated by chance (fewer here, the intervals err wide); "
              f"{separated} of {len(pairs)} are separated."]
    for metric in dict.fromkeys(r["metric"] for r in pairs):
        win = metric.startswith("win_rate")
        head = "A's win rate [95% CI]" if win else "mean A | mean B | A − B [95% CI]"
        about = f" (each run's KL to {reference})" if metric == "eval/kl" else ""
        lines += ["", f"### {metric_name(metric)}{about}", "", f"| A | B | {head} | pairing | resampled | verdict |",
                  "|---" * (6 if win else 8) + "|"]
        for r in (p for p in pairs if p["metric"] == metric):
            cells = ci(r, False) if win else f"{fmt(r['mean_a'])} | {fmt(r['mean_b'])} | {ci(r)}"
            lines.append(f"| {r['a']} | {r['b']} | {cells} | {r['pairing']} | {_level(r)} | {r['verdict']} |")
    return lines


def win_matrix_lines(pairs: list[dict], groups: list[str]) -> list[str]:
    """Row vs column win rates; the (b, a) cell is 1 − (a, b) with the interval flipped; bold: separated."""
    wins = [r for r in pairs if r["metric"].startswith("win_rate")]
    if not wins:
        return []
    cell = {}
    for r in wins:
        flipped = {**r, "estimate": 1 - r["estimate"], "low": None if r["high"] is None else 1 - r["high"],
                   "high": None if r["low"] is None else 1 - r["low"]}
        for key, row in (((r["a"], r["b"]), r), ((r["b"], r["a"]), flipped)):
            text = ci(row, False)
            cell[key] = f"**{text}**" if r["verdict"] in ("A > B", "B > A") else text
    lines = ["", f"## Paired {metric_name(wins[0]['metric'])}", "",
             "Row vs column: the share of held-out prompts where the row's completion scores higher than the "
             "column's (same seed, same prompt; ties ½), mean over seeds [95% interval as above]; bold: the "
             "interval excludes ½.", "", "| | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
    for a in groups:
        lines.append(f"| {a} | " + " | ".join("—" if a == b else cell.get((a, b), "") for b in groups) + " |")
    return lines


def cost_lines(groups: dict[str, list[Run]], by_key: dict, reference: str, rule: str | None) -> list[str]:
    found = [(k, name) for k, name in COST if any((g, k) in by_key for g in groups)]
    lines = ["", "## Cost", ""] + ([rule, ""] if rule else [])
    if not any(k.startswith("run/cost/") for k, _ in found):
        return lines + ["Not recorded: these runs were written before runs recorded `run/cost/*`."]
    lines += [f"What the stages after {reference} cost (`run/cost/*`, the same units for every algorithm: tokens "
              "the policy generated while training, completions a training scorer scored and how many of them the "
              "gold signal scored, optimizer steps, wall seconds); run seconds include the evaluation. Cells: mean "
              "± sample std over seeds.", "", "| group | runs | " + " | ".join(n for _, n in found) + " |",
              "|---" * (len(found) + 2) + "|"]
    for label, runs in groups.items():
        cells = []
        for key, _ in found:
            row = by_key.get((label, key))
            cells.append("—" if row is None else fmt(row["mean"]) + ("" if row["std"] is None else
                                                                      f" ± {fmt(row['std'])}"))
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    return lines


def write_rows(rows: list[dict], fields, path: Path) -> None:
    """A CSV of `rows` with the columns `fields` (a missing or null value is an empty cell)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: "" if r.get(k) is None else r[k] for k in fields} for r in rows)


def write_verdicts_csv(rows: list[dict], path: Path) -> None:
    write_rows(rows, VERDICT_FIELDS, path)


def plus3(x) -> str:
    """A signed value to 3 decimals (frontier and fit tables), — for none."""
    return "—" if x is None else f"{x:+.3f}"
