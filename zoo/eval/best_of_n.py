"""Best-of-n decoding: n samples per prompt from a policy, the one a scorer ranks highest kept.

It is the baseline every RL method is measured against (Nakano et al. 2021; Gao et al. 2022): no weights change,
all the optimisation is done at decoding time against the scorer (a reward function, a reward model, the task's
gold). Its KL to the policy it samples from is known in closed form, KL = log n - (n - 1) / n nats (Stiennon et
al. 2020, appendix), so a best-of-n point sits on a reward-vs-KL plane beside trained policies without estimating
it from samples.

`BestOfN` stands wherever the harness takes a policy (`zoo.eval.harness.evaluate`, curve points): it samples with
the harness's decoding settings and seed and reports the analytic KL. The samples for the largest n are drawn once
per (prompts, decoding settings) and shared by the smaller n of the same pool (`with_n`): best-of-n reads the first
n of them, which are n independent samples, so a curve over n = 1, 2, 4, ... costs one pass of the largest n. The
last pool drawn is also kept by the weights it came from (`_last_draw`): a run reloads its policy after each stage,
so the final harness's best-of-n decoder, a new object over the same weights, reuses the curve's draw.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

from zoo.generation import Samples, sample


def analytic_kl(n: int) -> float:
    """KL(best-of-n || policy) in nats: log n - (n - 1) / n (0 at n = 1)."""
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def pick(scores: list[float | None], n: int, pool: int) -> list[int]:
    """Index (into a flat list of `pool` samples per prompt) of the best of each prompt's first `n`; a None score
    (the scorer could not judge it) ranks last, ties go to the earlier sample."""
    chosen = []
    for start in range(0, len(scores), pool):
        window = [(-math.inf if s is None else float(s), -i) for i, s in enumerate(scores[start: start + n])]
        chosen.append(start - max(window)[1])
    return chosen


# The last pools drawn, newest last: {(weights fingerprint, decoding key): Samples}. The final harness reuses its
# curve's pool, and a sweep's jobs that share a policy (best-of-n on the same SFT seed against reward models of
# several sizes) reuse each other's: the same weights and decoding key would draw the same samples again.
_POOLS: OrderedDict = OrderedDict()
KEEP_POOLS = 4


def fingerprint(model) -> tuple:
    """The weights' identity by content (shape and float64 sum of every parameter): a reloaded copy of the same
    weights matches, a step of training does not."""
    with torch.no_grad():
        return tuple((tuple(p.shape), p.detach().double().sum().item()) for p in model.parameters())


def _last_draw(model, key: tuple, draw) -> Samples:
    """`draw()` unless one of the last KEEP_POOLS pools was drawn from these weights with this decoding key."""
    full = (fingerprint(model), key)
    if full in _POOLS:
        _POOLS.move_to_end(full)
    else:
        _POOLS[full] = draw()
        while len(_POOLS) > KEEP_POOLS:
            _POOLS.popitem(last=False)
    return _POOLS[full]


class BestOfN:
    """A policy `model` decoded best-of-`n` under `scorer` (prompts, completions, **columns) -> scores."""

    def __init__(self, model, scorer, n: int, *, pool_size: int | None = None, _pools: dict | None = None):
        if scorer is None:
            raise ValueError("best-of-n needs a scorer to rank the samples with")
        self.model, self.scorer, self.n = model, scorer, int(n)
        self.pool_size = max(int(pool_size or n), self.n)
        self._pools = {} if _pools is None else _pools  # shared with with_n: one draw for every n of a curve
        self.kl = analytic_kl(self.n)

    def with_n(self, n: int) -> "BestOfN":
        return BestOfN(self.model, self.scorer, n, pool_size=self.pool_size, _pools=self._pools)

    def sample(self, tokenizer, prompts: list, columns: dict, *, max_new_tokens: int, temperature: float,
               top_p: float, batch_size: int, seed: int | None, progress: str | None = None) -> Samples:
        """The chosen completion of each prompt, as `zoo.generation.sample` returns samples."""
        key = (tuple(map(str, prompts)), max_new_tokens, temperature, top_p, seed)
        if key not in self._pools:
            pool = _last_draw(self.model, (*key, self.pool_size), lambda: sample(
                self.model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature or 1.0,
                top_p=top_p, num_return_sequences=self.pool_size, batch_size=batch_size, seed=seed,
                progress=progress))
            repeated = {k: [v for v in values for _ in range(self.pool_size)] for k, values in columns.items()}
            self._pools[key] = (pool, list(self.scorer(pool.prompts, pool.completions, **repeated)))
        pool, scores = self._pools[key]
        chosen = pick(scores, self.n, self.pool_size)
        return Samples(prompts=list(prompts), prompt_ids=[pool.prompt_ids[i] for i in chosen],
                       completion_ids=[pool.completion_ids[i] for i in chosen],
                       completions=[pool.completions[i] for i in chosen], finished=[pool.finished[i] for i in chosen])
