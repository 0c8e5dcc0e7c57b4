"""What logger=wandb records, read back from the offline run file that wandb itself wrote.

wandb 0.31 ships no Python reader for its run files (the writer is the Go `wandb-core`), so `_records` reads
the format directly: LevelDB's log format (32 KiB blocks of CRC-checked chunks) behind a 7-byte W&B header,
each record a serialized `wandb.proto.wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import pytest

from zoo.train import run

_BLOCK = 32768
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, chunk type
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path}: not a W&B run file"
    out, pos, pending = [], 7, b""
    while pos + _CHUNK_HEADER.size <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK_HEADER.size:  # a block's tail too short for a header is zero padding
            pos += left
            continue
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if (crc, length, kind) == (0, 0, 0):  # padding up to the next block
            pos += left
            continue
        chunk = data[pos + _CHUNK_HEADER.size: pos + _CHUNK_HEADER.size + length]
        # Like wandb's own reader: the CRC covers the chunk type byte, then the payload.
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == crc, f"{path}: bad CRC at {pos}"
        pos += _CHUNK_HEADER.size + length
        if kind in (_FULL, _FIRST):
            pending = chunk
        elif kind in (_MIDDLE, _LAST):
            pending += chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _read_run(run_file: Path) -> dict:
    records = _records(run_file)
    kinds = [r.WhichOneof("record_type") for r in records]
    history = [{_key(i): json.loads(i.value_json) for i in r.history.item} for r in records if r.HasField("history")]
    summary: dict = {}
    for r in records:
        if r.HasField("summary"):
            summary.update({_key(i): json.loads(i.value_json) for i in r.summary.update})
            for i in r.summary.remove:
                summary.pop(_key(i), None)
    config: dict = {}
    for r in records:  # the config passed to wandb.init travels in the run record, later updates on their own
        for update in (r.run.config.update if r.HasField("run") else r.config.update if r.HasField("config") else []):
            config[_key(update)] = json.loads(update.value_json)
    runs = [r.run for r in records if r.HasField("run")]
    exits = [r.exit for r in records if r.HasField("exit")]
    return {"kinds": kinds, "runs": runs, "history": history, "summary": summary, "config": config, "exits": exits}


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))


def test_wandb_records_names_losses_and_harness_metrics(compose, tmp_path, offline_wandb):
    out = tmp_path / "run"
    metrics = run(compose("algo=sft", "logger=wandb", "logger.project=p1", "logger.group=g1", "logger.run_name=r1",
                          "trainer.max_steps=3", "trainer.logging_steps=1", output_dir=out))
    import wandb

    # finish() returns before wandb-core has necessarily written the file's last block (seen truncated under
    # pytest); teardown waits for the service to close its streams.
    wandb.teardown()

    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    wb = _read_run(run_file)

    assert wb["runs"], wb["kinds"]
    last = wb["runs"][-1]  # a later run record (a rename) would supersede the first
    assert (last.project, last.run_group, last.display_name) == ("p1", "g1", "r1")
    assert wb["config"]["logger"]["group"] == "g1" and wb["config"]["algo"]["name"] == "sft"

    losses = [(row.get("train/global_step"), row["train/loss"]) for row in wb["history"] if "train/loss" in row]
    assert len(losses) == 3, wb["history"]
    assert [step for step, _ in losses] == [1, 2, 3]
    assert all(isinstance(x, float) and math.isfinite(x) for _, x in losses)

    summary = wb["summary"]
    harness = {k: v for k, v in metrics.items() if k.startswith(("eval/", "before/")) and v is not None}
    assert {"eval/gold_reward", "eval/kl", "eval/length", "before/gold_reward", "before/length"} <= set(harness)
    for key, value in harness.items():
        assert summary.get(key) == pytest.approx(value, rel=1e-12, abs=0), key
    assert summary["sft/train_loss"] == pytest.approx(metrics["sft/train_loss"], rel=1e-12)

    assert [e.exit_code for e in wb["exits"]] == [0]  # the run was finished, not left open


def test_compare_logs_its_table_and_plots(tmp_path, offline_wandb):
    """`python -m zoo.compare ... --wandb`: the CSV rows as a W&B table and the PNGs as images, in a compare job."""
    import wandb

    from test_compare import make_sweep  # tests/ is on sys.path under pytest
    from zoo.compare import main

    out = tmp_path / "report"
    written = main([str(make_sweep(tmp_path / "sweep")), "--out", str(out), "--wandb"])
    wandb.teardown()
    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    wb = _read_run(run_file)
    logged = {k.split("/")[0] for row in wb["history"] for k in row}
    assert {"compare", "frontier"} <= logged, logged  # the table and a plot (W&B stores both as media entries)
    assert [e.exit_code for e in wb["exits"]] == [0]
    assert any(p.name == "frontier.png" for p in written)
