"""One process of a `zoo.launch` run: `python -m zoo.worker <run dir>/config.yaml`, started by torchrun or
`accelerate launch` (never by hand, though on one process it is just `zoo.train.run` on a written config).

It reads the config the launcher composed, validated and resolved once, so every rank agrees on it and on the run
dir (no Hydra here: no run-dir race between ranks), joins the process group, and runs the same `run(cfg)` as
`python -m zoo.train`; the main process is the only one that writes the run dir and logs to W&B.
"""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from zoo import dist, quiet
from zoo.sweep import apply_threads


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m zoo.worker <run dir>/config.yaml (started by python -m zoo.launch)")
    cfg = OmegaConf.load(argv[0])
    quiet.install()
    apply_threads()
    dist.init(cpu=bool(cfg.trainer.get("use_cpu", False)))
    from zoo.models import resolve_model_path
    from zoo.train import run

    with dist.main_first():  # builds (converts, downloads) the model cache once, not once per rank
        resolve_model_path(cfg.model, cfg.paths.cache_dir)
    try:
        run(cfg)
    finally:
        import torch.distributed as torch_dist

        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


if __name__ == "__main__":
    main()
