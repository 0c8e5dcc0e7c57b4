"""The pairwise LM judge: P("A") vs P("B") as a causal LM's next token under a principle, and the position
debiasing that averages both presentation orders."""

from __future__ import annotations

import torch

from zoo.generation import as_text
from zoo.judges.scorer import user_text

PAIRWISE_TEMPLATE = (
    "Here is a request and two responses.\n\nRequest: {prompt}\n\nResponse A: {a}\n\nResponse B: {b}\n\n"
    "{principle}\nAnswer with the single letter A or B.")
DEFAULT_PRINCIPLE = "Which response is more helpful, honest and harmless?"


def debias(p_first: torch.Tensor, p_first_swapped: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Average both presentation orders: P(a > b) = (P(A | a, b) + 1 - P(A | b, a)) / 2.

    A pure position bias (the judge says "A" with probability q whatever the content) cancels to 0.5.
    Returns the debiased probabilities and the position consistency: the share of items whose preferred
    response is the same in both orders.
    """
    p = (p_first + (1.0 - p_first_swapped)) / 2
    consistent = ((p_first > 0.5) == (p_first_swapped < 0.5)).float().mean().item()
    return p, consistent


class PairwiseLogProbJudge:
    name = "pairwise_logprob"

    def __init__(self, scorer, principle: str = DEFAULT_PRINCIPLE, template: str = PAIRWISE_TEMPLATE):
        self.scorer, self.principle, self.template = scorer, principle, template
        self.position_consistency: float | None = None

    def questions(self, prompts, firsts, seconds) -> list[str]:
        return [self.template.format(prompt=user_text(p), a=as_text(a), b=as_text(b), principle=self.principle)
                for p, a, b in zip(prompts, firsts, seconds)]

    def first_probs(self, prompts, firsts, seconds, **columns) -> list[float]:
        """P("A"): the judge's answer with `firsts` shown as response A, one order only, not debiased. A judge
        quality check (zoo.eval.judge_quality) asks it in both orders to see the position bias that judge() hides."""
        return self.scorer.choice_probs(self.questions(prompts, firsts, seconds), ["A", "B"])[:, 0].tolist()

    def judge(self, prompts, completions_a, completions_b, **columns) -> list[float]:
        """Soft label per item: P(completion_a is better than completion_b), position-debiased. Extra dataset
        columns are accepted (every judge takes them) and not shown to the judge model."""
        forward = torch.tensor(self.first_probs(prompts, completions_a, completions_b))
        swapped = torch.tensor(self.first_probs(prompts, completions_b, completions_a))
        p, self.position_consistency = debias(forward, swapped)
        return p.tolist()
