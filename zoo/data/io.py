"""Read dataset rows from local files or the Hugging Face Hub.

Every row comes back as ``(number, dict)`` so that the adapters can say exactly which line or row of
which file is wrong. A user who feeds the wrong file should get one message naming the file and row,
not a KeyError from deep inside a trainer twenty minutes later.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from zoo.errors import DataError
from zoo.files import parse_jsonl

SUPPORTED_EXTENSIONS = (".jsonl", ".json", ".parquet")
DOWNLOAD_HINT = (
    "download the dataset on a machine with internet access and pass "
    "data.path=/path/to/file.jsonl (json, jsonl and parquet files are read)"
)
_TRUE = {"1", "true", "yes", "on"}


Row = tuple[int, dict]


def read_rows(path: str) -> list[Row]:
    """Rows of a local .jsonl, .json or .parquet file, numbered from 1 for error messages."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such file")
    suffix = p.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}
    if suffix not in readers:
        raise DataError(
            f"{path}: unsupported file type {suffix or '(no extension)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    return readers[suffix](path)


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e


def _read_jsonl(path: str) -> list[Row]:
    try:
        parsed = parse_jsonl(_read_text(path), path)
    except ValueError as e:
        raise DataError(str(e)) from None
    return [_object(path, "line", n, obj) for n, obj in parsed]


def _object(path: str, unit: str, n: int, obj) -> Row:
    """(n, obj) when obj is a JSON object; `unit` names what n counts (line, row) in the error otherwise."""
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {unit} {n}: expected a JSON object, got {_kind(obj)}")
    return n, obj


def _read_json(path: str) -> list[Row]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})"
        ) from e
    if isinstance(data, dict):
        # Exports such as {"version": ..., "data": [...]} wrap the rows in one list-valued key.
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(
                f"{path}: expected a list of row objects, or an object with exactly one "
                f"list-valued key holding them; found list-valued keys {lists}"
            )
        data = data[lists[0]]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of row objects, got {_kind(data)}")
    return [_object(path, "row", n, obj) for n, obj in enumerate(data, start=1)]


def _read_parquet(path: str) -> list[Row]:
    import pyarrow.parquet as pq  # only parquet users pay for the import

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: cannot read as parquet ({e})") from e
    return list(enumerate(table.to_pylist(), start=1))


def _kind(obj) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(obj), type(obj).__name__
    )


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _hub_address() -> tuple[str, int]:
    endpoint = os.environ.get("HF_ENDPOINT", "").strip()
    if not endpoint:
        return "huggingface.co", 443
    url = urlparse(endpoint if "//" in endpoint else f"https://{endpoint}")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub can be used now, decided within about `timeout` seconds.

    Without this, an offline machine sits through the hub client's retries and back-offs for
    minutes before failing with a connection error that never mentions the local-file way out.
    HF_HUB_OFFLINE=1 counts as unreachable. The connect runs in a daemon thread because DNS
    lookups ignore socket timeouts and can hang on a machine with a broken resolver.
    """
    if _env_true("HF_HUB_OFFLINE"):
        return False
    host, port = _hub_address()
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(result and result[0])


def load_hub_rows(hub_id: str, split: str, config_name: str | None = None) -> list[Row]:
    """Rows of a Hub dataset split, failing in seconds with the local-file hint when offline."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE"):
        raise DataError(
            f"{hub_id}: could not reach the Hugging Face Hub (offline mode is set by "
            f"HF_HUB_OFFLINE or HF_DATASETS_OFFLINE); {DOWNLOAD_HINT}"
        )
    if not hub_reachable():
        host, port = _hub_address()
        raise DataError(
            f"{hub_id}: could not reach the Hugging Face Hub (no connection to {host}:{port}); "
            f"{DOWNLOAD_HINT}"
        )
    import datasets  # heavy; keep it off the local-file path

    try:
        ds = datasets.load_dataset(hub_id, config_name, split=split)
    except Exception as e:  # not found, bad split, gated, network drop mid-download...
        config = f" (config {config_name!r})" if config_name else ""
        raise DataError(f"{hub_id}{config}: could not load split {split!r}: {e}") from e
    return [(n, dict(row)) for n, row in enumerate(ds, start=1)]
