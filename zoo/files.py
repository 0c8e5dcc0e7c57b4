"""Run-dir files and directories written atomically: the one place that writes to a temporary name and renames it
into place, so a crash mid-write never leaves a truncated file or a half-filled directory that looks complete."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def _replacing(path: Path):
    """Yields the temporary path to write; on success it replaces `path` in one rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    yield tmp
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    with _replacing(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with _replacing(path) as tmp, open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


@contextmanager
def atomic_dir(dest: Path, *, keep_existing: bool = False):
    """Yields an empty temporary directory beside `dest` to fill; when the block ends without an error it becomes
    `dest` in one rename. An existing `dest` is replaced, or, with `keep_existing` (a cache another process may
    have built first), kept and the new copy dropped. A crash leaves only the temporary directory, which the next
    attempt clears."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        if keep_existing:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def parse_jsonl(text: str, where) -> list[tuple[int, object]]:
    """(line number, value) of each non-blank line of JSONL `text`; a line that is not JSON raises ValueError naming
    `where` (the file) and the line, e.g. `rows.jsonl: line 3: invalid JSON (Expecting value at column 1)`."""
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: line {n}: invalid JSON ({e.msg} at column {e.colno})") from None
    return out


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_complete_jsonl(path: Path) -> list[dict]:
    """The complete lines of an append-only log (history.jsonl, curve.jsonl); a crash mid-append can leave a
    partial last line, which is dropped. A missing file reads as empty."""
    rows = []
    for line in Path(path).read_text().splitlines() if Path(path).exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
