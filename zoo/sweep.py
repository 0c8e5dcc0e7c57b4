"""Hydra multirun bookkeeping: `sweep.json` at the sweep root, failed jobs recorded instead of ending the sweep,
W&B runs grouped per sweep and named from their overrides, threads per job.

Every job of `python -m zoo.train -m ...` (any launcher: basic, joblib, submitit, ray) writes its own record,
`<sweep dir>/.jobs/<job number>.json` (atomically), then rebuilds `sweep.json` from all records under a file
lock, so parallel jobs never lose each other's lines:

    {"sweep_dir": ..., "jobs": [{"num": 0, "overrides": ["algo=dpo", "trainer.seed=0"], "status": "ok",
                                 "run_dir": ".../0", "objective": 0.61, "error": null}, ...]}

A job that fails (a bad value, a NaN, a crash) is recorded with the last line of its error and returns no
objective; the launcher goes on with the other jobs. Rerunning the same sweep into the same directory with
`resume=true` (`hydra.sweep.dir=<that dir>`) skips the jobs that finished (`zoo.train.run` returns their
metrics.json) and continues the others from their checkpoints.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, open_dict

from zoo.errors import UserError, short
from zoo.files import write_json

RUN_NAME_CHARS = 120  # W&B shows long names truncated anyway


def job_info() -> dict | None:
    """This job's sweep dir, number and overrides under `-m`; None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    return {"sweep_dir": str(hc.sweep.dir), "num": int(hc.job.num), "overrides": list(hc.overrides.task)}


def name_run(cfg: DictConfig, info: dict) -> None:
    """One W&B group per sweep (unless logger.group was set), one run per job named from its overrides."""
    set_by_user = {o.split("=", 1)[0].lstrip("+~") for o in info["overrides"]}
    with open_dict(cfg):
        if "logger.group" not in set_by_user:
            cfg.logger.group = f"sweep-{Path(info['sweep_dir']).name}"
        if "logger.run_name" not in set_by_user:
            shown = [o for o in info["overrides"] if not o.startswith(("hydra.", "resume="))]
            cfg.logger.run_name = f"{info['num']}:" + (",".join(shown) or "defaults")[:RUN_NAME_CHARS]


def apply_threads() -> None:
    """A launcher that runs several jobs at once sets OMP_NUM_THREADS per job (sweeps/launcher configs); torch may
    already be initialised in a reused worker process, so the count is also set explicitly."""
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        import torch

        torch.set_num_threads(int(threads))


@contextmanager
def _locked(path: Path):
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record(info: dict, status: str, run_dir: str, objective=None, error: str | None = None) -> Path:
    """Write this job's record and rebuild sweep.json from every record so far. Returns sweep.json's path."""
    root = Path(info["sweep_dir"])
    jobs = root / ".jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    write_json(jobs / f"{info['num']}.json", {"num": info["num"], "overrides": info["overrides"], "status": status,
                                               "run_dir": str(run_dir), "objective": objective, "error": error})
    with _locked(root / ".sweep.lock"):
        records = sorted((json.loads(p.read_text()) for p in jobs.glob("*.json")), key=lambda r: r["num"])
        write_json(root / "sweep.json", {"sweep_dir": str(root), "jobs": records})
    return root / "sweep.json"


def run_job(run, cfg: DictConfig, info: dict):
    """`run(cfg)` as one job of a sweep: named, recorded, and never raising (the other jobs must finish)."""
    name_run(cfg, info)
    apply_threads()
    run_dir = cfg.paths.output_dir
    try:
        metrics = run(cfg)
    except Exception as exc:  # noqa: BLE001 - any failure of one job is recorded, not fatal to the sweep
        if isinstance(exc, UserError):  # the user's mistake: its message alone (zoo.errors)
            print(short(exc), file=sys.stderr)
        else:
            traceback.print_exc()
        last = (str(exc).strip().splitlines() or [""])[-1]
        path = record(info, "failed", run_dir, error=f"{type(exc).__name__}: {last}")
        print(f"[zoo] sweep job {info['num']} failed; recorded in {path}")
        return None
    objective = metrics.get(cfg.objective) if cfg.get("objective") else None
    record(info, "ok", run_dir, objective=objective)
    return objective
