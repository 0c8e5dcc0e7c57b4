"""zoo.compare's verdicts: the hierarchical bootstrap finds a known difference, calls identical groups `not
separated` at (at least) the nominal rate, pairs runs by seed, and is reproducible. Synthetic data, no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zoo import compare
from zoo.compare import bootstrap, verdicts

PROMPTS = [f"p{i}" for i in range(16)]


def arm(rng, seeds, shift=0.0, seed_effect=None, prompt_sd=0.3, arm_sd=0.1, m=64):
    """seeds x prompts of a score: a seed effect shared by arms of one seed (their common SFT start), the arm's own
    seed noise, a prompt difficulty and per-completion noise."""
    u = seed_effect if seed_effect is not None else rng.normal(0, 0.3, size=(seeds, 1))
    return u + rng.normal(0, arm_sd, size=(seeds, 1)) + rng.normal(0, prompt_sd, size=(seeds, m)) + shift


def test_a_known_difference_is_found_and_its_sign_kept():
    rng = np.random.default_rng(0)
    u = rng.normal(0, 0.3, size=(3, 1))
    a, b = arm(rng, 3, shift=0.6, seed_effect=u), arm(rng, 3, seed_effect=u)
    found = bootstrap.paired(a - b, bootstrap.rng_for("a", "b"))
    assert found["verdict"] == "A > B" and 0 < found["low"] < 0.6 < found["high"]
    assert found["estimate"] == pytest.approx((a - b).mean())
    assert bootstrap.paired(b - a, bootstrap.rng_for("b", "a"))["verdict"] == "B > A"
    # Without shared seeds the seed effect no longer cancels: the interval is wider, the difference still found.
    unpaired = bootstrap.unpaired_difference(arm(rng, 3, shift=1.5), arm(rng, 3), bootstrap.rng_for("x"))
    assert unpaired["verdict"] == "A > B" and unpaired["seeds"] == "3+3"


def test_identical_groups_are_not_separated_at_the_nominal_rate():
    """200 repetitions of two arms with the same mean, 3 seeds x 64 prompts (as in the sentiment sweep): at 95%
    at least 90% must read `not separated`. A plain percentile interval of the same bootstrap covers far less, which
    is why the interval is t-scaled."""
    rng = np.random.default_rng(1)
    not_separated, percentile_covers = 0, 0
    for k in range(200):
        u = rng.normal(0, 0.3, size=(3, 1))
        differences = arm(rng, 3, seed_effect=u, arm_sd=0.2) - arm(rng, 3, seed_effect=u, arm_sd=0.2)
        not_separated += bootstrap.paired(differences, bootstrap.rng_for(str(k)))["verdict"] == "not separated"
        low, high = np.percentile(bootstrap.nested(differences, bootstrap.rng_for(str(k))), [2.5, 97.5])
        percentile_covers += low <= 0 <= high
    assert not_separated / 200 >= 0.90
    assert percentile_covers / 200 < 0.90


def test_identical_groups_of_run_level_values_are_not_separated_at_the_nominal_rate():
    rng = np.random.default_rng(2)  # one value per seed (fluency, self-BLEU): seeds only
    calls = [bootstrap.paired(rng.normal(0, 1, size=(3, 1)), bootstrap.rng_for(str(k)))["verdict"]
             for k in range(200)]
    assert calls.count("not separated") / 200 >= 0.90


def test_identical_groups_without_shared_seeds_are_not_separated_at_the_nominal_rate():
    rng = np.random.default_rng(6)  # 3 seeds against 2, each with its own start: Welch's degrees of freedom
    found = [bootstrap.unpaired_difference(arm(rng, 3), arm(rng, 2), bootstrap.rng_for(str(k)))["verdict"]
             for k in range(200)]
    assert found.count("not separated") / 200 >= 0.90


def test_the_same_inputs_give_the_same_interval():
    values = np.random.default_rng(3).normal(size=(3, 64))
    first = bootstrap.paired(values, bootstrap.rng_for("dpo", "ppo", "eval/gold_reward"))
    again = bootstrap.paired(values, bootstrap.rng_for("dpo", "ppo", "eval/gold_reward"))
    assert first == again
    assert bootstrap.paired(values, bootstrap.rng_for("dpo", "kto", "eval/gold_reward")) != first


def test_one_seed_gives_no_interval_and_no_verdict():
    found = bootstrap.paired(np.ones((1, 64)), bootstrap.rng_for("x"))
    assert (found["low"], found["high"], found["verdict"]) == (None, None, "too few seeds")


def run(name: str, seed: int, after: list[float], before: list[float], **metrics) -> compare.Run:
    samples = [{"policy": policy, "prompt": p, "completion": "x", "gold": g, "kl": 0.0 if policy == "before" else 1.0}
               for policy, scores in (("before", before), ("after", after)) for p, g in zip(PROMPTS, scores)]
    return compare.Run(dir=Path(name), config={"trainer.seed": seed}, metrics=metrics, samples=samples)


def sweep(shift: float, seeds_b=(0, 1, 2)) -> dict[str, list[compare.Run]]:
    """Arms A and B; each seed's start (its before scores) is shared by both arms of that seed."""
    rng = np.random.default_rng(4)
    start = {s: list(rng.normal(0, 1, len(PROMPTS))) for s in (0, 1, 2, 3)}
    a = [run(f"a{s}", s, [v + shift + 0.05 * s for v in start[s]], start[s], **{"eval/fluency": -1.0 - 0.1 * s,
                                                                               "before/fluency": -1.5})
         for s in (0, 1, 2)]
    b = [run(f"b{s}", s, [v + 0.02 * s for v in start[s]], start[s], **{"eval/fluency": -1.2, "before/fluency": -1.5})
         for s in seeds_b]
    return {"A": a, "B": b}


def test_runs_pair_by_seed_and_the_seed_start_cancels():
    groups = sweep(shift=0.5)
    row = verdicts.compare_pair("A", groups["A"], "B", groups["B"], "eval/gold_reward")
    # A − B within a seed is 0.5 + 0.03 s on every prompt: the start (large, varying by seed) cancels.
    assert row["pairing"] == "paired by seed" and row["estimate"] == pytest.approx(0.5 + 0.03)
    assert row["verdict"] == "A > B" and row["high"] - row["low"] < 0.2
    assert (row["seeds"], row["prompts"], row["level"]) == (3, 16, verdicts.PROMPT_LEVEL)
    fluency = verdicts.compare_pair("A", groups["A"], "B", groups["B"], "eval/fluency")
    assert (fluency["level"], fluency["prompts"]) == (verdicts.SEED_LEVEL, None)  # no per-prompt fluency
    assert fluency["estimate"] == pytest.approx(-1.1 - (-1.2))


def test_groups_with_other_seeds_are_compared_unpaired():
    groups = sweep(shift=0.5, seeds_b=(1, 2, 3))
    row = verdicts.compare_pair("A", groups["A"], "B", groups["B"], "eval/gold_reward")
    assert row["pairing"] == "unpaired" and row["mean_a"] - row["mean_b"] == pytest.approx(row["estimate"])


def test_each_group_against_its_own_start():
    groups = sweep(shift=0.5)
    pairs, starts = verdicts.all_verdicts(groups, "gold")
    by = {(r["a"], r["metric"]): r for r in starts}
    gold = by["A", "eval/gold_reward"]
    assert gold["estimate"] == pytest.approx(0.5 + 0.05) and gold["verdict"] == "A > B"
    assert gold["pairing"] == "within run"
    assert by["B", "eval/gold_reward"]["estimate"] == pytest.approx(0.02)
    assert by["A", "win_rate:eval/gold_reward"]["estimate"] == 1.0  # after beats before on every prompt
    assert by["A", "eval/kl"]["estimate"] == pytest.approx(1.0)
    assert by["A", "eval/fluency"]["estimate"] == pytest.approx(-1.1 + 1.5)
    n = len(groups["A"])
    assert by["A", "eval/gold_reward"]["runs_up"] == by["A", "win_rate:eval/gold_reward"]["runs_up"] == f"{n}/{n}"
    assert {r["metric"] for r in pairs} == {"eval/gold_reward", "eval/kl", "eval/fluency", "win_rate:eval/gold_reward"}


def test_extra_run_level_metrics_get_verdicts():
    """--verdicts: a harness metric with no per-prompt value and a stage's own metric, compared over seeds; the
    stage metric has no start to compare with."""
    groups = sweep(shift=0.5)
    for s, r in enumerate(groups["A"]):
        r.metrics.update({"eval/proxy_gold_spearman": 0.6 + 0.01 * s, "rm/accuracy": 0.7})
    for s, r in enumerate(groups["B"]):
        r.metrics.update({"eval/proxy_gold_spearman": 0.4 + 0.01 * s, "rm/accuracy": 0.6})
    pairs, starts = verdicts.all_verdicts(groups, "gold", extra=["eval/proxy_gold_spearman", "rm/accuracy"])
    by = {r["metric"]: r for r in pairs}
    assert by["eval/proxy_gold_spearman"]["estimate"] == pytest.approx(0.2)
    assert by["eval/proxy_gold_spearman"]["level"] == verdicts.SEED_LEVEL
    assert by["rm/accuracy"]["estimate"] == pytest.approx(0.1)
    assert not [r for r in starts if r["metric"] in ("eval/proxy_gold_spearman", "rm/accuracy")]
