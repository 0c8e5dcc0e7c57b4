"""What both benchmark workers share: the step timer and the memory probes.

Imported only inside a worker process (it pulls in transformers), never by the driver's top level, so the
plain-TRL worker pays for exactly what a plain TRL script would import.
"""

from __future__ import annotations

import resource
import time

from transformers import TrainerCallback


def current_rss_mb() -> float:
    """Resident set size right now (VmRSS), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step, plus the peak RSS taken the moment training ends.

    `step_s` is on_step_begin -> on_step_end (forward, backward, clip, optimizer and scheduler step: the
    trainer's own work). `interval_s` is on_step_end -> next on_step_end, which also covers fetching and
    collating the next batch and logging, i.e. what a user waits per step.
    """

    def __init__(self):
        self.step_s: list[float] = []
        self.interval_s: list[float] = []
        self.train_s = self.peak_rss_mb = self.rss_train_begin_mb = float("nan")
        self._t_step = self._t_last_end = self._t_train = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.rss_train_begin_mb = current_rss_mb()
        self._t_train = self._t_last_end = time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self._t_step = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.step_s.append(now - self._t_step)
        self.interval_s.append(now - self._t_last_end)
        self._t_last_end = now

    def on_train_end(self, args, state, control, **kwargs):
        self.peak_rss_mb = peak_rss_mb()  # before anything else (export, eval) can raise it
        self.train_s = time.perf_counter() - self._t_train

    def result(self) -> dict:
        return {
            "step_s": self.step_s,
            "interval_s": self.interval_s,
            "train_s": self.train_s,
            "peak_rss_mb": self.peak_rss_mb,
            "rss_train_begin_mb": self.rss_train_begin_mb,
            "t_train_begin": self._t_train,  # perf_counter value, for the worker's setup time
        }


class IterationTimer(StepTimer):
    """StepTimer for trainers whose loop may skip on_step_begin (the zoo's PPOTrainer calls only on_step_end).

    `interval_s` (on_train_begin or the previous on_step_end -> this on_step_end) is the per-iteration wall time
    and is recorded for every trainer; `step_s` only where on_step_begin fires (transformers.Trainer loops).
    """

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self._t_step is not None:
            self.step_s.append(now - self._t_step)
            self._t_step = None
        self.interval_s.append(now - self._t_last_end)
        self._t_last_end = now


def spread(xs: list[float]) -> dict:
    """Median, mean, min, max and sample stdev of a list of measurements."""
    import statistics

    return {"median": statistics.median(xs), "mean": statistics.fmean(xs), "min": min(xs), "max": max(xs),
            "stdev": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


def add_worker_args(ap, sides) -> None:
    """The hidden arguments run_worker passes to a bench module's worker process (with its visible --out)."""
    import argparse
    from pathlib import Path

    ap.add_argument("--worker", choices=sides, help=argparse.SUPPRESS)
    ap.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)


def run_worker(module: str, side: str, spec_path, scratch, tag: str, threads: int | None = None,
               extra_env: dict | None = None, timeout: int = 1800) -> dict:
    """Run `python -m <module> --worker <side>` in a fresh process (its own workdir under `scratch`) and return its
    result JSON plus `process_s`; on failure, print the end of its log and stop the bench."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    workdir = Path(scratch) / tag
    workdir.mkdir()
    out, log = workdir / "result.json", workdir / "worker.log"
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}), **(extra_env or {})}
    t = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-m", module, "--worker", side, "--spec", str(spec_path),
                               "--workdir", str(workdir), "--out", str(out)],
                              cwd=Path(__file__).resolve().parents[1], stdout=f, stderr=subprocess.STDOUT,
                              timeout=timeout, env=env)
    if proc.returncode != 0:
        sys.stderr.write(log.read_text()[-6000:])
        raise SystemExit(f"bench: {module} {side} worker failed (exit {proc.returncode}); log above")
    res = json.loads(out.read_text())
    res["process_s"] = time.perf_counter() - t
    return res


def write_result(result: dict, path) -> None:
    """Write the result JSON atomically (a killed bench never leaves a truncated file behind)."""
    import json
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)


def machine(loadavg_before) -> dict:
    """The CPU a bench ran on (model name, the vector/matrix flags that pick code paths) and how busy it was."""
    import os
    from pathlib import Path

    lines = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "unknown")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    return {"cpu": model, "flags": sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2"))),
            "cores": os.cpu_count(), "loadavg_before": loadavg_before, "loadavg_after": os.getloadavg()}


def versions() -> dict:
    import sys
    from importlib.metadata import version

    return {"python": sys.version.split()[0],
            **{p: version(p) for p in ("torch", "transformers", "trl", "peft", "accelerate")}}
