"""Rewards for reasoning tasks (DeepSeek-R1 / open-r1 style): format, math accuracy, length shaping, repetition.

Parametrised rewards are factories: conf/reward/*.yaml gives `{name: {weight: w, <param>: value}}` and
`zoo.rewards.build` calls the factory with the params. Token lengths use the `completion_ids` TRL passes to
reward functions, and fall back to whitespace words where a caller has no token ids.
"""

from __future__ import annotations

import math
import re

from zoo.generation import as_text
from zoo.rewards.verifiable import accuracy_reward, score_against_answer

_FORMAT = re.compile(r"^\s*<think>.+?</think>\s*<answer>.+?</answer>\s*$", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def answer_text(text: str) -> str:
    """The content of the last <answer>...</answer> block, else the whole text."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else text


def format_reward(prompts, completions, **columns) -> list[float | None]:
    """1.0 for reasoning in <think>...</think> followed by <answer>...</answer> and nothing else, else 0.0."""
    return [1.0 if _FORMAT.match(as_text(c) or "") else 0.0 for c in completions]


def _math_equal(text: str, gold: str) -> bool:
    from math_verify import parse, verify

    text = answer_text(text)
    try:
        return bool(verify(parse(gold), parse(text))) or accuracy_reward(None, [text], answer=[gold])[0] == 1.0
    except Exception:  # math-verify raises on inputs it cannot parse; that is a wrong answer, not a crash
        return False


def math_accuracy_reward(prompts, completions, answer=None, **columns) -> list[float | None]:
    """Symbolic equivalence with `answer` via math-verify (LaTeX, fractions, 1,200 vs 1200); None without one."""
    return score_against_answer(completions, answer, _math_equal)


def _lengths(completions, completion_ids=None) -> list[int]:
    if completion_ids is not None:
        return [len(ids) for ids in completion_ids]
    return [len((as_text(c) or "").split()) for c in completions]


def soft_overlong(max_length: int = 512, cache: int = 128):
    """DAPO's soft overlong punishment: 0 up to max_length - cache, then linearly down to -1 at max_length."""
    if not 0 < cache <= max_length:
        raise ValueError(f"soft_overlong: need 0 < cache ({cache}) <= max_length ({max_length})")

    def soft_overlong_reward(prompts, completions, completion_ids=None, **columns):
        out = []
        for n in _lengths(completions, completion_ids):
            if n <= max_length - cache:
                out.append(0.0)
            elif n <= max_length:
                out.append(((max_length - cache) - n) / cache)
            else:
                out.append(-1.0)
        return out

    return soft_overlong_reward


def cosine_length(max_length: int = 512, min_value_wrong: float = -1.0, max_value_wrong: float = -0.5,
                  min_value_correct: float = 0.5, max_value_correct: float = 1.0):
    """Length-scaled correctness (Yeo et al. 2025): short right answers earn most, long wrong ones lose least.

    r = lo + (hi - lo) * (1 + cos(pi * L / max_length)) / 2 with (lo, hi) = (min_correct, max_correct) for a
    right answer and (max_wrong, min_wrong) for a wrong one.
    """

    def cosine_length_reward(prompts, completions, answer=None, completion_ids=None, **columns):
        correct = math_accuracy_reward(prompts, completions, answer=answer)
        out = []
        for ok, n in zip(correct, _lengths(completions, completion_ids)):
            if ok is None:
                out.append(None)
                continue
            lo, hi = (min_value_correct, max_value_correct) if ok else (max_value_wrong, min_value_wrong)
            progress = min(n, max_length) / max_length
            out.append(lo + 0.5 * (hi - lo) * (1.0 + math.cos(math.pi * progress)))
        return out

    return cosine_length_reward


def repetition(ngram_size: int = 3, max_penalty: float = -1.0):
    """max_penalty times the share of repeated word n-grams (0 for text shorter than one n-gram)."""
    if max_penalty > 0:
        raise ValueError(f"repetition: max_penalty={max_penalty} must be <= 0")

    def repetition_reward(prompts, completions, **columns):
        out = []
        for c in completions:
            words = (as_text(c) or "").lower().split()
            grams = [tuple(words[i: i + ngram_size]) for i in range(len(words) - ngram_size + 1)]
            out.append(0.0 if not grams else max_penalty * (1.0 - len(set(grams)) / len(grams)))
        return out

    return repetition_reward
