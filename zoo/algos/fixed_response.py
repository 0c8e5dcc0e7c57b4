"""A fixed response (no training): every prompt is answered with `algo.response`, whatever it asks.

The constant-policy reference points of a comparison, scored by the same harness as trained policies: on the safety
task, "always refuse" (an apology and a refusal) and "never refuse" (one compliant answer) mark the ends of the
harmless / helpful trade-off a trained policy must be placed between (sweeps/rbr_f1.yaml). The stage changes no
weights; the harness decodes the evaluated policy as the response (zoo.eval.fixed_response), reports its exact KL
to the run's baseline (-log p_baseline(response | prompt)) and its fluency under it, and runs no probes (one text
answers every probe alike).
"""

from __future__ import annotations

from transformers import TrainingArguments

from zoo.algos.base import Context
from zoo.checks import require
from zoo.eval.fixed_response import FixedResponse

CONFIG_CLASS = TrainingArguments  # trainer.* (seed, precision) only: nothing is optimised
PRODUCES = "policy"
EXTRA_KEYS = ("response",)


def check_config(algo, path: str) -> None:
    response = algo.get("response")
    require(isinstance(response, str) and response.strip() != "",
            f"{path}.response={response!r}: expected the text to answer every prompt with (a non-empty string)")


def decoder(model, algo, named: list, gold_fn) -> FixedResponse:
    """The evaluated policy: `algo.response` for every prompt."""
    return FixedResponse(model, str(algo.response))


def train(ctx: Context):
    return ctx.policy.model, {}
