"""Compare finished runs: `python -m zoo.compare outputs/sweep/ [--by algo.name] [--out compare/]`.

One run is one seed, and one seed is an anecdote: this module groups run dirs by the config keys that differ
between them (never by the seed keys, which are what repeats vary), and reports each group's mean, sample std
and 95% t-interval over its seeds, a paired win-rate matrix on the shared held-out prompts, plots, and the
completions side by side.

It only READS run dirs (config.yaml, metrics.json, samples.jsonl, stages/*/history.jsonl, curve.jsonl), so it
imports nothing from the training code: comparing a sweep never loads torch.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

IGNORED_PREFIXES = ("paths.", "logger.", "hydra.")  # differ per run by construction, never an experimental arm
IGNORED_KEYS = {"resume"}
SEED_KEYS = ("trainer.seed", "eval.seed")
HEADLINE = ("eval/gold_reward", "eval/proxy_reward", "eval/kl", "eval/win_rate", "eval/length", "eval/eos_rate",
            "eval/distinct_2", "eval/accuracy", "run/seconds")
CSV_FIELDS = ("group", "metric", "n", "mean", "std", "ci95_low", "ci95_high", "min", "max")
# t_{0.975, df} for df = 1..30; beyond that the normal 1.96 is within 2% of the t quantile.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
RUN_DIR = "a run dir holds config.yaml and metrics.json"
_UNSET = "unset"  # the label value of a key a run's config does not have


class CompareError(ValueError):
    """A path or file compare cannot read; the message names it (and says what a run dir holds)."""


@dataclass
class Run:
    dir: Path
    config: dict  # flattened to dotted keys
    metrics: dict
    samples: list = field(default_factory=list)
    history: dict = field(default_factory=dict)  # stage -> TRL log history rows
    curve: list = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- reading runs

def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None


def _read_jsonl(path: Path) -> list[dict]:
    """Like zoo.files.read_jsonl, but a bad line names its file and line number instead of a bare decode error."""
    if not path.exists():
        return []
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CompareError(f"{path}: line {i} is not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise CompareError(f"{path}: line {i} is not a JSON object")
            rows.append(row)
    return rows


def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested config -> {"algo.args.beta": 0.1, ...}. Lists become their JSON text so they compare and print as
    one value; an empty block (`stages: {}`) adds no key, so it equals a config without the block."""
    out = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = json.dumps(value) if isinstance(value, list) else value
    return out


def _is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "metrics.json").is_file()


def _run_dirs(arg: str) -> list[Path]:
    """One argument -> its run dirs: a run dir itself, a folder (sweep root) holding some, or a glob pattern."""
    if glob.has_magic(arg):
        matches = sorted(glob.glob(arg))
        if not matches:
            raise CompareError(f"{arg}: the pattern matches nothing ({RUN_DIR})")
        return [d for m in matches for d in _run_dirs(m)]
    path = Path(arg)
    if not path.exists():
        raise CompareError(f"{path}: no such file or directory ({RUN_DIR})")
    if _is_run_dir(path):
        return [path]
    found = sorted(p.parent for p in path.rglob("metrics.json") if _is_run_dir(p.parent)) if path.is_dir() else []
    if not found:
        raise CompareError(f"{path}: not a run dir and holds none ({RUN_DIR})")
    return found


def load_run(path: Path) -> Run:
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
    except yaml.YAMLError as e:
        raise CompareError(f"{path / 'config.yaml'}: not valid YAML ({e})") from None
    metrics = _read_json(path / "metrics.json")
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        raise CompareError(f"{path}: config.yaml and metrics.json must each hold a mapping")
    history = {p.parent.name: _read_jsonl(p) for p in sorted((path / "stages").glob("*/history.jsonl"))}
    return Run(dir=path, config=flatten(config), metrics=metrics, samples=_read_jsonl(path / "samples.jsonl"),
               history=history, curve=_read_jsonl(path / "curve.jsonl"))


def load_runs(paths) -> list[Run]:
    """Every run dir under `paths` (run dirs, sweep roots, glob patterns), once each, sorted by dir."""
    dirs = {d.resolve(): d for arg in paths for d in _run_dirs(str(arg))}
    if not dirs:
        raise CompareError(f"no run dirs given ({RUN_DIR})")
    return [load_run(dirs[k]) for k in sorted(dirs)]


# ------------------------------------------------------------------------------------------------- grouping

def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _differing_keys(runs: list[Run], seed_keys) -> list[str]:
    keys = sorted({k for r in runs for k in r.config})
    keys = [k for k in keys if k not in IGNORED_KEYS and k not in seed_keys and not k.startswith(IGNORED_PREFIXES)]
    return [k for k in keys if len({_show(r.config.get(k, _UNSET)) for r in runs}) > 1]


def _naming_keys(keys: list[str], rows: list[tuple]) -> list[int]:
    """The few keys that already tell the groups apart, so a label reads `algo.name=kto` rather than listing every
    `algo.args.*` that differs because the algorithm does. Shallow keys and `*.name` keys are tried first; a key is
    kept if it splits groups the kept ones do not, then dropped again if the others split them all without it."""
    def splits(chosen):
        return len({tuple(r[j] for j in chosen) for r in rows})

    order = sorted(range(len(keys)), key=lambda i: (keys[i].count("."), not keys[i].endswith(".name"), keys[i]))
    chosen: list[int] = []
    for i in order:
        if splits(chosen) == splits(range(len(keys))):
            break
        if splits(chosen + [i]) > splits(chosen):
            chosen.append(i)
    for i in reversed(list(chosen)):
        if splits([j for j in chosen if j != i]) == splits(chosen):
            chosen.remove(i)
    return sorted(chosen)


def group_runs(runs: list[Run], by=None, seed_keys=SEED_KEYS) -> dict[str, list[Run]]:
    """{label: runs}, labels sorted, each group's runs sorted by dir.

    Without `by`, runs group by every config key that differs between them, minus the seed keys and the
    bookkeeping keys (paths, logger, hydra, resume). If all runs share a config they form one group, "all".
    """
    if not runs:
        raise CompareError(f"no runs to compare ({RUN_DIR})")
    if by:
        missing = [k for k in by if all(k not in r.config for r in runs)]
        if missing:
            raise CompareError(f"--by key(s) {missing} are in no run's config.yaml (keys are dotted: algo.name)")
        keys = list(by)
    else:
        keys = _differing_keys(runs, set(seed_keys))
    rows = [tuple(_show(r.config.get(k, _UNSET)) for k in keys) for r in runs]
    naming = range(len(keys)) if by else _naming_keys(keys, rows)
    groups: dict[str, list[Run]] = {}
    for run, row in zip(runs, rows):
        label = ", ".join(f"{keys[j]}={row[j]}" for j in naming) or "all"
        groups.setdefault(label, []).append(run)
    return {label: sorted(groups[label], key=lambda r: str(r.dir)) for label in sorted(groups)}


# ---------------------------------------------------------------------------------------------- statistics

def _num(value) -> float | None:
    """A finite number, or None (null, text, bool, NaN all count as missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _is_metric(key: str) -> bool:
    head, _, tail = key.partition("/")
    return head in ("eval", "before") or key in ("run/seconds", "run/peak_rss_mb") or tail in ("train_loss", "accuracy")


def _metric_order(key: str) -> tuple:
    rank = {"eval": 0, "before": 1, "run": 2}.get(key.partition("/")[0], 3)
    return rank, key


def stats(values: list[float]) -> dict:
    """n, mean, sample std (ddof=1) and the 95% t-interval of the mean; std and interval are None below n=2."""
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else None
    half = (T975[n - 2] if n - 1 <= len(T975) else 1.96) * std / math.sqrt(n) if std is not None else None
    return {"n": n, "mean": mean, "std": std, "ci95_low": None if half is None else mean - half,
            "ci95_high": None if half is None else mean + half, "min": min(values), "max": max(values)}


def summarise(groups: dict[str, list[Run]]) -> list[dict]:
    """The CSV rows: one per group x metric with at least one non-null value in that group."""
    keys = sorted({k for runs in groups.values() for r in runs for k in r.metrics if _is_metric(k)}, key=_metric_order)
    rows = []
    for label, runs in groups.items():
        for key in keys:
            values = [v for v in (_num(r.metrics.get(key)) for r in runs) if v is not None]
            if values:
                rows.append({"group": label, "metric": key, **stats(values)})
    return rows


def _prompt_key(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def score_field(groups: dict[str, list[Run]]) -> str | None:
    """Gold where any trained completion has it (the true objective), else the proxy the run optimised."""
    after = [s for runs in groups.values() for r in runs for s in r.samples if s.get("policy") == "after"]
    return next((f for f in ("gold", "proxy") if any(_num(s.get(f)) is not None for s in after)), None)


def _prompt_means(runs: list[Run], score: str) -> dict[str, float]:
    scores: dict[str, list[float]] = {}
    for run in runs:
        for s in run.samples:
            if s.get("policy") == "after" and _num(s.get(score)) is not None:
                scores.setdefault(_prompt_key(s.get("prompt")), []).append(float(s[score]))
    return {p: statistics.fmean(v) for p, v in scores.items()}


def paired_win_rates(groups: dict[str, list[Run]], score: str | None = None) -> dict[tuple[str, str], float]:
    """{(a, b): share of the held-out prompts both groups answered where a's seed-mean score beats b's}.

    Pairing by prompt removes the prompt-difficulty variance that an unpaired comparison of means carries; ties
    count one half, so (a, b) + (b, a) = 1. Pairs with no common prompt are left out.
    """
    score = score or score_field(groups)
    if score is None:
        return {}
    means = {label: _prompt_means(runs, score) for label, runs in groups.items()}
    out = {}
    for a in groups:
        for b in groups:
            common = means[a].keys() & means[b].keys()
            if a != b and common:
                wins = sum(1.0 if means[a][p] > means[b][p] else 0.5 if means[a][p] == means[b][p] else 0.0
                           for p in common)
                out[a, b] = wins / len(common)
    return out


# ------------------------------------------------------------------------------------------------- writing

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


def markdown(groups: dict[str, list[Run]], rows: list[dict]) -> str:
    """The summary table (mean ± std [95% CI] over seeds), the paired win-rate matrix, and the run dirs."""
    by_key = {(r["group"], r["metric"]): r for r in rows}
    columns = [m for m in HEADLINE if any((g, m) in by_key for g in groups)]
    n_runs = sum(len(runs) for runs in groups.values())
    lines = [f"# Comparison of {n_runs} runs in {len(groups)} groups", "",
             "Cells: mean ± sample std [95% t-interval of the mean] over seeds; (n=k) where only k runs had a value.",
             "", "| group | runs | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for label, runs in groups.items():
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(_cell(by_key.get((label, m)), len(runs))
                                                            for m in columns) + " |")
    score = score_field(groups)
    rates = paired_win_rates(groups, score)
    scored = [g for g in groups if any(g in pair for pair in rates)]  # groups with no scored prompt: no row
    if rates:
        lines += ["", f"## Paired win rate ({score})", "",
                  f"Row vs column: the share of held-out prompts both answered where the row's {score} (mean over its "
                  "seeds) is higher; ties count 1/2.", "",
                  "| | " + " | ".join(scored) + " |", "|---" * (len(scored) + 1) + "|"]
        for a in scored:
            cells = ["—" if a == b else f"{rates[a, b]:.3f}" if (a, b) in rates else "" for b in scored]
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
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
                        and _prompt_key(s.get("prompt")) == _prompt_key(prompt)), None)
            if rec is None:
                lines.append(f"- **{label}**: (this prompt is not in its samples)")
                continue
            lines += [f"- **{label}** (gold {rec.get('gold')}, proxy {rec.get('proxy')}):",
                      _quote(_completion_text(rec.get("completion")), "  ")]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- plotting

def _points(rows: list[dict], x: str, y: str) -> list[tuple[float, float]]:
    return [(_num(r.get(x)), _num(r.get(y))) for r in rows if _num(r.get(x)) is not None and _num(r.get(y)) is not None]


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
                    pts = _points(rows, "step", key)
                    if pts:
                        ax.plot(*zip(*pts), color=colours[label], alpha=0.8, lw=1, label=label)
                        drew = True
        return drew

    def curve_by_stage(run):
        stages: dict[str, list] = {}
        for row in run.curve:
            stages.setdefault(str(row.get("stage")), []).append(row)
        return stages

    figure("frontier.png", ["gold reward"], lambda ax, _: scatter(ax, "kl", "gold_reward", before=True),
           "KL to the reference")
    figure("curves.png", list(metrics), lambda ax, key: lines(ax, lambda r: r.history, key), "step")
    figure("proxy_vs_gold.png", ["gold reward"], lambda ax, _: scatter(ax, "proxy_reward", "gold_reward"),
           "proxy reward")
    figure("length.png", ["length (tokens)"], lambda ax, _: lines(ax, curve_by_stage, "length"), "step")
    return written


def log_wandb(rows: list[dict], pngs: list[Path], out: Path) -> None:
    """The CSV as a W&B table and the plots as images, in a `compare` job (offline unless WANDB_MODE says)."""
    import wandb

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "prefzoo"), job_type="compare",
                     mode=os.environ.get("WANDB_MODE", "offline"), dir=str(out))
    table = wandb.Table(columns=list(CSV_FIELDS), data=[[r[k] for k in CSV_FIELDS] for r in rows])
    run.log({"compare": table, **{p.stem: wandb.Image(str(p)) for p in pngs}})
    run.finish()


# ------------------------------------------------------------------------------------------------------ CLI

def _split(text: str | None) -> list[str]:
    return [k.strip() for k in (text or "").split(",") if k.strip()]


def main(argv=None) -> list[Path]:
    """Parse args, write the outputs, return the paths written. Unreadable input exits with the reason."""
    parser = argparse.ArgumentParser(prog="python -m zoo.compare", description=__doc__.split("\n\n")[1])
    parser.add_argument("paths", nargs="+", help="run dirs, sweep roots (searched recursively) or glob patterns")
    parser.add_argument("--by", help="comma-separated config keys to group by (default: the keys that differ)")
    parser.add_argument("--out", default="compare", help="output dir (default: ./compare)")
    parser.add_argument("--metrics", default="loss", help="history.jsonl keys for curves.png (default: loss)")
    parser.add_argument("--samples", type=int, default=5, help="held-out prompts in samples.md (default: 5)")
    parser.add_argument("--seed-keys", default=",".join(SEED_KEYS), help="keys repeats vary; they never group")
    parser.add_argument("--wandb", action="store_true", help="also log the table and plots to W&B")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.paths)
        groups = group_runs(runs, by=_split(args.by), seed_keys=_split(args.seed_keys))
    except CompareError as e:
        sys.exit(f"zoo.compare: {e}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarise(groups)
    write_csv(rows, out / "compare.csv")
    table = markdown(groups, rows)
    (out / "compare.md").write_text(table)
    (out / "samples.md").write_text(samples_markdown(groups, args.samples))
    pngs = plot(groups, out, _split(args.metrics) or ["loss"])
    if args.wandb:
        log_wandb(rows, pngs, out)
    print(table)
    written = [out / n for n in ("compare.csv", "compare.md", "samples.md")] + pngs
    print(f"[compare] {len(runs)} runs, {len(groups)} groups -> " + ", ".join(str(p) for p in written))
    return written


if __name__ == "__main__":
    main()
