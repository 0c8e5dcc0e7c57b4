"""Judges (TRL 1.x dropped its own): compare or score completions, the AI-feedback half of RLAIF.

  PairwiseLogProbJudge  P("A") vs P("B") as a causal LM's next token under a principle, both orders averaged
  PointwiseScoreJudge   expected 1-10 score over the digit tokens a causal LM would answer with
  RewardModelJudge      sigmoid(r_a - r_b) from a trained reward model
  RuleJudge             any reward function of the shared protocol, compared
Pairwise judges return P(first completion is better) per item and report position consistency. Judges take
their scorers (models, reward functions) as arguments; which ones a run uses is decided in zoo.rlaif.judging.
"""

from zoo.judges.pairwise import (
    LogProbScorer, PairwiseLogProbJudge, PointwiseScoreJudge, RewardModelJudge, RuleJudge, debias,
)

__all__ = ["LogProbScorer", "PairwiseLogProbJudge", "PointwiseScoreJudge", "RewardModelJudge", "RuleJudge",
           "debias"]
