"""Judges made from a reward function of the shared protocol: both completions scored on their own, then compared.
RewardModelJudge gives a soft label from the score difference (a trained reward model, the pointwise LM judge);
RuleJudge a hard one (a rule set, RBR, a verifier, the task's gold signal)."""

from __future__ import annotations

import math

from zoo.data.pairs import scorer_name


class RewardModelJudge:
    """P(a > b) = sigmoid(r(a) - r(b)) under a reward function (a trained reward model, typically)."""

    def __init__(self, reward_fn):
        self.reward_fn = reward_fn
        self.name = f"compared:{scorer_name(reward_fn)}"

    def judge(self, prompts, completions_a, completions_b, **columns) -> list[float]:
        ra, rb = self.reward_fn(prompts, completions_a, **columns), self.reward_fn(prompts, completions_b, **columns)
        return [0.5 if a is None or b is None else self.compare(a, b) for a, b in zip(ra, rb)]

    @staticmethod
    def compare(a: float, b: float) -> float:
        return 1 / (1 + math.exp(-(a - b)))


class RuleJudge(RewardModelJudge):
    """Hard labels from any reward function (a rule set, RBR, a verifier): 1, 0, or 0.5 on ties."""

    def __init__(self, reward_fn):
        super().__init__(reward_fn)
        self.name = f"rule:{scorer_name(reward_fn)}"

    @staticmethod
    def compare(a: float, b: float) -> float:
        return 0.5 if a == b else float(a > b)
