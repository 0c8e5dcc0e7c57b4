"""Every random stream of a run, by name, and the seed each one is drawn from: the one module that seeds anything.

Two config seeds fix a run. `data.seed` fixes what the rows are: the built-in tasks' rows, the train/eval split,
the pairs a reward model holds out. `trainer.seed` fixes what training draws: new adapter and value-head weights,
batch order, and every sample a stage takes from a policy. `STREAMS` below is the table (docs/configs.md#seeds
renders it): each stream's name, the config seed it derives from, how, and what it fixes. Code asks for a stream
by name (`seed_for`, `rng`, `generator`) instead of adding offsets of its own; the formulas keep the values the
streams had before they were named here (the rows and eval prompts of earlier runs are the same). Sampling no longer
leaves the global generator reseeded, though, so what a stage draws after sampling (a LoRA init after the pairs)
differs from runs committed before that change: those replay from their commit, not from this one.

Streams that draw from a generator they own (`rng`, `generator`) leave the global state alone. Hugging Face
`generate` and TRL's trainers draw from torch's global generator; `drawing(seed)` seeds it for one block and puts
the previous state back afterwards, so sampling (a pair, a rollout, a curve point) never moves the stream
training continues on, and `preserved()` does the same for code that seeds itself.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Stream:
    base: str  # the config seed it derives from
    derive: Callable[..., int | str]  # (base seed, **indices) -> the stream's seed
    fixes: str  # what it decides, for the docs table


STREAMS: dict[str, Stream] = {
    # rows (data.seed)
    "data.split": Stream("data.seed", lambda s: s, "the train/eval split: which rows are held out as eval prompts"),
    "task.rows": Stream("data.seed", lambda s: s, "a built-in task's rows (prompts, problems, safety order)"),
    "task.sft_completions": Stream("data.seed", lambda s: s + 1,
                                   "sentiment: which continuation (positive/negative/neutral) each SFT prompt gets"),
    "task.wrong_answers": Stream("data.seed", lambda s: s + 7,
                                 "arithmetic: the off-by-k answer of each rejected completion"),
    "task.rbr_fills": Stream("data.seed", lambda s: s, "safety: the template responses RBR is fitted on"),
    "pairs.held_out": Stream("data.seed", lambda s: s, "which preference pairs a reward model holds out"),
    "pairs.unpaired": Stream("data.seed", lambda s: s, "KTO: which pairs keep one side only, and the row order"),
    "probe.sycophancy": Stream("eval.seed", lambda s: f"sycophancy-claims:{s}",
                               "the sycophancy probe's wrong claims"),
    "probe.capability": Stream("eval.seed", lambda s, salt: f"{salt}:{s}",
                               "the capability probe's problems"),
    # training draws (trainer.seed)
    "run": Stream("trainer.seed", lambda s: s, "python/numpy/torch global state at the start of every stage: "
                                               "new adapter and value-head weights, TRL's batch order and sampling"),
    "pairs.samples": Stream("trainer.seed", lambda s: s, "the policy samples ranked or judged into pairs"),
    "judge.noise": Stream("trainer.seed", lambda s: s, "a noisy judge (`judge.noise`): which pairs it labels the "
                                                       "wrong way (hashed with the prompt and the pair)"),
    "judge_check.samples": Stream("trainer.seed", lambda s: s, "the policy samples ranked by gold that a judge is "
                                                               "checked on"),
    "online_dpo.round": Stream("trainer.seed", lambda s, round: s + round,
                               "online DPO: round r's policy samples"),
    "cai.responses": Stream("trainer.seed", lambda s: s, "SL-CAI: the original responses and principle draws"),
    "cai.critiques": Stream("trainer.seed", lambda s, round: s + 1 + 2 * round, "SL-CAI: round r's critiques"),
    "cai.revisions": Stream("trainer.seed", lambda s, round: s + 2 + 2 * round, "SL-CAI: round r's revisions"),
    "ppo.prompt_order": Stream("trainer.seed", lambda s, epoch: s + epoch,
                               "PPO: the prompt order of each pass over the data"),
    "ppo.rollout": Stream("trainer.seed", lambda s, step, rank: s * 100003 + step + 7919 * rank,
                          "PPO: iteration `step`'s rollouts on process `rank`"),
    "ppo.minibatches": Stream("trainer.seed", lambda s, step: s * 100003 + step,
                              "PPO: iteration `step`'s mini-batch order"),
    "ppo.ptx": Stream("trainer.seed", lambda s, step, update, rank: s * 100003 + step * 1009 + update * 31 + rank,
                      "PPO-ptx: the supervised rows of each update's ptx term"),
    "eval.sampling": Stream("eval.seed", lambda s: s, "the harness's samples (the same for every column)"),
    "tiny_model": Stream("-", lambda s: s, "the tiny test model's random weights (seed 0)"),
}


def seed_for(stream: str, base: int, **indices) -> int | str:
    """The seed of `stream` from its config seed `base` (and its indices: round, step, rank, epoch)."""
    return STREAMS[stream].derive(base, **indices)


def rng(stream: str, base: int, **indices) -> random.Random:
    """A Python generator of its own for `stream` (the global `random` state is not touched)."""
    return random.Random(seed_for(stream, base, **indices))


def generator(stream: str, base: int, **indices):
    """A torch CPU generator of its own for `stream`."""
    import torch

    return torch.Generator().manual_seed(int(seed_for(stream, base, **indices)))


def seed_all(seed: int) -> None:
    """The `run` stream: python, numpy and torch (every device) seeded at once, as transformers.set_seed does."""
    from transformers import set_seed

    set_seed(seed)


@contextmanager
def preserved():
    """Whatever runs inside may reseed python, numpy or torch; the states from before are back afterwards."""
    import numpy as np
    import torch

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


@contextmanager
def drawing(seed: int | None):
    """torch's global generator seeded with `seed` inside the block (for code that takes no generator: Hugging
    Face `generate`, a model's weight init), restored afterwards; `seed=None` draws from the current state."""
    import torch

    if seed is None:
        yield
        return
    with preserved():
        torch.manual_seed(int(seed))
        yield
