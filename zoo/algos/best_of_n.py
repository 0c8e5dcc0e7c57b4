"""Best-of-n (no training): each prompt's answer is the best of `n` samples from the starting policy under the run's
reward — `reward.functions`, the reward model of an earlier `rm` stage, or else the task's gold signal, as for PPO.

The stage changes no weights; the harness decodes the evaluated policy best-of-n (zoo.eval.best_of_n) and reports
its analytic KL, log n - (n - 1) / n, against the policy it samples from, which is therefore the run's baseline
(`eval.baseline`: `start`, or the stage before this one). With a curve (`eval.every_steps` / `eval.at_steps`: any
value turns it on) it also writes one curve point per n in 1, 2, 4, ... up to `n` (the point's `step` is its n),
drawn from one pool of `n` samples per prompt: the reward-vs-KL path of best-of-n beside trained policies.
"""

from __future__ import annotations

from transformers import TrainingArguments

from zoo.algos.base import Context
from zoo.algos.online import reward_to_optimise
from zoo.checks import number
from zoo.eval.best_of_n import BestOfN, analytic_kl
from zoo.rewards import WeightedSum, usage

CONFIG_CLASS = TrainingArguments  # trainer.* (seed, precision) only: nothing is optimised
PRODUCES = "policy"
EXTRA_KEYS = ("n",)


def check_config(algo, path: str) -> None:
    number(algo, "n", path, lambda v: v >= 1, "an integer >= 1 (samples per prompt; 1 is the policy itself)",
           integer=True)


def ladder(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return out + [n]


def scorer(named: list, gold_fn):
    """The run's reward as one function (a weighted sum of several), else the gold."""
    if not named:
        return gold_fn
    return named[0][2] if len(named) == 1 and named[0][1] == 1.0 else WeightedSum(named)


def decoder(model, algo, named: list, gold_fn) -> BestOfN:
    """The evaluated policy: `model` decoded best-of-`algo.n` under the run's reward."""
    return BestOfN(model, scorer(named, gold_fn), int(algo.n))


def train(ctx: Context):
    named = reward_to_optimise(ctx)  # (name, weight, fn); the gold when the run has no reward
    best = BestOfN(ctx.policy.model, scorer(named, None), int(ctx.algo.n))
    usage.declare(best.scorer)  # what the evaluated policy is optimised against (at decoding time)
    if ctx.curve is not None:
        ctx.curve.begin_stage(ctx.stage, 0)
        for n in ladder(best.n):
            ctx.curve.measure(best.with_n(n), ctx.stage, n)
    return ctx.policy.model, {f"{ctx.stage}/n": best.n, f"{ctx.stage}/analytic_kl": analytic_kl(best.n)}
