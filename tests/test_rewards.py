"""Reward functions of the shared protocol, on hand-written completions."""

from __future__ import annotations

import pytest

from zoo import rewards
from zoo.rewards.sentiment import sentiment_reward, vader
from zoo.rewards.verifiable import accuracy_reward, extract_answer, states_answer


def test_vader_gold_values():
    # VADER's lexicon gives "good" a compound score of 0.4404 and "terrible" -0.4767.
    assert vader("good") == pytest.approx(0.4404)
    assert vader("terrible") == pytest.approx(-0.4767)
    assert vader("the film is ninety minutes long") == 0.0


def test_sentiment_reward_both_formats():
    got = sentiment_reward(["p", "q"], [" wonderful and brilliant", [{"role": "assistant", "content": "awful"}]])
    assert got[0] > 0.5 and got[1] < 0


@pytest.mark.parametrize("text,expected", [
    ("3 + 4 = 7. The answer is 7.", "7"),
    ("The answer is 1,200 apples", "1200"),
    ("I think 12, no wait, 15", "15"),
    ("no numbers here", None),
    ("The answer is -3.", "-3"),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text,stated", [
    ("3 + 4 = 7. The answer is 7.", True),
    ("The answer is -3", True),
    ("the answer is $12", True),   # right or wrong does not matter, the format does
    ("3 + 4 = 7. So 7", False),      # a number, but not stated as the answer
    ("The answer is seven.", False),
    ("The answer is", False),        # cut off by the token budget
])
def test_states_answer(text, stated):
    assert states_answer(text) is stated


def test_accuracy_reward():
    completions = ["The answer is 7.", "The answer is 8.", "", [{"role": "assistant", "content": "so 12"}], "7"]
    got = accuracy_reward([None] * 5, completions, answer=["7", "7", "7", "12", None])
    assert got == [1.0, 0.0, 0.0, 1.0, None]
    assert accuracy_reward(["p"], ["7"]) == [None]  # no answer column: does not apply


def test_weighted_sum_skips_none():
    combined = rewards.WeightedSum([
        ("a", 2.0, lambda p, c, **k: [1.0, None, None]),
        ("b", 0.5, lambda p, c, **k: [4.0, 2.0, None]),
    ])
    assert combined([0, 0, 0], [0, 0, 0]) == [4.0, 1.0, None]


def test_build_by_name():
    fn = rewards.build({"sentiment": 1.0, "accuracy": 2.0}, {}, cfg=None)
    assert fn(["p"], ["The answer is 3, great"], answer=["3"])[0] == pytest.approx(2.0 + vader("The answer is 3, great"))
    assert rewards.build({}, {}, cfg=None) is None
    with pytest.raises(KeyError, match="unknown reward"):
        rewards.build({"nope": 1.0}, {}, cfg=None)
