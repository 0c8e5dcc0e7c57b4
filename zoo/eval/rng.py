"""Measuring must not move training's random streams: sampling reseeds the generators."""

from __future__ import annotations

import random
from contextlib import contextmanager

import torch


@contextmanager
def preserved_rng():
    """Sampling reseeds torch's generator; training must continue on the stream it was on."""
    import numpy as np

    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])
