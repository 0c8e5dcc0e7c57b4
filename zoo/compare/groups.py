"""Grouping runs into arms: by the config keys that differ between them, never by the keys repeats vary (seeds)
or that differ per run by construction (paths, logger, hydra)."""

from __future__ import annotations

import json

from zoo.compare.runs import RUN_DIR, CompareError, Run

IGNORED_PREFIXES = ("paths.", "logger.", "hydra.")  # differ per run by construction, never an experimental arm
IGNORED_KEYS = {"resume"}
SEED_KEYS = ("trainer.seed", "eval.seed")
_UNSET = "unset"  # the label value of a key a run's config does not have


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
