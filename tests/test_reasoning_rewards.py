"""Verifiable and shaping rewards on hand-written completions: right, wrong, malformed, empty, None."""

from __future__ import annotations

import math

import pytest

from zoo import rewards
from zoo.data.tasks.countdown import rows
from zoo.rewards.countdown import countdown_reward, evaluate_expression
from zoo.rewards.reasoning import (
    answer_text, cosine_length, format_reward, math_accuracy_reward, repetition, soft_overlong,
)

GOOD = "<think>7 * 6 = 42</think> <answer>42</answer>"


def test_format_reward():
    got = format_reward(None, [GOOD, "<answer>42</answer>", "<think>x</think><answer></answer>", "", None,
                               [{"role": "assistant", "content": GOOD}], GOOD + " trailing"])
    assert got == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_math_accuracy_reward():
    completions = [GOOD, "<answer>41</answer>", "<answer>$\\frac{84}{2}$</answer>", "", "no answer at all",
                   "<answer>1,200</answer>", "<answer>\\frac{</answer>"]
    got = math_accuracy_reward(None, completions, answer=["42", "42", "42", "42", "42", "1200", "3"])
    assert got == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert math_accuracy_reward(None, [GOOD]) == [None]
    assert math_accuracy_reward(None, [GOOD, GOOD], answer=[None, "42"]) == [None, 1.0]
    assert answer_text("a <answer>1</answer> b <answer> 2 </answer>") == "2"


def test_soft_overlong_by_hand():
    fn = soft_overlong(max_length=10, cache=4)
    ids = [[0] * n for n in (3, 6, 8, 10, 12)]
    assert fn(None, [""] * 5, completion_ids=ids) == [0.0, 0.0, pytest.approx(-0.5), pytest.approx(-1.0), -1.0]
    assert fn(None, ["one two three"]) == [0.0]  # no token ids: words stand in
    with pytest.raises(ValueError):
        soft_overlong(max_length=4, cache=8)


def test_cosine_length_by_hand():
    fn = cosine_length(max_length=10)
    right, wrong = "<answer>42</answer>", "<answer>41</answer>"
    got = fn(None, [right, right, wrong, wrong, right], answer=["42", "42", "42", "42", None],
             completion_ids=[[0] * 0, [0] * 10, [0] * 0, [0] * 10, [0]])
    # right: 0.5 + 0.25 * (1 + cos(pi p)); wrong: -0.5 + (-0.25) * (1 + cos(pi p))
    assert got[:4] == [pytest.approx(1.0), pytest.approx(0.5), pytest.approx(-1.0), pytest.approx(-0.5)]
    assert got[4] is None
    half = fn(None, [right], answer=["42"], completion_ids=[[0] * 5])[0]
    assert half == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi / 2)))


def test_repetition_by_hand():
    fn = repetition(ngram_size=2, max_penalty=-1.0)
    # "a b a b a": bigrams ab ba ab ba -> 2 unique of 4 -> -(1 - 0.5)
    assert fn(None, ["a b a b a", "a b c d", "a", ""]) == [pytest.approx(-0.5), 0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        repetition(max_penalty=1.0)


@pytest.mark.parametrize("expr,value", [("(13 * 14) - 25", 157), ("13*14-25", 157), ("25 / 5", 5),
                                        ("13 + 13", None), ("2 ** 3", None), ("__import__('os')", None),
                                        ("14 / (25 - 25)", None), ("", None), ("13 +", None), ("99", None)])
def test_countdown_verifier(expr, value):
    got = evaluate_expression(expr, [13, 25, 14, 5])
    assert (got is None and value is None) or got == value


def test_countdown_reward_and_task():
    data = rows(20, seed=0)
    numbers, target = [r["numbers"] for r in data], [r["target"] for r in data]
    assert countdown_reward(None, [r["completion"] for r in data], numbers=numbers, target=target) == [1.0] * 20
    assert countdown_reward(None, ["<answer>1 + 1</answer>"], numbers=[[1, 2]], target=[2]) == [0.0]
    assert countdown_reward(None, ["<answer>1 + 2</answer>"], numbers=[[1, 2]], target=[3]) == [1.0]
    assert countdown_reward(None, [GOOD]) == [None]


def test_factories_built_from_config():
    named = rewards.named_functions({"soft_overlong": {"weight": 2.0, "max_length": 10, "cache": 4}, "format": 0.5},
                                    {}, cfg=None)
    assert [(n, w) for n, w, _ in named] == [("soft_overlong", 2.0), ("format", 0.5)]
    with pytest.raises(ValueError, match="takes no parameters"):
        rewards.named_functions({"format": {"weight": 1.0, "oops": 3}}, {}, cfg=None)
