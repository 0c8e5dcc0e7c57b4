"""Many processes and GPUs: `python -m zoo.launch accelerate=<config> <the usual overrides>` (or `zoo-launch`).

The launcher composes the Hydra config once, validates it (every stage's TRL config built, the accelerate config
checked against the trainer group and the algorithms), creates the run dir and writes the resolved config there,
then starts the workers (`python -m zoo.worker <run dir>/config.yaml`) with `accelerate launch` or `torchrun` and
waits for them. A bad value fails here, before any worker starts; the workers never compose, so there is no
Hydra run-dir race and every rank agrees on the run dir. The main worker alone writes metrics, samples, exports
and W&B.

Launcher keys, beside the usual overrides:
  accelerate=<name|file>  conf/accelerate/<name>.yaml (cpu_ddp, single_gpu, multi_gpu_ddp, fsdp, deepspeed_zero2,
                          deepspeed_zero3) or any Accelerate config file
  torchrun=<n>            `torchrun --standalone --nproc_per_node n` instead (no Accelerate config)
  nproc=<n>               processes on this machine, overriding the config's num_processes
  dry_run=true            validate, write the run dir and print the worker command without starting it
  -- <args>               everything after `--` goes to `accelerate launch` / `torchrun` as is
`-m` works as with zoo.train: each job of a sweep (any Hydra launcher: Slurm, Ray) is one multi-process run.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from zoo import config
from zoo.checks import require
from zoo.errors import UserError
from zoo.files import write_json

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
ACCELERATE_DIR = CONF_DIR / "accelerate"
KEYS = ("accelerate", "torchrun", "nproc", "dry_run")
GPU_TYPES = {"NO", "MULTI_GPU", "FSDP", "DEEPSPEED"}
SHARDED_TYPES = {"FSDP", "DEEPSPEED"}
# The zoo's own trainers average gradients themselves (data-parallel only); they do not shard weights.
DDP_ONLY_ALGOS = {"ppo"}


class LaunchError(UserError, RuntimeError):
    """A launch the config or this machine cannot run (plan, Accelerate file, packages), or workers that failed."""


@dataclass
class Plan:
    """How to start the workers: parsed launcher keys plus the Accelerate config they name."""

    accelerate: str | None = None  # the config file
    accelerate_cfg: dict = field(default_factory=dict)
    torchrun: int | None = None
    nproc: int | None = None
    dry_run: bool = False
    extra: list[str] = field(default_factory=list)

    @property
    def distributed_type(self) -> str:
        return "MULTI_CPU" if self.torchrun else str(self.accelerate_cfg.get("distributed_type", "NO"))

    @property
    def num_processes(self) -> int:
        return int(self.nproc or self.torchrun or self.accelerate_cfg.get("num_processes", 1))


def split_argv(argv: list[str]) -> tuple[dict, list[str], list[str]]:
    """(launcher keys, Hydra arguments, arguments after `--` for accelerate launch / torchrun)."""
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1:]
    keys, rest = {}, []
    for arg in argv:
        name = arg.split("=", 1)[0]
        if "=" in arg and name in KEYS:
            keys[name] = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return keys, rest, extra


def accelerate_file(name: str) -> Path:
    path = ACCELERATE_DIR / f"{name}.yaml"
    if path.is_file():
        return path
    if Path(name).expanduser().is_file():
        return Path(name).expanduser().resolve()
    known = sorted(p.stem for p in ACCELERATE_DIR.glob("*.yaml"))
    raise LaunchError(f"accelerate={name!r}: expected one of {known} or an Accelerate config file")


def make_plan(keys: dict, extra: list[str]) -> Plan:
    require(("accelerate" in keys) != ("torchrun" in keys),
            "zoo.launch needs exactly one of accelerate=<config> (conf/accelerate/: "
            f"{sorted(p.stem for p in ACCELERATE_DIR.glob('*.yaml'))}) or torchrun=<processes per node>")
    plan = Plan(extra=list(extra))
    for key in ("torchrun", "nproc"):
        if key in keys:
            require(keys[key].isdigit() and int(keys[key]) >= 1, f"{key}={keys[key]!r}: expected an integer >= 1")
            setattr(plan, key, int(keys[key]))
    require(keys.get("dry_run", "false") in ("true", "false"), f"dry_run={keys.get('dry_run')!r}: expected true/false")
    plan.dry_run = keys.get("dry_run") == "true"
    if "accelerate" in keys:
        plan.accelerate = str(accelerate_file(keys["accelerate"]))
        plan.accelerate_cfg = OmegaConf.to_container(OmegaConf.load(plan.accelerate), resolve=True)
    return plan


def check(cfg: DictConfig, plan: Plan) -> None:
    """Everything that can be refused before a worker starts: the run config (as zoo.train checks it, every stage's
    TRL config built) and whether the Accelerate setup fits it."""
    from zoo.train import _stage_args

    config.validate(cfg)
    built = _stage_args(cfg, Path(cfg.paths.output_dir))
    for stage, args in built.items():
        _check_packages(args, config.stage_path(cfg, stage))
    kind, use_cpu = plan.distributed_type, bool(cfg.trainer.get("use_cpu", False))
    where = f"accelerate={Path(plan.accelerate).stem}" if plan.accelerate else f"torchrun={plan.torchrun}"
    if kind in GPU_TYPES:
        require(not use_cpu, f"{where} runs on GPUs but trainer.use_cpu=true: add trainer=gpu")
    elif kind == "MULTI_CPU" and plan.accelerate:
        require(use_cpu, f"{where} runs on CPUs but trainer.use_cpu=false: use trainer=cpu")
    if kind in SHARDED_TYPES:
        own = sorted({a.name for _, a in config.iter_stages(cfg)} & DDP_ONLY_ALGOS)
        require(not own, f"{where}: algo {own} is the zoo's own trainer, which runs data-parallel only; use "
                         f"accelerate=multi_gpu_ddp (or single_gpu)")
    if kind == "DEEPSPEED":
        import importlib.util

        require(importlib.util.find_spec("deepspeed") is not None,
                f"{where} needs DeepSpeed: pip install deepspeed (on the GPU machine)")


def _check_packages(args, path: str) -> None:
    """GPU knobs of TRL's configs whose package a CPU install does not have: refused here, not in every worker."""
    import importlib.util

    needs = {"use_vllm": ("vllm", "pip install vllm"), "use_liger_kernel": ("liger_kernel", "pip install liger-kernel")}
    for knob, (package, how) in needs.items():
        if getattr(args, knob, False):
            require(importlib.util.find_spec(package) is not None,
                    f"{path}.{knob}=true needs the {package} package, not installed here: {how} (on the GPU machine)")


def command(plan: Plan, config_file: Path) -> list[str]:
    worker = ["-m", "zoo.worker", str(config_file)]
    single_cpu_machine = plan.distributed_type == "MULTI_CPU" and int(plan.accelerate_cfg.get("num_machines", 1)) == 1
    if plan.torchrun or (single_cpu_machine and "--mpirun_hostfile" not in plan.extra):
        # Accelerate starts MULTI_CPU workers through mpirun only; on one machine torchrun does it without MPI.
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(plan.num_processes), *plan.extra, *worker]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", plan.accelerate]
    if plan.nproc:
        cmd += ["--num_processes", str(plan.nproc)]
    return [*cmd, *plan.extra, *worker]


def launch(cfg: DictConfig, plan: Plan) -> dict:
    """Validate, write the run dir, run the workers; returns the run's metrics (from the main worker's
    metrics.json), like zoo.train.run."""
    out = Path(cfg.paths.output_dir).resolve()
    if cfg.resume and (out / "metrics.json").exists():  # as zoo.train.run: a finished run is not started again
        return json.loads((out / "metrics.json").read_text())
    check(cfg, plan)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "config.yaml"
    OmegaConf.set_struct(cfg, False)
    cfg.paths.output_dir = str(out)  # workers may start in another directory (a cluster job's)
    config_file.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    cmd = command(plan, config_file)
    write_json(out / "launch.json", {"command": cmd, "distributed_type": plan.distributed_type,
                                     "num_processes": plan.num_processes, "accelerate_config": plan.accelerate_cfg})
    print(f"[zoo] launch: {shlex.join(cmd)}")
    if plan.dry_run:
        return {}
    returncode = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    if returncode != 0:
        raise LaunchError(f"the workers exited with status {returncode} (their output is above); run dir {out}")
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    from zoo import quiet

    quiet.install()
    import hydra

    from zoo import errors, sweep
    from zoo.train import remove_hydra_leftovers

    keys, hydra_args, extra = split_argv(sys.argv[1:])
    with errors.reported():
        plan = make_plan(keys, extra)

    # An absolute path: a relative one is resolved against the package when this runs as the zoo-launch script.
    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
    def _main(cfg: DictConfig):
        info = sweep.job_info()
        if info is not None:  # one job of -m is one multi-process run, recorded in sweep.json like zoo.train's
            return sweep.run_job(lambda c: launch(c, plan), cfg, info)
        with errors.reported(cleanup=remove_hydra_leftovers):
            metrics = launch(cfg, plan)
        return metrics.get(cfg.objective) if cfg.get("objective") else None

    # -m anywhere on the line, as with the launcher keys (Hydra's parser wants it before the overrides).
    multirun = [a for a in hydra_args if a in ("-m", "--multirun")]
    rest = [a for a in hydra_args if a not in multirun]
    sys.argv = [sys.argv[0], *multirun, *config.normalize_overrides(rest)]
    _main()


if __name__ == "__main__":
    main()
