"""The pointwise LM judge: the expected 1-10 score a causal LM answers for one response under a principle. It
scores completions one at a time, so it is a reward function (zoo.rewards.judge's llm_judge) and, compared,
a judge (zoo.judges.from_reward.RewardModelJudge)."""

from __future__ import annotations

import torch

from zoo.generation import as_text
from zoo.judges.scorer import user_text

POINTWISE_TEMPLATE = (
    "Here is a request and a response.\n\nRequest: {prompt}\n\nResponse: {response}\n\n{principle}\n"
    "Rate the response from 1 (worst) to 10 (best). Answer with the number only.")


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
        questions = [self.template.format(prompt=user_text(p), response=as_text(c), principle=self.principle)
                     for p, c in zip(prompts, completions)]
        probs = self.scorer.choice_probs(questions, self.levels)
        values = torch.tensor([float(v) for v in self.levels])
        return (probs * values).sum(-1).tolist()
