"""Compare finished runs: `python -m zoo.compare outputs/sweep/ [--by algo] [--out compare/]`.

One run is one seed, and one seed is an anecdote: this package groups run dirs by the config-group choices and
keys that differ between them (never by the seed keys, which are what repeats vary), names the reference every
number is measured against (the runs' eval.baseline), and reports each group's mean, sample std and 95% t-interval
over its seeds, verdicts (`A > B`, `B > A`, `not separated`) from a hierarchical bootstrap over seeds and prompts
for each pair of groups and for each group against its start, the diagnostics, each run's cost, plots, one
self-contained html page, and the completions side by side.

It only READS run dirs (config.yaml, metrics.json, samples.jsonl, stages/*/history.jsonl, curve.jsonl,
.hydra/hydra.yaml, the sweep's sweep.json), so it imports nothing from the training code: comparing a sweep never
loads torch.

  runs.py          reading run dirs (Run, CompareError, load_runs), group choices
  groups.py        grouping runs by the choices and keys that differ, labels naming the choice
  context.py       the reference point, task, budget, seeds and budget rule every table and title names
  stats.py         seed statistics, changes from the baseline, the baseline row
  bootstrap.py     the hierarchical bootstrap interval behind every verdict
  verdicts.py      pairs of groups and each group vs its start: differences, intervals, verdicts
  trajectories.py  each run's path from the start to the final harness (plot data)
  plots.py         frontier, independent frontier, proxy vs gold, length (matplotlib, imported only to plot)
  curves.py        curves.png, one panel per (stage, metric)
  tables.py        the verdict, win-rate and cost tables; verdicts.csv
  report.py        compare.csv, compare.md (and W&B)
  html.py          compare.html, the report with its plots inlined
  samples.py       samples.md
  cli.py           the command line
"""

from zoo.compare.cli import main
from zoo.compare.groups import SEED_KEYS, config_drift, group_runs
from zoo.compare.plots import plot
from zoo.compare.report import CSV_FIELDS, DIAGNOSTICS, HEADLINE, markdown, write_csv
from zoo.compare.runs import CompareError, Run, flatten, load_run, load_runs
from zoo.compare.samples import samples_markdown
from zoo.compare.stats import bounds, changes, score_field, stats, summarise
from zoo.compare.trajectories import cumulative_steps, trajectory

__all__ = ["CSV_FIELDS", "DIAGNOSTICS", "HEADLINE", "SEED_KEYS", "CompareError", "Run", "bounds", "changes",
           "config_drift",
           "cumulative_steps", "flatten", "group_runs", "load_run", "load_runs", "main", "markdown",
           "plot", "samples_markdown", "score_field", "stats", "summarise", "trajectory",
           "write_csv"]
