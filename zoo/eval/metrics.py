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


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson correlation; None below 2 points or when either side is constant."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / (sxx * syy) ** 0.5 if sxx > 0 and syy > 0 else None


def spearman(xs: list[float | None], ys: list[float | None]) -> float | None:
    """Spearman rank correlation over the pairs where both values exist."""
    pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pairs) < 2:
        return None
    return pearson(ranks([x for x, _ in pairs]), ranks([y for _, y in pairs]))


def std(values) -> float | None:
    vals = [float(v) for v in values if v is not None]
    if len(vals) < 2:
        return None
    m = sum(vals) / len(vals)
    return (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5


def overoptimisation(proxy: list, gold: list, proxy_before: list, gold_before: list) -> dict:
    """Proxy against gold relative to the baseline's samples on the same prompts.

    gap: the proxy's gain minus the gold's gain, each in units of the baseline's spread (sample std), so the two
         scales compare: > 0 when the proxy improved more than the gold did (the proxy is being exploited)
    flag: 1.0 when the proxy rose while the gold fell against the baseline, else 0.0
    Both None when a side is missing or the baseline's scores do not vary.
    """
    dp, dg = mean(proxy), mean(gold)
    bp, bg = mean(proxy_before), mean(gold_before)
    if None in (dp, dg, bp, bg):
        return {"proxy_gold_gap": None, "overoptimised": None}
    sp, sg = std(proxy_before), std(gold_before)
    gap = (dp - bp) / sp - (dg - bg) / sg if sp and sg else None
    return {"proxy_gold_gap": gap, "overoptimised": float(dp > bp and dg < bg)}
