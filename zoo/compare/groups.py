"""Grouping runs into arms: by the config keys and config-group choices that differ between them, never by the keys
repeats vary (seeds) or that differ per run by construction (paths, logger, hydra). A label names the group choice
when one differs (`peft=qlora`, not the leaf `peft.bnb_4bit_compute_dtype=bfloat16` it brings along)."""

from __future__ import annotations

import json
import re

from zoo.compare.runs import RUN_DIR, CompareError, Run

IGNORED_PREFIXES = ("paths.", "logger.", "hydra.")  # differ per run by construction, never an experimental arm
IGNORED_KEYS = {"resume"}
SEED_KEYS = ("trainer.seed", "eval.seed")
_UNSET = "unset"  # the label value of a key a run's config does not have


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _ignored(key: str, seed_keys) -> bool:
    return key in IGNORED_KEYS or key in seed_keys or f"{key}.".startswith(IGNORED_PREFIXES)


def _value(run: Run, key: str, choice: bool) -> str:
    return _show((run.choices if choice else run.config).get(key, _UNSET))


def _overridden(runs: list[Run]) -> set[str]:
    return {str(o).lstrip("+~").partition("=")[0] for r in runs for o in r.overrides}


def _drifted(runs: list[Run], seed_keys) -> set[str]:
    """Config keys set in some runs only, always to the same value, that no run's overrides name: a key the zoo
    added or renamed between runs (conf/ edited while a sweep ran), not an experimental arm. A `+key=value`
    override is an arm, so overrides count."""
    named = _overridden(runs)
    out = set()
    for key in {k for r in runs for k in r.config} - named:
        present = [r for r in runs if key in r.config]
        if 0 < len(present) < len(runs) and len({_show(r.config[key]) for r in present}) == 1:
            out.add(key)
    return {k for k in out if not _ignored(k, seed_keys)}


def config_drift(groups: dict[str, list[Run]], seed_keys=SEED_KEYS) -> list[str]:
    """`key=value (k of n runs)` for each drifted key that is set in some runs of one group and not in others:
    the group's runs were composed from different configs, which a reader should know."""
    runs = [r for rs in groups.values() for r in rs]
    out = []
    for key in sorted(_drifted(runs, set(seed_keys))):
        if any(0 < sum(key in r.config for r in rs) < len(rs) for rs in groups.values()):
            present = [r for r in runs if key in r.config]
            out.append(f"{key}={_show(present[0].config[key])} ({len(present)} of {len(runs)} runs)")
    return out


def _differing(runs: list[Run], seed_keys) -> list[tuple[str, bool]]:
    """(key, is a group choice) for each config key and each recorded group choice that differs between runs.
    Choices count only when every run recorded them: a run without `.hydra/` or a sweep.json entry would
    otherwise differ from the others in every choice."""
    found = [(k, False) for k in sorted({k for r in runs for k in r.config})]
    if all(r.choices for r in runs):
        found = [(k, True) for k in sorted({k for r in runs for k in r.choices})] + found
    drifted = _drifted(runs, seed_keys)
    return [(k, c) for k, c in found if not _ignored(k, seed_keys) and (c or k not in drifted)
            and len({_value(r, k, c) for r in runs}) > 1]


def _naming_keys(keys: list[tuple[str, bool]], rows: list[tuple]) -> list[int]:
    """The few keys that already tell the groups apart, so a label reads `algo=kto` rather than listing every
    `algo.args.*` that differs because the algorithm does. Tried first: group choices (what the user picked), then
    keys every run sets (`peft.method` names the difference; `peft.bnb_4bit_*` exist only as its consequence),
    shallow keys and `*.name` keys. A key is kept if it splits groups the kept ones do not, then dropped again if
    the others split them all without it."""
    def splits(chosen):
        return len({tuple(r[j] for j in chosen) for r in rows})

    def order(i):
        key, choice = keys[i]
        some_unset = any(r[i] == _UNSET for r in rows)
        return not choice, some_unset, key.count("."), not key.endswith(".name"), key

    chosen: list[int] = []
    for i in sorted(range(len(keys)), key=order):
        if splits(chosen) == splits(range(len(keys))):
            break
        if splits(chosen + [i]) > splits(chosen):
            chosen.append(i)
    for i in reversed(list(chosen)):
        if splits([j for j in chosen if j != i]) == splits(chosen):
            chosen.remove(i)
    return sorted(chosen, key=order)


def group_runs(runs: list[Run], by=None, seed_keys=SEED_KEYS) -> dict[str, list[Run]]:
    """{label: runs}, labels sorted, each group's runs sorted by dir.

    Without `by`, runs group by every config key and group choice that differs between them, minus the seed keys,
    the bookkeeping keys (paths, logger, hydra, resume) and drifted keys (set in some runs only, to one value, by
    no override: see config_drift). If all runs share a config they form one group, "all".
    `by` names config keys (`algo.name`) or group choices (`algo`, from the runs' Hydra records).
    """
    if not runs:
        raise CompareError(f"no runs to compare ({RUN_DIR})")
    if by:
        missing = [k for k in by if all(k not in r.config and k not in r.choices for r in runs)]
        if missing:
            raise CompareError(f"--by key(s) {missing} are in no run's config.yaml (keys are dotted: algo.name) "
                               "nor among its config-group choices (algo, peft)")
        keys = [(k, all(k in r.choices and k not in r.config for r in runs)) for k in by]
    else:
        keys = _differing(runs, set(seed_keys))
    rows = [tuple(_value(r, k, c) for k, c in keys) for r in runs]
    naming = range(len(keys)) if by else _naming_keys(keys, rows)
    groups: dict[str, list[Run]] = {}
    for run, row in zip(runs, rows):
        label = ", ".join(f"{keys[j][0]}={row[j]}" for j in naming) or "all"
        groups.setdefault(label, []).append(run)
    return {label: sorted(groups[label], key=lambda r: str(r.dir)) for label in sorted(groups, key=natural)}


def natural(label: str) -> tuple:
    """A sort key that reads the numbers in a label as numbers: rm=32 before rm=128, beta0.05 before beta0.5."""
    parts = re.split(r"(\d+(?:\.\d+)?)", label)
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts))
