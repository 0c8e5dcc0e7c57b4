"""Judges: prompt construction, position debiasing with a stub scorer whose preference is known."""

from __future__ import annotations

import pytest
import torch

from zoo.judges import PairwiseLogProbJudge, PointwiseScoreJudge, RewardModelJudge, RuleJudge, debias


class StubScorer:
    """Prefers the response containing "good" with strength `skill`, plus a pure bias towards answer "A"."""

    def __init__(self, skill: float, bias: float):
        self.skill, self.bias, self.seen = skill, bias, []

    def token_id(self, text):
        if text == "10":
            raise ValueError("not one token")
        return 0

    def choice_probs(self, questions, choices):
        self.seen += questions
        if choices == ["A", "B"]:
            rows = []
            for q in questions:
                a_good = "Response A: good" in q
                p = 0.5 + (self.skill if a_good else -self.skill) + self.bias
                rows.append([p, 1 - p])
            return torch.tensor(rows)
        # pointwise: all mass on "7"
        probs = torch.zeros(len(questions), len(choices))
        probs[:, choices.index("7")] = 1.0
        return probs


def test_pairwise_labels_follow_the_known_preference_and_cancel_position_bias():
    judge = PairwiseLogProbJudge(StubScorer(skill=0.3, bias=0.15), principle="Which is kinder?")
    labels = judge.judge(["p1", "p2"], ["good answer", "bad answer"], ["bad answer", "good answer"])
    assert labels == [pytest.approx(0.8), pytest.approx(0.2)]  # the bias (+0.15 to "A") is gone
    assert judge.position_consistency == 1.0
    pure_bias = PairwiseLogProbJudge(StubScorer(skill=0.0, bias=0.3))
    assert pure_bias.judge(["p"], ["x"], ["y"]) == [pytest.approx(0.5)]
    assert pure_bias.position_consistency == 0.0  # says "A" both times: inconsistent


def test_pairwise_prompt_construction():
    scorer = StubScorer(0.1, 0.0)
    judge = PairwiseLogProbJudge(scorer, principle="Which response is less sycophantic?")
    judge.judge([[{"role": "user", "content": "Am I right?"}]], ["good one"], [[{"role": "assistant",
                                                                                "content": "other"}]])
    first, second = scorer.seen
    assert "Request: user: Am I right?" in first and "Which response is less sycophantic?" in first
    assert "Response A: good one" in first and "Response B: other" in first
    assert "Response A: other" in second and "Response B: good one" in second


def test_debias_by_hand():
    p, consistency = debias(torch.tensor([0.9, 0.6]), torch.tensor([0.3, 0.7]))
    assert p.tolist() == [pytest.approx(0.8), pytest.approx(0.45)]
    assert consistency == 0.5


def test_pointwise_expected_score():
    judge = PointwiseScoreJudge(StubScorer(0, 0))
    assert judge.levels == [str(i) for i in range(1, 10)]  # "10" is not a single token for this scorer
    assert judge(["p"], ["r"]) == [pytest.approx(7.0)]


def test_reward_model_and_rule_judges():
    fn = lambda prompts, completions, **k: [len(c) for c in completions]  # noqa: E731
    assert RewardModelJudge(fn).judge(["p"], ["aaa"], ["a"])[0] == pytest.approx(1 / (1 + torch.e ** -2))
    assert RuleJudge(fn).judge(["p", "p", "p"], ["aa", "a", "b"], ["a", "aa", "c"]) == [1.0, 0.0, 0.5]


def test_logprob_scorer_on_tiny_model(tiny_dir):
    from transformers import AutoModelForCausalLM

    from zoo.judges import LogProbScorer
    from zoo.models import load_tokenizer

    tok = load_tokenizer(str(tiny_dir))
    scorer = LogProbScorer(AutoModelForCausalLM.from_pretrained(tiny_dir), tok)
    judge = PairwiseLogProbJudge(scorer)
    prompts, firsts, seconds = ["q1", "q2"], ["a", "b"], ["c", "d"]
    labels = judge.judge(prompts, firsts, seconds)
    consistency = judge.position_consistency
    # By hand from the model's P("A") in both orders: P(a > b) = (P(A | a, b) + 1 - P(A | b, a)) / 2, and a
    # preference counts as consistent when the two orders name the same response.
    forward, swapped = judge.first_probs(prompts, firsts, seconds), judge.first_probs(prompts, seconds, firsts)
    assert forward != pytest.approx([1 - x for x in swapped], abs=1e-3)  # the random model has a position bias
    assert labels == pytest.approx([(f + 1 - s) / 2 for f, s in zip(forward, swapped)])
    assert consistency == sum((f > 0.5) == (s < 0.5) for f, s in zip(forward, swapped)) / 2
    # Debiased, the label of (b, a) is 1 minus that of (a, b): one order alone is not.
    assert judge.judge(prompts, seconds, firsts) == pytest.approx([1 - x for x in labels])
