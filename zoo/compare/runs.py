"""Reading run dirs: config.yaml (flattened to dotted keys), metrics.json, samples.jsonl, each stage's
history.jsonl and curve.jsonl. A path compare cannot read is a CompareError that names it."""

from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

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
