"""Pairwise and pointwise judges, with position debiasing for the pairwise ones."""

from __future__ import annotations

import math

import torch

from zoo.generation import as_text, render_prompt

PAIRWISE_TEMPLATE = (
    "Here is a request and two responses.\n\nRequest: {prompt}\n\nResponse A: {a}\n\nResponse B: {b}\n\n"
    "{principle}\nAnswer with the single letter A or B.")
POINTWISE_TEMPLATE = (
    "Here is a request and a response.\n\nRequest: {prompt}\n\nResponse: {response}\n\n{principle}\n"
    "Rate the response from 1 (worst) to 10 (best). Answer with the number only.")
DEFAULT_PRINCIPLE = "Which response is more helpful, honest and harmless?"


def _user_text(prompt) -> str:
    if isinstance(prompt, list):
        return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
    return prompt


class LogProbScorer:
    """Probabilities of single-token answers (e.g. "A"/"B", "1".."9") as the next token of a chat model."""

    def __init__(self, model, tokenizer, batch_size: int = 8):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    def token_id(self, text: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"judge answer {text!r} is {len(ids)} tokens for this tokenizer; need exactly one")
        return ids[0]

    @torch.no_grad()
    def choice_probs(self, questions: list[str], choices: list[str]) -> torch.Tensor:
        """[N, len(choices)]: next-token probabilities renormalised over `choices`."""
        ids = [self.token_id(c) for c in choices]
        texts = [render_prompt(self.tokenizer, [{"role": "user", "content": q}]) for q in questions]
        out = []
        device = next(self.model.parameters()).device
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[start: start + self.batch_size], add_special_tokens=False, padding=True,
                                 padding_side="left", return_tensors="pt").to(device)
            logits = self.model(**enc).logits[:, -1].float()
            out.append(torch.softmax(logits[:, ids], dim=-1).cpu())
        return torch.cat(out)


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
    def __init__(self, scorer, principle: str = DEFAULT_PRINCIPLE, template: str = PAIRWISE_TEMPLATE):
        self.scorer, self.principle, self.template = scorer, principle, template
        self.position_consistency: float | None = None

    def questions(self, prompts, firsts, seconds) -> list[str]:
        return [self.template.format(prompt=_user_text(p), a=as_text(a), b=as_text(b), principle=self.principle)
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


class PointwiseScoreJudge:
    """Expected score over the answer tokens "1".."9" (and "10" where the tokenizer has it as one token)."""

    def __init__(self, scorer, principle: str = "How good is this response?", template: str = POINTWISE_TEMPLATE):
        self.scorer, self.principle, self.template = scorer, principle, template
        self.levels = [str(i) for i in range(1, 10)]
        try:
            scorer.token_id("10")
            self.levels.append("10")
        except ValueError:
            pass
        self.__name__ = "pointwise_judge"

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        questions = [self.template.format(prompt=_user_text(p), response=as_text(c), principle=self.principle)
                     for p, c in zip(prompts, completions)]
        probs = self.scorer.choice_probs(questions, self.levels)
        values = torch.tensor([float(v) for v in self.levels])
        return (probs * values).sum(-1).tolist()


class RewardModelJudge:
    """P(a > b) = sigmoid(r(a) - r(b)) under a reward function (a trained reward model, typically)."""

    def __init__(self, reward_fn):
        self.reward_fn = reward_fn

    def judge(self, prompts, completions_a, completions_b, **columns) -> list[float]:
        ra, rb = self.reward_fn(prompts, completions_a, **columns), self.reward_fn(prompts, completions_b, **columns)
        return [0.5 if a is None or b is None else 1 / (1 + math.exp(-(a - b))) for a, b in zip(ra, rb)]


class RuleJudge:
    """Hard labels from any reward function (a rule set, RBR, a verifier): 1, 0, or 0.5 on ties."""

    def __init__(self, reward_fn):
        self.reward_fn = reward_fn

    def judge(self, prompts, completions_a, completions_b, **columns) -> list[float]:
        ra, rb = self.reward_fn(prompts, completions_a, **columns), self.reward_fn(prompts, completions_b, **columns)
        return [0.5 if a is None or b is None or a == b else float(a > b) for a, b in zip(ra, rb)]
