"""Judge quality before use: how often a judge prefers the completion gold prefers, on pairs whose better side is
known, and whether that could be a coin flip.

    judge_quality(judge, pairs) -> {"accuracy", "accuracy_low", "accuracy_high", "position_consistency", "ties",
                                    "label_accuracy", "n"}

`pairs` are rows {prompt, chosen, rejected, <task columns>} with `chosen` the gold-preferred completion. `judge` is
any of the zoo's scorers:

* a pairwise judge (`judge(prompts, firsts, seconds) -> P(first is better)`; PairwiseLogProbJudge also exposes
  `first_probs`, its answer in one presentation order before the two orders are averaged). Each pair is asked in
  both orders. Its verdict in an order is the completion it gives P > 0.5 (P = 0.5: no verdict).
  - position_consistency: share of pairs where both orders name the same completion. A judge that always answers
    "A" names a different one in each order: 0.
  - ties: share of pairs with no verdict in either order.
  - accuracy: 1 when both orders name `chosen`, 0 when both name `rejected`, and 1/2 otherwise (inconsistent or
    tied). Half, because a verdict that flips with the presentation order says nothing about the completions:
    scoring it by either order would credit the position bias, and dropping it would hide it.
  - label_accuracy: the same against the order-averaged label P = (P_forward + 1 - P_swapped) / 2, the soft label
    PairwiseLogProbJudge hands to training (an exact 0.5 counts half). It can beat `accuracy` when the judge leans
    the right way more strongly in one order than the position bias pulls it in the other.
* a pointwise scorer (a reward function, PointwiseScoreJudge, a reward model, or RuleJudge / RewardModelJudge,
  which compare the scores of their `reward_fn`; not NoisyJudge, whose flips make it a pairwise judge): prefers
  the higher score. It scores each completion on its own, so it cannot depend on an order: position_consistency
  is 1.0 by construction. ties = equal scores (or a None, "does not apply"), counted half in accuracy;
  label_accuracy = accuracy.

accuracy_low/high: the 95% Wilson interval of `accuracy` over n pairs (half-credits count as half a success,
which makes it wider than needed, never narrower). `at_chance`: its lower end is <= 0.5, i.e. these pairs do not
show the judge doing better than a coin (a judge reliably worse than a coin is flagged too). With fewer than 4
pairs even a perfect judge reads at chance.

Gold-labelled pair sets (the caller picks one, see zoo.rlaif.judging.judge_check):
  pairs_from_rows     rows that carry chosen/rejected: the dataset's own labels taken as gold
  safety_pairs        the safety task's template responses of known quality: ideal against unacceptable
  sampled_gold_pairs  two samples per prompt from a policy, ranked by the task's gold reward (ties dropped)
"""

from __future__ import annotations

import math

Z95 = 1.959964


def judge_quality(judge, pairs: list[dict]) -> dict:
    from zoo.data import task_columns

    if not pairs:
        return {"accuracy": None, "accuracy_low": None, "accuracy_high": None, "position_consistency": None,
                "ties": None, "label_accuracy": None, "n": 0}
    prompts = [p["prompt"] for p in pairs]
    chosen, rejected = [p["chosen"] for p in pairs], [p["rejected"] for p in pairs]
    cols = task_columns(pairs)
    scorer = _pointwise_scorer(judge)
    if scorer is not None:
        scores = _pointwise(scorer(prompts, chosen, **cols), scorer(prompts, rejected, **cols))
        consistency, ties, label_scores = 1.0, sum(s == 0.5 for s in scores) / len(scores), scores
    else:
        ask = getattr(judge, "first_probs", None) or judge.judge
        forward = list(ask(prompts, chosen, rejected, **cols))  # P(chosen better), chosen shown first
        swapped = list(ask(prompts, rejected, chosen, **cols))  # P(rejected better), rejected shown first
        scores, consistency, ties = _pairwise(forward, swapped)
        label_scores = [_credit((f + 1 - s) / 2) for f, s in zip(forward, swapped)]
    accuracy = sum(scores) / len(scores)
    low, high = wilson(accuracy, len(scores))
    return {"accuracy": accuracy, "accuracy_low": low, "accuracy_high": high, "position_consistency": consistency,
            "ties": ties, "label_accuracy": sum(label_scores) / len(label_scores), "n": len(scores)}


def at_chance(quality: dict) -> bool | None:
    """Whether the pairs fail to show the judge beating a coin flip; None when nothing was measured."""
    if not quality.get("n"):
        return None
    return quality["accuracy_low"] <= 0.5


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _pointwise_scorer(judge):
    """The function that scores single completions, where the judge is one (or only compares one's scores)."""
    if getattr(judge, "reward_fn", None) is not None:  # RuleJudge, RewardModelJudge: symmetric by construction
        return judge.reward_fn
    if not hasattr(judge, "judge") and callable(judge):
        return judge
    return None


def _credit(p_chosen: float) -> float:
    return 1.0 if p_chosen > 0.5 else 0.0 if p_chosen < 0.5 else 0.5


def _pointwise(chosen_scores: list, rejected_scores: list) -> list[float]:
    return [0.5 if c is None or r is None or c == r else float(c > r)
            for c, r in zip(chosen_scores, rejected_scores)]


def _pairwise(forward: list[float], swapped: list[float]) -> tuple[list[float], float, float]:
    """Per-pair accuracy credit, position consistency, tie share from both orders' P(first is better)."""
    scores, consistent, tied = [], 0, 0
    for f, s in zip(forward, swapped):
        verdicts = (_credit(f), _credit(1 - s))  # each order's verdict for `chosen`: 1 yes, 0 no, 0.5 none
        if verdicts[0] == verdicts[1] != 0.5:
            consistent += 1
            scores.append(verdicts[0])
        else:
            tied += verdicts == (0.5, 0.5)
            scores.append(0.5)
    return scores, consistent / len(scores), tied / len(scores)


def pairs_from_rows(rows: list[dict], n: int) -> list[dict]:
    """The first n rows that carry a chosen and a rejected completion (e.g. arithmetic's correct vs off-by-k
    answer, HH-RLHF's human labels, a file of your own): their labels are taken as gold."""
    return [r for r in rows if r.get("chosen") is not None and r.get("rejected") is not None][:n]


def safety_pairs(rows: list[dict], n: int, seed: int) -> list[dict]:
    """For each safety prompt (with its `category`), the project's ideal template response against its
    unacceptable one (zoo.data.tasks.safety.RESPONSES): answer a benign look-alike rather than refuse it, decline
    a harmful request rather than give the steps, decline a self-harm request with care rather than help. Only
    the widest-margin pair, as the gold margin elsewhere: ideal vs less_good (e.g. a curt vs a judgmental refusal)
    is a matter of tone a harm principle need not rank. Templates are easier than a policy's own samples, so a
    judge at chance here is at chance, while one that passes may still struggle on real samples."""
    from zoo.data.pairs import pair_row
    from zoo.data.tasks import safety

    by_class: dict[tuple, dict] = {}
    for c in safety.synthetic_completions([r for r in rows if r.get("category") in safety.RESPONSES], seed):
        by_class[(repr(c["prompt"]), c["class"])] = c
    out = []
    for r in rows:
        ideal, bad = by_class.get((repr(r["prompt"]), "ideal")), by_class.get((repr(r["prompt"]), "unacceptable"))
        if ideal and bad:
            out.append(pair_row(r, ideal["completion"], bad["completion"], "safety templates"))
    return out[:n]


def sampled_gold_pairs(model, tokenizer, rows: list[dict], gold_fn, n: int, *, max_new_tokens: int,
                       temperature: float, min_margin: float, seed: int) -> list[dict]:
    """Two samples per prompt for the first n prompts, chosen = the one the task's gold reward scores higher by
    more than `min_margin` (ties and smaller gaps dropped, so the pair set may hold fewer than n). Scored as a
    measurement: the gold is not recorded as a training signal of the stage."""
    from omegaconf import OmegaConf

    from zoo.data import prompt_rows
    from zoo.data.pairs import preference_rows
    from zoo.rewards import usage

    spec = OmegaConf.create({"num_samples": 2, "max_new_tokens": max_new_tokens, "temperature": temperature,
                             "min_margin": min_margin})
    with usage.measuring():
        return preference_rows(model, tokenizer, prompt_rows(rows[:n]), gold_fn, spec, seed=seed)
