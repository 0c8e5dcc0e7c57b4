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


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a.strip() == b.strip()


def accuracy_reward(prompts, completions, answer=None, **columns) -> list[float | None]:
    """1.0 when the completion's final number equals `answer`, 0.0 otherwise; None for rows without an answer."""
    if answer is None:
        return [None] * len(completions)
    out = []
    for completion, gold in zip(completions, answer):
        if gold is None:
            out.append(None)
            continue
        got = extract_answer(as_text(completion) or "")
        out.append(1.0 if got is not None and _same_number(got, str(gold)) else 0.0)
    return out
