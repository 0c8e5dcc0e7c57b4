"""What both benchmark workers share: the step timer and the memory probes.

Imported only inside a worker process (it pulls in transformers), never by the driver's top level, so the
plain-TRL worker pays for exactly what a plain TRL script would import.
"""

from __future__ import annotations

import logging
import resource
import time
from contextlib import contextmanager

# Importing transformers imports bitsandbytes, whose CPU backend logs that the optional `kernels` package is missing
# (zoo/quiet.py silences the same line in a run): silenced here too, so that a bench's one-line refusals stay one line.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from transformers import TrainerCallback  # noqa: E402


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


def _clock() -> float:
    """perf_counter once the GPU has finished the work queued so far (CUDA kernels run asynchronously: without the
    wait a step would be timed when its kernels were queued, not run). On a CPU run, just perf_counter."""
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


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
        self._t_train = self._t_last_end = _clock()

    def on_step_begin(self, args, state, control, **kwargs):
        self._t_step = _clock()

    def on_step_end(self, args, state, control, **kwargs):
        now = _clock()
        self.step_s.append(now - self._t_step)
        self.interval_s.append(now - self._t_last_end)
        self._t_last_end = now

    def on_train_end(self, args, state, control, **kwargs):
        self.peak_rss_mb = peak_rss_mb()  # before anything else (export, eval) can raise it
        self.train_s = _clock() - self._t_train

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
        now = _clock()
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
               extra_env: dict | None = None, timeout: int = 1800, load: "LoadLog | None" = None,
               check: bool = True) -> dict:
    """Run `python -m <module> --worker <side>` in a fresh process (its own workdir under `scratch`) and return its
    result JSON plus `process_s`; on failure, print the end of its log and stop the bench (check=False: return
    {"error": the log's end, "returncode": ...} instead). `load`: the bench's LoadLog, which records how busy the
    machine was around this run."""
    import json
    import os
    import subprocess
    import sys
    from contextlib import nullcontext
    from pathlib import Path

    workdir = Path(scratch) / tag
    workdir.mkdir()
    out, log = workdir / "result.json", workdir / "worker.log"
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}), **(extra_env or {})}
    with load.side(tag) if load is not None else nullcontext():
        t = time.perf_counter()
        with open(log, "w") as f:
            proc = subprocess.run([sys.executable, "-m", module, "--worker", side, "--spec", str(spec_path),
                                   "--workdir", str(workdir), "--out", str(out)],
                                  cwd=Path(__file__).resolve().parents[1], stdout=f, stderr=subprocess.STDOUT,
                                  timeout=timeout, env=env)
        process_s = time.perf_counter() - t
    if proc.returncode != 0:
        if not check:
            return {"error": log.read_text()[-3000:], "returncode": proc.returncode, "process_s": process_s}
        sys.stderr.write(log.read_text()[-6000:])
        raise SystemExit(f"bench: {module} {side} worker failed (exit {proc.returncode}); log above")
    res = json.loads(out.read_text())
    res["process_s"] = process_s
    return res


# ----------------------------------------------------------------------------------------------- a quiet machine
# Every bench records how busy the machine was around each side (a run of one configuration) and marks its result
# `noisy` when something else was using the CPU: with every core busy, torch's OpenMP threads wait on descheduled
# peers (small ops were measured ~100x slower beside a 2-core job), so such numbers are not comparable.
LOADED_PER_CORE = 0.5  # load per core above which a side's numbers are marked noisy
REQUIRE_QUIET_ENV = "PREFZOO_BENCH_REQUIRE_QUIET"  # =1: as --require-quiet, for every bench (e.g. under make bench)


def add_quiet_arg(ap) -> None:
    """Every bench's --require-quiet (default: the PREFZOO_BENCH_REQUIRE_QUIET variable)."""
    import os

    ap.add_argument("--require-quiet", action="store_true",
                    default=os.environ.get(REQUIRE_QUIET_ENV, "") not in ("", "0"),
                    help=f"refuse to start (exit 2) while the machine is busy: more than {LOADED_PER_CORE} load per "
                         f"core (also ${REQUIRE_QUIET_ENV}=1)")


def parse_args(ap, argv, sides, worker):
    """Add the flags every bench shares (--require-quiet, the hidden worker ones) and parse. In a worker process
    (`--worker <side>`), run `worker(args)` and return None; in the driver, return the args."""
    add_quiet_arg(ap)
    add_worker_args(ap, sides)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a)
        return None
    return a


def trailer(load: "LoadLog", t_start: float, env: dict, **before) -> dict:
    """The keys that end every bench's result: `before` (how busy the machine was: `machine` or `machine_load`),
    whether any side ran on a busy machine, the load log, the versions, and the bench's own wall time."""
    return {**before, "noisy": load.noisy, "load": load.result(), "env": env,
            "bench_seconds": time.perf_counter() - t_start}


def others_busy_per_core(window_s: float = 1.0) -> float | None:
    """The share of the machine's CPU time spent busy over the next `window_s` seconds (0: idle, 1: every core busy),
    from /proc/stat; None where it cannot be read. The bench waits meanwhile, so this is the other processes' load.

    Why not only the load average: its 1-minute figure decays with a one-minute time constant, so just after a side
    that kept both cores busy it still reads ~1 per core on an idle machine, and would mark every side after the
    first noisy. It is recorded beside this."""
    def busy_total() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)

    try:
        busy0, total0 = busy_total()
        time.sleep(window_s)
        busy1, total1 = busy_total()
    except (OSError, ValueError, IndexError):
        return None
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


class LoadLog:
    """How busy the machine was at a bench's start and around each of its sides, for the result JSON (`result()`).

    Before each side: the load averages and the other processes' CPU use (`others_busy_per_core`); the side is
    `noisy` when that use exceeds LOADED_PER_CORE (where /proc/stat cannot be read: the 1-minute load per core).
    After it: the load averages again. A noisy side prints a one-line warning."""

    def __init__(self, name: str, limit: float = LOADED_PER_CORE):
        import os

        self.name, self.limit, self.cores = name, limit, os.cpu_count() or 1
        self.at_start = self._reading()
        self.sides: list[dict] = []

    def _reading(self) -> dict:
        import os

        load = os.getloadavg()
        return {"loadavg": list(load), "load_1m_per_core": load[0] / self.cores,
                "others_busy_per_core": others_busy_per_core()}

    def _busy(self, reading: dict) -> bool:
        busy = reading["others_busy_per_core"]
        return (busy if busy is not None else reading["load_1m_per_core"]) > self.limit

    def _describe(self, reading: dict) -> str:
        busy = reading["others_busy_per_core"]
        return (f"1-minute load {reading['loadavg'][0]:.2f} on {self.cores} cores"
                + (f", other processes using {busy:.2f} of each core" if busy is not None else "")
                + f"; limit {self.limit} per core")

    def busy_at_start(self) -> bool:
        """Busy now, or over the last minute (nothing of the bench has run yet, so the load average is all others')."""
        return self._busy(self.at_start) or self.at_start["load_1m_per_core"] > self.limit

    def require_quiet(self) -> None:
        """Refuse to start (one line on stderr, exit 2) while the machine is busy."""
        import sys

        if self.busy_at_start():
            print(f"bench.{self.name}: the machine is busy ({self._describe(self.at_start)}) and --require-quiet is "
                  f"set; wait until it is quiet, or run without it (results are then marked noisy)", file=sys.stderr)
            raise SystemExit(2)

    @contextmanager
    def side(self, tag: str):
        """Around one side's run: the readings before (and whether they make it noisy) and the load after."""
        import os

        before = self._reading()
        entry = {"side": tag, "noisy": self._busy(before), "before": before}
        if entry["noisy"]:
            print(f"[bench] WARNING: {tag}: the machine is busy ({self._describe(before)}); marked noisy", flush=True)
        self.sides.append(entry)
        yield entry
        entry["loadavg_after"] = list(os.getloadavg())

    @property
    def noisy(self) -> bool:
        return any(s["noisy"] for s in self.sides)

    def result(self) -> dict:
        return {"noisy": self.noisy, "limit_per_core": self.limit, "cores": self.cores, "at_start": self.at_start,
                "sides": self.sides}


def start_load_log(name: str, require_quiet: bool) -> LoadLog:
    """A bench's LoadLog, read before it does anything; with --require-quiet, refuses to start on a busy machine."""
    log = LoadLog(name)
    if require_quiet:
        log.require_quiet()
    elif log.busy_at_start():
        print(f"[bench] WARNING: the machine is busy ({log._describe(log.at_start)}): timings will be distorted, "
              f"and sides run while it is are marked noisy", flush=True)
    return log


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
    # Settings in the bench's own environment that move its times, when set: glibc's allocator, thread counts, and
    # the instruction sets oneDNN and MKL may dispatch to (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS).
    tuning = {k: v for k, v in os.environ.items()
              if k.startswith(("MALLOC_", "ONEDNN_", "DNNL_", "MKL_")) or k in ("GLIBC_TUNABLES", "OMP_NUM_THREADS")}
    return {"cpu": model, "flags": sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2"))),
            "cores": os.cpu_count(), "loadavg_before": loadavg_before, "loadavg_after": os.getloadavg(),
            **({"environment": tuning} if tuning else {})}


def versions() -> dict:
    import sys
    from importlib.metadata import version

    return {"python": sys.version.split()[0],
            **{p: version(p) for p in ("torch", "transformers", "trl", "peft", "accelerate")}}
