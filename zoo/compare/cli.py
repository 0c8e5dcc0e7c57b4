"""`python -m zoo.compare`: parse the arguments, read and group the runs, write every output."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from zoo.compare import context, frontier, html, scaling, tables, verdicts, versus
from zoo.compare.groups import SEED_KEYS, config_drift, group_runs
from zoo.compare.plots import plot
from zoo.compare.report import DRIFT, log_wandb, markdown, write_csv
from zoo.compare.runs import CompareError, load_runs
from zoo.compare.samples import samples_markdown
from zoo.compare.stats import score_field, summarise


def _split(text: str | None) -> list[str]:
    return [k.strip() for k in (text or "").split(",") if k.strip()]


def main(argv=None) -> list[Path]:
    """Parse args, write the outputs, return the paths written. Unreadable input exits with the reason."""
    about = importlib.import_module(__package__).__doc__.split("\n\n")[1]  # the package docstring's summary
    parser = argparse.ArgumentParser(prog="python -m zoo.compare", description=about)
    parser.add_argument("paths", nargs="+", help="run dirs, sweep roots (searched recursively) or glob patterns")
    parser.add_argument("--by", help="comma-separated config keys or group choices to group by (default: the "
                                     "ones that differ)")
    parser.add_argument("--out", default="compare", help="output dir (default: ./compare)")
    parser.add_argument("--metrics", default="loss", help="history.jsonl keys for curves.png (default: loss)")
    parser.add_argument("--samples", type=int, default=5, help="held-out prompts in samples.md (default: 5)")
    parser.add_argument("--seed-keys", default=",".join(SEED_KEYS), help="keys repeats vary; they never group")
    parser.add_argument("--wandb", action="store_true", help="also log the table and plots to W&B")
    parser.add_argument("--versus", help="a run-level metric (e.g. rlaif/judge/accuracy) to plot the final gold and "
                                         "independent reward against, one point per group (versus_<metric>.png)")
    parser.add_argument("--versus-skip", help="comma-separated substrings: groups whose label holds one are drawn "
                                              "but left out of the --versus fit (e.g. an arm with another budget)")
    parser.add_argument("--verdicts", help="comma-separated run-level metrics (metrics.json names, e.g. "
                                           "eval/proxy_gold_spearman) to give verdicts on besides the default ones")
    parser.add_argument("--overoptimisation", action="store_true",
                        help="fit Gao et al.'s gold/proxy forms against sqrt(KL) (overoptimisation.png/.csv)")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.paths)
        groups = group_runs(runs, by=_split(args.by), seed_keys=_split(args.seed_keys))
    except CompareError as e:
        sys.exit(f"zoo.compare: {e}")
    warning = context.reference_warning(groups)
    if warning:
        print(f"[compare] {warning}", file=sys.stderr)
    drift = config_drift(groups, _split(args.seed_keys))
    if drift:
        print(f"[compare] note: {DRIFT} {'; '.join(drift)}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarise(groups)
    write_csv(rows, out / "compare.csv")
    found = verdicts.all_verdicts(groups, score_field(groups), extra=_split(args.verdicts))
    tables.write_verdicts_csv(found[1] + found[0], out / "verdicts.csv")
    plots = plot(groups, out, _split(args.metrics) or ["loss"])
    pngs = [p.path for p in plots if p.path is not None]
    report = markdown(groups, rows, found, plots)
    front = [r for y in ("gold_reward", "independent_reward") for r in frontier.rows(groups, "kl", y)]
    if front:  # runs that moved away from their start: reward compared at equal KL
        tables.write_rows(front, frontier.FIELDS, out / "frontier.csv")
        report += "\n".join(frontier.markdown(front, "gold_reward") + frontier.markdown(front, "independent_reward"))
        report += "\n"
    if args.versus:
        fits = {y: versus.fit(groups, args.versus, y, tuple(_split(args.versus_skip))) for y in versus.Y}
        fits = {y: f for y, f in fits.items() if f is not None}
        tables.write_rows(list(fits.values()), versus.FIT_FIELDS, out / "versus.csv")
        drawn = versus.plot(groups, args.versus, out, fits)
        pngs += [drawn] if drawn else []
        report += (f"\n## Against {args.versus}\n\n" + (f"![versus]({drawn.name})\n" if drawn else
                   "Not drawn: fewer than two groups have both numbers.\n"))
        report += "\n".join(versus.fit_markdown(list(fits.values())))
    if args.overoptimisation:
        fits = scaling.rows(groups)
        tables.write_rows(fits, scaling.FIELDS, out / "overoptimisation.csv")
        drawn = scaling.plot(groups, fits, out)
        pngs += [drawn] if drawn else []
        peaks = scaling.between(groups)
        tables.write_rows(peaks, scaling.PAIR_FIELDS, out / "overoptimisation_peaks.csv")
        report += "\n".join(scaling.markdown(fits, groups) + scaling.between_markdown(peaks)) + "\n"
    (out / "compare.md").write_text(report)
    (out / "compare.html").write_text(html.render(report, out, title=f"zoo.compare: {out.name}"))
    (out / "samples.md").write_text(samples_markdown(groups, args.samples))
    if args.wandb:
        log_wandb(rows, pngs, out)
    print(report)
    written = [out / n for n in ("compare.csv", "verdicts.csv", "compare.md", "compare.html", "samples.md")] + pngs
    written += [out / "frontier.csv"] if front else []
    written += [out / "versus.csv"] if args.versus else []
    written += [out / "overoptimisation.csv", out / "overoptimisation_peaks.csv"] if args.overoptimisation else []
    print(f"[compare] {len(runs)} runs, {len(groups)} groups -> " + ", ".join(str(p) for p in written))
    return written
