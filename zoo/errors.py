"""The zoo's own exceptions, in a leaf every layer may import, and how an entry point reports a user's mistake.

`UserError` is a mistake in what the user asked for (a config key or value, a data file or row, a model path):
its message names what, where and what was expected, so the entry points print it alone, in a few lines, and exit
with status 2. Anything else is a crash of the zoo or a library and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


class UserError(Exception):
    """A mistake in the user's config, data or paths, worded for the user."""


class ConfigError(UserError, ValueError):
    """A config value or key the zoo rejects before anything loads; the message names the key path."""


class DataError(UserError, ValueError):
    """A problem with the user's data, worded for the user (file, row, what was expected)."""


class ModelLoadError(UserError, RuntimeError):
    """A model that cannot be opened: a missing directory, an unreachable hub id."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; raised before the optimizer step so no bad checkpoint is written."""


MAX_LINES = 5


def short(exc: BaseException) -> str:
    """`exc` as the one message a user reads: "error: " and its text, at most MAX_LINES lines."""
    lines = f"error: {exc}".strip().splitlines()
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES - 1], f"... ({len(lines) - MAX_LINES + 1} more lines; HYDRA_FULL_ERROR=1 shows all)"]
    return "\n".join(lines)


@contextmanager
def reported(cleanup=None):
    """Around an entry point's job: a UserError prints its message to stderr and exits with status 2 (no traceback;
    HYDRA_FULL_ERROR=1 keeps it); `cleanup()` runs first, to remove what the failed job had created."""
    try:
        yield
    except UserError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if cleanup is not None:
            cleanup()
        print(short(exc), file=sys.stderr)
        raise SystemExit(2) from None
