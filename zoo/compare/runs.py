"""Reading run dirs: config.yaml (flattened to dotted keys), metrics.json, samples.jsonl, each stage's
history.jsonl and curve.jsonl, and the config-group choices the run was composed from (Hydra's
`.hydra/hydra.yaml`, else the job's overrides in the sweep's `sweep.json`). A path compare cannot read is a
CompareError that names it."""

from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from zoo.files import parse_jsonl  # a leaf (standard library only): compare still imports no training code

RUN_DIR = "a run dir holds config.yaml and metrics.json"


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
    choices: dict = field(default_factory=dict)  # config group -> option (algo -> dpo, peft -> qlora); {} if unknown
    overrides: list = field(default_factory=list)  # what the command line / sweep set (`algo=dpo`, `trainer.seed=0`)


def number(value) -> float | None:
    """A finite number, or None (null, text, bool, NaN all count as missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def prompt_key(prompt) -> str:
    """A prompt as one comparable string: chat prompts (message lists) match by their JSON."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None


def _read_jsonl(path: Path) -> list[dict]:
    """Like zoo.files.read_jsonl, but a bad line names its file and line number instead of a bare decode error."""
    if not path.exists():
        return []
    try:
        parsed = parse_jsonl(path.read_text(), path)
    except ValueError as e:
        raise CompareError(str(e)) from None
    bad = [n for n, row in parsed if not isinstance(row, dict)]
    if bad:
        raise CompareError(f"{path}: line {bad[0]} is not a JSON object")
    return [row for _, row in parsed]


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


def _hydra_record(path: Path) -> tuple[dict, list]:
    """(group choices, overrides) from `.hydra/hydra.yaml` (hydra.runtime.choices, hydra.overrides.task); Hydra's
    own groups (hydra, hydra/launcher, ...) are never an arm. Empty when the run dir has no such file."""
    try:
        hydra = yaml.safe_load((path / ".hydra" / "hydra.yaml").read_text())["hydra"]
        choices, overrides = hydra["runtime"]["choices"], hydra.get("overrides", {}).get("task", [])
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return {}, []
    if not isinstance(choices, dict):
        return {}, []
    return {str(k): v for k, v in choices.items() if not str(k).startswith("hydra")}, list(overrides or [])


def _override_choices(overrides: list, config: dict) -> dict:
    """`algo=dpo`, `+sweeps=x` in a job's overrides are group choices; `trainer.seed=0` (dotted) and `resume=true`
    (a leaf of the config, not a group) are values."""
    out = {}
    for text in overrides:
        key, sep, value = str(text).lstrip("+~").partition("=")
        if sep and "." not in key and key not in config and not key.startswith("hydra"):
            out[key] = value
    return out


def _sweep_jobs(run_dir: Path) -> list[tuple[tuple, list]]:
    """[(the job's run_dir parts, its overrides)] from the nearest sweep.json above `run_dir` (zoo.sweep writes one
    per sweep root), or []."""
    for parent in list(run_dir.resolve().parents)[:4]:
        if (parent / "sweep.json").is_file():
            try:
                jobs = json.loads((parent / "sweep.json").read_text()).get("jobs", [])
            except (json.JSONDecodeError, AttributeError):
                return []
            return [(Path(j["run_dir"]).parts, j.get("overrides", [])) for j in jobs
                    if isinstance(j, dict) and j.get("run_dir")]
    return []


def _sweep_overrides(run: Run) -> list:
    """The job's run_dir may be relative to where the sweep started, or the sweep moved since (results/ holds
    copies): a job matches by path suffix, else by its dir name alone (Hydra's job number) when that is unique."""
    parts, jobs = run.dir.resolve().parts, _sweep_jobs(run.dir)
    found = [o for p, o in jobs if parts[-len(p):] == p] or [o for p, o in jobs if p[-1:] == parts[-1:]]
    return list(found[0]) if len(found) == 1 else []


def load_run(path: Path) -> Run:
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
    except yaml.YAMLError as e:
        raise CompareError(f"{path / 'config.yaml'}: not valid YAML ({e})") from None
    metrics = _read_json(path / "metrics.json")
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        raise CompareError(f"{path}: config.yaml and metrics.json must each hold a mapping")
    history = {p.parent.name: _read_jsonl(p) for p in sorted((path / "stages").glob("*/history.jsonl"))}
    run = Run(dir=path, config=flatten(config), metrics=metrics, samples=_read_jsonl(path / "samples.jsonl"),
              history=history, curve=_read_jsonl(path / "curve.jsonl"))
    run.choices, run.overrides = _hydra_record(path)
    if not run.choices:
        run.overrides = _sweep_overrides(run)
        run.choices = _override_choices(run.overrides, run.config)
    return run


def load_runs(paths) -> list[Run]:
    """Every run dir under `paths` (run dirs, sweep roots, glob patterns), once each, sorted by dir."""
    dirs = {d.resolve(): d for arg in paths for d in _run_dirs(str(arg))}
    if not dirs:
        raise CompareError(f"no run dirs given ({RUN_DIR})")
    return [load_run(dirs[k]) for k in sorted(dirs)]
