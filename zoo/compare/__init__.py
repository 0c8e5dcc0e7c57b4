"""Compare finished runs: `python -m zoo.compare outputs/sweep/ [--by algo.name] [--out compare/]`.

One run is one seed, and one seed is an anecdote: this package groups run dirs by the config keys that differ
between them (never by the seed keys, which are what repeats vary), and reports each group's mean, sample std
and 95% t-interval over its seeds, the diagnostics' change from each run's baseline, a paired win-rate matrix on
the shared held-out prompts, plots, and the completions side by side.

It only READS run dirs (config.yaml, metrics.json, samples.jsonl, stages/*/history.jsonl, curve.jsonl), so it
imports nothing from the training code: comparing a sweep never loads torch.

  runs.py    reading run dirs (Run, CompareError, load_runs)
  groups.py  grouping runs by the config keys that differ
  stats.py   seed statistics, changes from the baseline, paired win rates
  report.py  compare.csv, compare.md, samples.md (and W&B)
  plots.py   the PNGs (matplotlib, imported only to plot)
  cli.py     the command line
"""

from zoo.compare.cli import main
from zoo.compare.groups import SEED_KEYS, group_runs
from zoo.compare.plots import cumulative_steps, plot
from zoo.compare.report import CSV_FIELDS, DIAGNOSTICS, HEADLINE, markdown, samples_markdown, write_csv
from zoo.compare.runs import CompareError, Run, flatten, load_run, load_runs
from zoo.compare.stats import bounds, changes, paired_win_rates, score_field, stats, summarise

__all__ = ["CSV_FIELDS", "DIAGNOSTICS", "HEADLINE", "SEED_KEYS", "CompareError", "Run", "bounds", "changes",
           "cumulative_steps", "flatten", "group_runs", "load_run", "load_runs", "main", "markdown",
           "paired_win_rates", "plot", "samples_markdown", "score_field", "stats", "summarise", "write_csv"]
