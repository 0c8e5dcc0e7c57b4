"""Judges (TRL 1.x dropped its own): compare or score completions, the AI-feedback half of RLAIF. A judge's
`judge(prompts, completions_a, completions_b, **columns)` returns P(a is better) per item; its `name` says who
labelled a pair (zoo.data.pairs records it in each preference row).

  scorer.py       LogProbScorer (next-token probabilities of answer tokens) and load_scorer, the one loader of a
                  frozen scorer model (judges here, zoo.rewards' llm_judge and RBR's LLM grader)
  pairwise.py     PairwiseLogProbJudge: P("A") vs P("B") under a principle, both orders averaged (debias)
  pointwise.py    PointwiseScoreJudge: expected 1-10 score over the digit tokens (a reward function)
  from_reward.py  RewardModelJudge (sigmoid(r_a - r_b)) and RuleJudge (hard labels) over any reward function
  noisy.py        NoisyJudge: any judge with each pair's verdict flipped with probability noise (known accuracy)

Judges take their scorers (models, reward functions) as arguments; which ones a run uses is decided in
zoo.rlaif.judging.
"""

from zoo.judges.from_reward import RewardModelJudge, RuleJudge
from zoo.judges.noisy import NoisyJudge
from zoo.judges.pairwise import PairwiseLogProbJudge, debias
from zoo.judges.pointwise import PointwiseScoreJudge
from zoo.judges.scorer import LogProbScorer, load_scorer

__all__ = ["LogProbScorer", "NoisyJudge", "PairwiseLogProbJudge", "PointwiseScoreJudge", "RewardModelJudge",
           "RuleJudge", "debias", "load_scorer"]
