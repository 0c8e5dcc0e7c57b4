"""W&B for a run (offline unless the user says otherwise), and the environment record every run writes."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def environment(cfg: DictConfig) -> dict:
    import accelerate
    import datasets
    import peft
    import torch
    import transformers
    import trl

    device = "cpu"
    if torch.cuda.is_available() and not cfg.trainer.get("use_cpu", False):
        device = f"cuda ({torch.cuda.get_device_name(0)} x{torch.cuda.device_count()})"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),  # OMP_NUM_THREADS, when set, shows here: run times depend on it
        "device": device,
        "world_size": int(os.environ.get("WORLD_SIZE", 1)),  # zoo.launch processes: the global batch scales
        "seed": cfg.trainer.seed,
        "data_seed": cfg.data.seed,
        "versions": {m.__name__: m.__version__ for m in (torch, transformers, trl, peft, datasets, accelerate)},
        "argv": sys.argv,
        "code": code_version(),
    }


def code_version() -> dict | None:
    """The zoo's git commit and whether the checkout had uncommitted changes (None outside a git checkout): the code
    a run dir replays from."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def report_to(cfg: DictConfig) -> list[str]:
    return ["wandb"] if cfg.logger.backend == "wandb" else []


def start(cfg: DictConfig, out_dir: Path):
    """Open the run's W&B run; TRL's `report_to=wandb` callback logs into it. Returns None for logger=none."""
    # Under zoo.launch (torchrun / accelerate launch set RANK) one W&B run per run, from the main process.
    if cfg.logger.backend != "wandb" or int(os.environ.get("RANK", 0)) != 0:
        return None
    # Offline by default: nothing leaves the machine and no API key is needed (nor ever written by the zoo).
    # logger.mode defaults to $WANDB_MODE (else offline), and an explicit logger.mode=... wins over the variable.
    offline = cfg.logger.mode == "offline"
    if offline:
        # Offline, W&B's own lines are noise (TRL's model card asks for the run's URL at every checkpoint, and an
        # offline run warns it has none); the zoo says in one line where the run is and how to upload it.
        # Read when W&B first sets up in this process; WANDB_SILENT=false keeps its lines.
        os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    run = wandb.init(
        mode=cfg.logger.mode,
        project=cfg.logger.project,
        group=cfg.logger.group,
        name=cfg.logger.run_name,
        dir=str(out_dir),
        config=OmegaConf.to_container(cfg, resolve=True),
        reinit="finish_previous",
    )
    if offline and run is not None:
        print(f"[zoo] W&B offline run in {Path(run.dir).parent}; `wandb sync` that directory to upload it")
    return run


def finish(run, metrics: dict | None) -> None:
    if run is None:
        return
    if metrics:
        run.summary.update({k: v for k, v in metrics.items() if v is not None})
    run.finish()
