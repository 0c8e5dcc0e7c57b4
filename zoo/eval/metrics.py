"""Metric math of the harness, kept free of models so it can be checked by hand."""

from __future__ import annotations

import torch


def sequence_kl(policy_logps: list[torch.Tensor], ref_logps: list[torch.Tensor]) -> list[float]:
    """Per-sample k1 estimate of KL(policy || reference): sum over sampled tokens of log p - log q.

    The samples come from the policy, so the mean over samples is an unbiased estimate of the sequence KL.
    """
    return [float((p - q).sum()) for p, q in zip(policy_logps, ref_logps)]


def distinct_n(token_lists: list[list[int]], n: int) -> float:
    """Distinct-n: unique n-grams over all n-grams across the completions (0 when there are none)."""
    total, seen = 0, set()
    for toks in token_lists:
        grams = [tuple(toks[i: i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def win_rate(policy_scores: list[float | None], reference_scores: list[float | None]) -> float | None:
    """Share of prompts where the policy's completion beats the reference's (ties count half)."""
    pairs = [(a, b) for a, b in zip(policy_scores, reference_scores) if a is not None and b is not None]
    if not pairs:
        return None
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


def mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None
