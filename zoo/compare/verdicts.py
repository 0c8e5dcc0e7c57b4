"""Verdicts from seeds: for each pair of groups and each headline metric, the difference of means with a 95%
interval (zoo.compare.bootstrap) and `A > B` / `B > A` / `not separated`; the same for each group against its own
start (after − before within each run), and for the paired win rate.

Runs pair by seed (`trainer.seed`) when both groups have the same seeds: a seed fixes the shared stages (the SFT
policy both arms start from), so the difference within a seed removes that seed's start. Per-prompt values come
from samples.jsonl (records tagged `policy`: before / after; fields gold, independent, proxy, kl), so prompts are
resampled too; metrics with no per-prompt value (fluency, self-BLEU, distinct-2, the safety task's refusal F1 and
harmless / helpful rates) resample the seeds only.
"""

from __future__ import annotations

import numpy as np

from zoo.compare import bootstrap
from zoo.compare.runs import Run, number, prompt_key
from zoo.compare.stats import bounds

PER_PROMPT = {"eval/gold_reward": "gold", "eval/independent_reward": "independent", "eval/proxy_reward": "proxy",
              "eval/kl": "kl"}  # metric -> its samples.jsonl field
COMPARED = ("eval/gold_reward", "eval/independent_reward", "eval/proxy_reward", "eval/kl", "eval/fluency",
            "eval/self_bleu", "eval/distinct_2", "eval/refusal_f1", "eval/harmless_rate", "eval/helpful_rate")
PROMPT_LEVEL, SEED_LEVEL = "seeds, prompts", "seeds"
WIN = "win_rate:"  # a win-rate row's metric: WIN + the metric whose per-prompt scores it compares


def seed_of(run: Run):
    return run.config.get("trainer.seed")


def change_limits(metric: str) -> tuple[float, float] | None:
    """A difference of a metric in [lo, hi] lies in [-(hi - lo), hi - lo]."""
    limits = bounds(metric)
    return None if limits is None else (limits[0] - limits[1], limits[1] - limits[0])


def _prompt_values(run: Run, field: str, policy: str) -> dict[str, float]:
    """{prompt: value} of one policy's records; a prompt asked twice keys as its text plus its occurrence."""
    out, seen = {}, {}
    for rec in run.samples:
        if rec.get("policy") != policy:
            continue
        key = prompt_key(rec.get("prompt"))
        seen[key] = seen.get(key, 0) + 1
        value = number(rec.get(field))
        if value is not None:
            out[f"{key}\x00{seen[key]}"] = value
    return out


def values(columns: list[tuple[Run, str]], metric: str) -> tuple[np.ndarray, str]:
    """(columns x prompts, level) for (run, policy) columns, policy `after` or `before`: per-prompt values on the
    prompts every column answered when all have them, else each run's metrics.json value (eval/ or before/) as one
    column, NaN where a run has none (a metric outside eval/ has no value before)."""
    field = PER_PROMPT.get(metric)
    if field and columns:
        per_column = [_prompt_values(run, field, policy) for run, policy in columns]
        common = sorted(set.intersection(*(set(d) for d in per_column)))
        if common:
            return np.array([[d[k] for k in common] for d in per_column]), PROMPT_LEVEL
    prefix, _, name = metric.partition("/")
    if prefix == "eval":  # the harness's columns: eval/<name> after, before/<name> at the start
        found = [number(run.metrics.get(("eval/" if policy == "after" else "before/") + name))
                 for run, policy in columns]
    else:  # a stage's own metric (e.g. rm/accuracy) has no "before"
        found = [number(run.metrics.get(metric)) if policy == "after" else None for run, policy in columns]
    return np.array([[np.nan if v is None else v] for v in found]).reshape(len(columns), 1), SEED_LEVEL


def matched_seeds(a: list[Run], b: list[Run]) -> tuple[list[Run], list[Run]] | None:
    """Both groups' runs in the same seed order when each group has each seed once and the seed sets agree."""
    sa, sb = {seed_of(r): r for r in a}, {seed_of(r): r for r in b}
    if None in sa or len(sa) != len(a) or len(sb) != len(b) or set(sa) != set(sb):
        return None
    order = sorted(sa, key=str)
    return [sa[s] for s in order], [sb[s] for s in order]


def _kept(a: np.ndarray, b: np.ndarray, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows (runs) with a value: paired, a seed missing on either side leaves both."""
    ok_a, ok_b = ~np.isnan(a).any(axis=1), ~np.isnan(b).any(axis=1)
    return (a[ok_a & ok_b], b[ok_a & ok_b]) if paired else (a[ok_a], b[ok_b])


def _row(base: dict, a: np.ndarray, b: np.ndarray, level: str, result: dict, win: bool) -> dict:
    means = (None, None) if win else (float(a.mean()), float(b.mean()))  # a win rate has no per-group mean
    return {**base, "mean_a": means[0], "mean_b": means[1], "level": level,
            "prompts": a.shape[1] if level == PROMPT_LEVEL else None, **result}


def _scored(metric: str) -> tuple[bool, str]:
    """(is a win rate, the metric whose values are compared)."""
    return (True, metric[len(WIN):]) if metric.startswith(WIN) else (False, metric)


def compare_pair(a_label: str, a: list[Run], b_label: str, b: list[Run], metric: str) -> dict | None:
    """A − B on `metric`, or A's win rate over B on WIN + metric (null 0.5); None without values."""
    win, scored = _scored(metric)
    matched = matched_seeds(a, b)
    runs_a, runs_b = matched or (a, b)
    both, level = values([(r, "after") for r in runs_a + runs_b], scored)
    ma, mb = _kept(both[:len(runs_a)], both[len(runs_a):], paired=matched is not None)
    if not len(ma) or not len(mb) or (win and level != PROMPT_LEVEL):
        return None
    rng = bootstrap.rng_for(a_label, b_label, metric)
    if win and matched:
        result = bootstrap.paired(bootstrap.wins(ma, mb), rng, null=0.5, limits=(0.0, 1.0))
    elif win:
        result = bootstrap.unpaired_win_rate(ma, mb, rng)
    elif matched:
        result = bootstrap.paired(ma - mb, rng, limits=change_limits(metric))
    else:
        result = bootstrap.unpaired_difference(ma, mb, rng, limits=change_limits(metric))
    base = {"a": a_label, "b": b_label, "metric": metric, "pairing": "paired by seed" if matched else "unpaired"}
    return _row(base, ma, mb, level, result, win)


def versus_start(label: str, runs: list[Run], metric: str) -> dict | None:
    """after − before within each run (its own start), over the group's seeds; WIN + metric: the share of prompts
    where the trained policy's completion scores above the start's (null 0.5)."""
    win, scored = _scored(metric)
    both, level = values([(r, "after") for r in runs] + [(r, "before") for r in runs], scored)
    after, before = _kept(both[:len(runs)], both[len(runs):], paired=True)
    if not len(after) or (win and level != PROMPT_LEVEL):
        return None
    rng = bootstrap.rng_for(label, "start", metric)
    if win:
        per_run = bootstrap.wins(after, before)
        result = bootstrap.paired(per_run, rng, null=0.5, limits=(0.0, 1.0))
        up = per_run.mean(axis=1) > 0.5
    else:
        result = bootstrap.paired(after - before, rng, limits=change_limits(metric))
        up = (after - before).mean(axis=1) > 0
    # Descriptive, beside the verdict: in how many runs (seeds) the change went up.
    return _row({"a": label, "b": "before", "metric": metric, "pairing": "within run",
                 "runs_up": f"{int(up.sum())}/{len(up)}"}, after, before, level, result, win)


def all_verdicts(groups: dict[str, list[Run]], score: str | None, extra: list[str] = ()) -> tuple[list[dict],
                                                                                                   list[dict]]:
    """(every pair of groups x metric, every group vs its start x metric), metrics in COMPARED order, then `extra`
    (run-level metrics.json names, e.g. eval/proxy_gold_spearman: over seeds only), then the win rate on `score`
    (the samples' field: gold, else proxy); a metric no group has is left out."""
    by_field = {field: metric for metric, field in PER_PROMPT.items()}
    metrics = list(COMPARED) + [m for m in extra if m not in COMPARED]
    metrics += [WIN + by_field[score]] if score in by_field else []
    labels = list(groups)
    pairs = [compare_pair(a, groups[a], b, groups[b], m) for m in metrics
             for i, a in enumerate(labels) for b in labels[i + 1:]]
    starts = [versus_start(g, groups[g], m) for m in metrics for g in labels]
    return [p for p in pairs if p], [s for s in starts if s]
