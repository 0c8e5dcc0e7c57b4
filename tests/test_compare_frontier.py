"""Frontiers at equal KL (zoo.compare.frontier): the best reward within a KL budget, per seed, and paired verdicts,
on runs whose numbers are worked by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.compare import frontier
from zoo.compare.runs import Run


def _run(seed: int, path: list[tuple[float, float]], start_gold: float) -> Run:
    """A run from its start (KL 0) through curve points at steps 5, 10 to a final (KL, gold)."""
    *curve, final = path
    return Run(dir=Path(f"/r{seed}"), config={"trainer.seed": seed, "algo.name": "x", "trainer.max_steps": 15},
               metrics={"before/gold_reward": start_gold, "before/kl": 0.0,
                        "eval/gold_reward": final[1], "eval/kl": final[0]},
               curve=[{"stage": "x", "step": 5 * (i + 1), "kl": k, "gold_reward": g} for i, (k, g) in enumerate(curve)])


def test_best_within_a_budget_by_hand():
    points = [(0, 0.0, 0.1), (5, 0.5, 0.4), (10, 1.5, 0.3), (15, 3.0, 0.9)]
    assert frontier.best_within(points, 0.25) == 0.1  # only the start
    assert frontier.best_within(points, 2.0) == 0.4  # 0.3 at KL 1.5 is lower than 0.4 at 0.5
    assert frontier.best_within(points, 4.0) == 0.9
    assert frontier.best_within(points, -1.0) is None


def test_paired_verdicts_and_budgets():
    # A reaches gold 0.2 higher than B at every KL in each seed (starts shared per seed: 0.0, 0.1, -0.1).
    a = [_run(s, [(0.5, g + 0.4), (2.0, g + 0.6), (3.0, g + 0.7)], g) for s, g in enumerate((0.0, 0.1, -0.1))]
    b = [_run(s, [(0.5, g + 0.2), (2.0, g + 0.4), (3.0, g + 0.5)], g) for s, g in enumerate((0.0, 0.1, -0.1))]
    b[0].metrics["eval/gold_reward"] += 0.01  # not exactly constant differences: the interval has a width
    groups = {"A": a, "B": b}
    assert frontier.budgets(groups) == [0.5, 1.0, 2.0, 4.0]  # powers of two over the KLs the points reached
    found = frontier.rows(groups, grid=[0.25, 1.0, 4.0])
    per_group = {(r["group"], r["budget"]): r for r in found if not r["other"]}
    assert per_group[("A", 0.25)]["mean"] == pytest.approx(0.0)  # only the starts: (0 + 0.1 - 0.1) / 3
    assert per_group[("A", 1.0)]["mean"] == pytest.approx(0.4)
    assert per_group[("B", 4.0)]["mean"] == pytest.approx(0.5 + 0.01 / 3)
    pairs = {r["budget"]: r for r in found if r["other"]}
    assert pairs[0.25]["verdict"] == "not separated" and pairs[0.25]["mean"] == 0.0  # the same start in both arms
    assert pairs[1.0]["verdict"] == "A above" and pairs[1.0]["mean"] == pytest.approx(0.2)
    assert pairs[4.0]["verdict"] == "A above" and pairs[4.0]["mean"] == pytest.approx(0.2 - 0.01 / 3)
    flipped = frontier.rows({"B": b, "A": a}, grid=[1.0])
    assert [r["verdict"] for r in flipped if r["other"]] == ["A above"]  # whichever is listed first
    text = "\n".join(frontier.markdown(found, "gold_reward"))
    assert "| A | +0.000" in text and "KL <= 1: A above" in text


def test_overoptimisation_forms_recovered_by_hand():
    import math

    from zoo.compare import scaling

    d = [0.5, 1.0, 1.5, 2.0, 2.5]
    bon = scaling.fit([(x, x * (1.0 - 0.3 * x)) for x in d], "bon")
    assert bon["alpha"] == pytest.approx(1.0) and bon["beta"] == pytest.approx(0.3)
    assert bon["peak_d"] == pytest.approx(1.0 / 0.6)  # alpha / (2 beta)
    assert bon["peak_gain"] == pytest.approx(1.0 / 1.2)  # alpha^2 / (4 beta)
    rl = scaling.fit([(x, x * (1.0 - 0.5 * math.log(x))) for x in d], "rl")
    assert rl["alpha"] == pytest.approx(1.0) and rl["beta"] == pytest.approx(0.5)
    assert rl["peak_d"] == pytest.approx(math.e)  # exp(alpha / beta - 1)
    assert rl["peak_gain"] == pytest.approx(0.5 * math.e)  # beta d*
    rising = scaling.fit([(x, 0.4 * x + 0.1 * x * x) for x in d], "bon")
    assert rising["beta"] < 0 and rising["peak_d"] is None and rising["peak_gain"] is None  # gold never turned down: no peak is claimed
    assert scaling.fit([(0.0, 0.0), (1.0, 0.5)], "bon") is None  # one point with d > 0 fixes nothing


def test_overoptimisation_rows_per_group():
    from zoo.compare import scaling

    def run(seed, alpha):
        path = [(0.25, None), (1.0, None), (4.0, None)]  # KL; gold = d (alpha - 0.2 d) over a start of 0.1
        r = _run(seed, [(kl, 0.1 + math.sqrt(kl) * (alpha - 0.2 * math.sqrt(kl))) for kl, _ in path], 0.1)
        r.config["algo.name"] = "best_of_n"
        r.curve = [{**point, "stage": "best_of_n"} for point in r.curve]
        return r

    import math

    found = scaling.rows({"bon": [run(0, 1.0), run(1, 1.2), run(2, 1.4)]})
    alpha = next(r for r in found if r["metric"] == "gold_reward" and r["coef"] == "alpha")
    assert alpha["n"] == 3 and alpha["mean"] == pytest.approx(1.2) and alpha["form"] == "bon"
    assert alpha["ci95_low"] < 1.0 < 1.4 < alpha["ci95_high"]  # t-interval over 3 seeds, std 0.2


def test_peaks_between_groups_paired_by_seed():
    import math

    from zoo.compare import scaling

    def run(seed, alpha):  # gold = d (alpha - 0.2 d) over a start of 0.1: peak at d* = alpha / 0.4
        r = _run(seed, [(kl, 0.1 + math.sqrt(kl) * (alpha - 0.2 * math.sqrt(kl))) for kl in (0.25, 1.0, 4.0)], 0.1)
        r.config["algo.name"] = "best_of_n"
        r.curve = [{**point, "stage": "best_of_n"} for point in r.curve]
        return r

    groups = {"more data": [run(0, 1.0), run(1, 1.2), run(2, 1.4)], "less data": [run(0, 0.6), run(1, 0.7), run(2, 0.8)]}
    found = {r["coef"]: r for r in scaling.between(groups)}
    later = found["peak_d"]  # within seed: (1.0 - 0.6) / 0.4, 0.5 / 0.4, 0.6 / 0.4
    assert (later["n"], later["form"]) == (3, "bon") and later["mean"] == pytest.approx(1.25)
    assert later["ci95_low"] > 0 and later["verdict"] == "more data later"
    higher = found["peak_gain"]  # alpha^2 / 0.8 within seed: (1 - 0.36) / 0.8, (1.44 - 0.49) / 0.8, (1.96 - 0.64) / 0.8
    assert higher["mean"] == pytest.approx((0.64 + 0.95 + 1.32) / 3 / 0.8) and higher["verdict"] == "more data higher"
    flat = {"a": [run(0, 1.0), run(1, 1.2)], "b": [run(0, 1.2), run(1, 1.0)]}  # +0.5 and -0.5: no verdict
    assert {r["verdict"] for r in scaling.between(flat)} == {"not separated"}


def test_a_best_of_n_path_ends_after_its_largest_n():
    """best-of-n numbers its curve points by n (1..64), beyond trainer.max_steps: the final point comes last, so a
    path drawn in step order does not double back."""
    from zoo.compare.trajectories import trajectory

    run = _run(0, [(0.19, 0.2), (0.64, 0.3), (1.2, 0.35)], 0.1)
    run.config["algo.name"] = "best_of_n"
    run.curve = [{**p, "stage": "best_of_n", "step": n} for p, n in zip(run.curve, (16, 64))]
    steps = [p["step"] for p in trajectory(run)]
    assert steps == sorted(steps) and steps[-1] == 64


def test_versus_points_by_hand():
    from zoo.compare import versus

    def run(seed, accuracy, gold):
        r = _run(seed, [(1.0, gold)], 0.0)
        r.metrics["rlaif/judge/accuracy"] = accuracy
        return r

    groups = {"noisy": [run(0, 0.5, 0.1), run(1, 0.7, 0.3)], "clean": [run(0, 1.0, 0.6), run(1, 1.0, 0.8)]}
    found = {p["group"]: p for p in versus.points(groups, "rlaif/judge/accuracy", "eval/gold_reward")}
    assert found["noisy"]["x"] == pytest.approx(0.6) and found["noisy"]["y"] == pytest.approx(0.2)
    assert found["clean"]["x_low"] == found["clean"]["x_high"] == 1.0  # no spread, a zero-width interval
    assert versus.start(groups, "eval/gold_reward")["mean"] == 0.0


def test_versus_fit_by_hand():
    """Changes -0.1, 0, +0.1 at accuracy 0.5 and +0.4, +0.5, +0.6 at 1.0 (starts 0.2 apart, which the change
    removes): slope 1, intercept -0.5, break-even 0.5; residuals +-0.1 give s^2 = 0.04 / 4, so the slope's interval is
    1 +- 2.776 * sqrt(0.01 / 0.375) and the break-even's, solved by hand from the quadratic, [0.244, 0.626]. Two
    points of one x each way (slope 0.8, s^2 0.02, t(2) = 4.303) leave the slope unseparated: no bounded
    break-even. A skipped group is left out of the fit."""
    from zoo.compare import versus

    def run(seed, accuracy, change, start=0.0):
        r = _run(seed, [(1.0, start + change)], start)
        r.metrics["rlaif/judge/accuracy"] = accuracy
        return r

    groups = {"noisy": [run(0, 0.5, -0.1, 0.2), run(1, 0.5, 0.0), run(2, 0.5, 0.1)],
              "clean": [run(0, 1.0, 0.4, 0.2), run(1, 1.0, 0.5), run(2, 1.0, 0.6)],
              "other budget": [run(0, 1.0, -3.0)]}
    line = versus.fit(groups, "rlaif/judge/accuracy", "eval/gold_reward", skip=("budget",))
    assert line["runs"] == 6 and line["slope"] == pytest.approx(1.0) and line["intercept"] == pytest.approx(-0.5)
    half = 2.776 * (0.01 / 0.375) ** 0.5
    assert (line["slope_low"], line["slope_high"]) == pytest.approx((1 - half, 1 + half))
    assert line["break_even"] == pytest.approx(0.5)
    assert (line["break_even_low"], line["break_even_high"]) == pytest.approx((0.244, 0.626), abs=1e-3)
    flat = {"a": [run(0, 0.5, 0.0), run(1, 0.5, 0.2)], "b": [run(0, 1.0, 0.4), run(1, 1.0, 0.6)]}
    line = versus.fit(flat, "rlaif/judge/accuracy", "eval/gold_reward")
    assert line["slope"] == pytest.approx(0.8) and line["break_even"] == pytest.approx(0.375)
    assert line["slope_low"] < 0 and line["break_even_low"] is None and line["break_even_high"] is None
    assert versus.fit({"a": groups["noisy"]}, "rlaif/judge/accuracy", "eval/gold_reward") is None  # one x value
