"""One home for the third-party messages the zoo silences, each beside the reason it is safe to: a first run shows
the zoo's own lines and progress bars. Anything not listed here still prints (tests/test_quiet.py runs a tiny
pipeline and fails on any warning it does not expect). A leaf: imports nothing from the zoo.
"""

from __future__ import annotations

import logging
import os
import warnings


def install() -> None:
    """Called by the entry points (zoo.train, zoo.worker, zoo.launch) before anything heavy is imported."""
    # peft imports bitsandbytes whenever it is installed (a QLoRA run needs it), and bitsandbytes logs at import
    # that the optional `kernels` package is missing, then uses its own CPU 4-bit kernel, which the QLoRA tests run.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # transformers renamed gradient checkpointing to activation checkpointing; peft and TRL 1.16 still read the old
    # property on every model they wrap. The zoo's own configs use the new name (conf/trainer/*.yaml).
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    # ORPO, CPO and SimPO exist only under trl.experimental in TRL 1.16; the zoo pins TRL, imports them in one place
    # (zoo/algos/experimental.py) and tests each of them, so the "unstable API" notice tells a user nothing.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    # Hydra's optuna sweeper logs one "setup plugin" line per alembic/optuna module at INFO on first use.
    for name in ("alembic", "alembic.runtime.migration", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
