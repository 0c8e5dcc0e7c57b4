"""Verifiable rewards: a completion is checked against the row's `answer` column, exactly."""

from __future__ import annotations

import re

from zoo.generation import as_text

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str) -> str | None:
    """The final answer: the first number after the last "answer is", else the last number in the text."""
    if "answer is" in text:
        after = _NUMBER.findall(text.rsplit("answer is", 1)[1])
        if after:
            return after[0].replace(",", "")
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


_STATED = re.compile(r"answer is\s*\$?\s*-?\d")


def states_answer(text: str) -> bool:
    """Whether the text states its answer in the taught format ("... The answer is N"), whatever N is: the
    format an R1-style run is checked on apart from being right."""
    return _STATED.search(text) is not None


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a.strip() == b.strip()


def score_against_answer(completions, answer, check) -> list[float | None]:
    """1.0 / 0.0 from `check(text, gold)` per completion; None where the row has no answer (or none at all)."""
    if answer is None:
        return [None] * len(completions)
    return [None if gold is None else (1.0 if check(as_text(c) or "", str(gold)) else 0.0)
            for c, gold in zip(completions, answer)]


def _exact(text: str, gold: str) -> bool:
    got = extract_answer(text)
    return got is not None and _same_number(got, gold)


def accuracy_reward(prompts, completions, answer=None, **columns) -> list[float | None]:
    """1.0 when the completion's final number equals `answer`, 0.0 otherwise; None for rows without an answer."""
    return score_against_answer(completions, answer, _exact)
