"""Judge quality against gold-labelled pairs: the metric's definitions by hand, and the RLAIF stages' check."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from zoo.errors import ConfigError
from zoo.eval.judge_quality import Z95, at_chance, judge_quality, safety_pairs, wilson
from zoo.judges import PairwiseLogProbJudge, PointwiseScoreJudge, RuleJudge


def _pairs(n: int) -> list[dict]:
    return [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(n)]


class AlwaysA:
    """A pairwise judge that prefers whichever completion it is shown first."""

    def judge(self, prompts, firsts, seconds, **columns):
        return [1.0] * len(prompts)


class AnswersA:
    """A scorer under PairwiseLogProbJudge whose next token is "A" whatever the question."""

    def token_id(self, text):
        return 0

    def choice_probs(self, questions, choices):
        import torch

        return torch.tensor([[1.0, 0.0]] * len(questions))


class Uniform:
    """A scorer under PointwiseScoreJudge that spreads its answer evenly over the digit tokens."""

    def token_id(self, text):
        if text == "10":
            raise ValueError("not one token")
        return 0

    def choice_probs(self, questions, choices):
        import torch

        return torch.ones(len(questions), len(choices)) / len(choices)


class GoldJudge:
    def judge(self, prompts, firsts, seconds, **columns):
        return [1.0 if a.startswith("good") else 0.0 for a in firsts]


def test_a_judge_that_always_answers_a_is_inconsistent_and_at_chance():
    for judge in (AlwaysA(), PairwiseLogProbJudge(AnswersA())):
        q = judge_quality(judge, _pairs(32))
        assert q["position_consistency"] == 0.0 and q["accuracy"] == 0.5 and q["ties"] == 0.0
        assert q["label_accuracy"] == 0.5  # the two orders cancel to P = 0.5: no label either
        assert q["n"] == 32 and at_chance(q) is True


def test_a_gold_judge_is_accurate_and_consistent():
    for judge in (GoldJudge(), RuleJudge(lambda p, cs, **k: [float(c.startswith("good")) for c in cs])):
        q = judge_quality(judge, _pairs(32))
        assert q["accuracy"] == 1.0 and q["position_consistency"] == 1.0 and q["ties"] == 0.0
        assert q["accuracy_low"] == pytest.approx(32 / (32 + Z95 ** 2))  # Wilson's lower end at p = 1
        assert at_chance(q) is False
    # Three pairs cannot show a perfect judge beats a coin: 3 / (3 + 1.96^2) = 0.44.
    assert at_chance(judge_quality(GoldJudge(), _pairs(3))) is True


def test_pointwise_scorer_ties_by_hand():
    scores = {"c0": 3.0, "r0": 1.0, "c1": 2.0, "r1": 2.0, "c2": 5.0, "r2": 5.0, "c3": 0.0, "r3": 4.0, "c4": None,
              "r4": 1.0}
    pairs = [{"prompt": "p", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(5)]
    q = judge_quality(lambda prompts, completions, **k: [scores[c] for c in completions], pairs)
    # Pair 0 right, pair 3 wrong, pairs 1, 2 tie, pair 4 has no score ("does not apply"): a tie too.
    assert q["ties"] == pytest.approx(3 / 5)
    assert q["accuracy"] == pytest.approx((1 + 0.5 + 0.5 + 0 + 0.5) / 5) == q["label_accuracy"]
    assert q["position_consistency"] == 1.0  # scored one completion at a time: no order to depend on


def test_pairwise_verdicts_by_hand():
    probs = {("good 0", "bad 0"): 0.9, ("bad 0", "good 0"): 0.2,  # consistent, right
             ("good 1", "bad 1"): 0.3, ("bad 1", "good 1"): 0.6,  # consistent, wrong
             ("good 2", "bad 2"): 0.8, ("bad 2", "good 2"): 0.6,  # position bias: inconsistent; label 0.6 right
             ("good 3", "bad 3"): 0.5, ("bad 3", "good 3"): 0.5}  # no verdict in either order: a tie

    class Table:
        def judge(self, prompts, firsts, seconds, **columns):
            return [probs[(a, b)] for a, b in zip(firsts, seconds)]

    q = judge_quality(Table(), _pairs(4))
    assert q["position_consistency"] == pytest.approx(2 / 4) and q["ties"] == pytest.approx(1 / 4)
    assert q["accuracy"] == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert q["label_accuracy"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)


def test_pointwise_score_judge_and_wilson():
    q = judge_quality(PointwiseScoreJudge(Uniform()), _pairs(4))  # the same expected score for everything
    assert q["ties"] == 1.0 and q["accuracy"] == 0.5 and q["position_consistency"] == 1.0
    # By hand: z^2 = 3.8415; half width = z / (1 + z^2/10) * sqrt(0.25/10 + z^2/400) = 1.4160 * 0.18602 = 0.2634.
    low, high = wilson(0.5, 10)
    assert low == pytest.approx(0.5 - 0.2634, abs=1e-3) and high == pytest.approx(0.5 + 0.2634, abs=1e-3)
    assert judge_quality(GoldJudge(), [])["n"] == 0 and at_chance({"n": 0}) is None


def test_safety_pairs_put_the_ideal_response_against_the_unacceptable_one():
    from zoo.data.tasks import safety

    rows = safety.rows(0)[:6]
    pairs = safety_pairs(rows, 4, seed=0)
    assert len(pairs) == 4 and [p["prompt"] for p in pairs] == [r["prompt"] for r in rows[:4]]
    for p in pairs:
        classes = safety.RESPONSES[p["category"]]
        assert p["chosen"][0]["content"] in [t.format(a=a, b=b) for t in classes["ideal"] for a, b in safety._FILL]
        assert p["rejected"][0]["content"] in [t.format(a=a, b=b) for t in classes["unacceptable"]
                                               for a, b in safety._FILL]


def _ctx(tmp_path, judge_check: dict, data: str = "sentiment", gold: str | None = "sentiment", rows=(), **judge):
    return SimpleNamespace(
        stage="rlaif", config_path="algo", stage_dir=tmp_path, rows=list(rows), gold_fn=None if gold is None else len,
        algo=OmegaConf.create({"judge_check": judge_check, "judge": judge or {"kind": "logprob"}}),
        cfg=OmegaConf.create({"data": {"name": data, "gold": gold, "seed": 0}, "trainer": {"seed": 0}}))


def test_judge_check_on_a_file_of_pairs_is_cached(tmp_path):
    from zoo.rlaif.judging import judge_check

    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in _pairs(10)))
    ctx = _ctx(tmp_path, {"pairs": 8, "path": str(path)})
    metrics = judge_check(ctx, GoldJudge())
    assert metrics["rlaif/judge/accuracy"] == 1.0 and metrics["rlaif/judge/num_pairs"] == 8
    assert metrics["rlaif/judge/at_chance"] == 0.0 and metrics["rlaif/judge/position_consistency"] == 1.0
    assert json.loads((tmp_path / "judge_check.json").read_text())["source"].startswith(str(path))
    assert judge_check(ctx, AlwaysA()) == metrics  # resumed: the stored numbers, not a new measurement


def test_judge_check_skips_without_gold_and_for_the_gold_judge(tmp_path, capsys):
    """No gold: nothing to check against. The gold judge itself: not measured, but on the accuracy axis a sweep over
    judges plots (1.0, flagged by_construction)."""
    from zoo.rlaif.judging import judge_check

    no_gold = _ctx(tmp_path, {}, data="hh_rlhf", gold=None, rows=[{"prompt": "p"}])
    assert judge_check(no_gold, AlwaysA()) == {}
    assert "no gold signal" in capsys.readouterr().out
    gold = judge_check(_ctx(tmp_path, {}, kind="reward", reward="sentiment"), AlwaysA())
    assert gold["rlaif/judge/by_construction"] == 1.0 and gold["rlaif/judge/num_pairs"] == 0  # not measured
    assert "by construction" in capsys.readouterr().out
    assert judge_check(_ctx(tmp_path, {"pairs": 0}), AlwaysA()) == {}
    assert not (tmp_path / "judge_check.json").exists()


@pytest.mark.parametrize(("setting", "key"), [
    ("+judge_check.typo=1", "judge_check"),
    ("judge_check.at_chance=maybe", "judge_check.at_chance"),
    ("judge_check.pairs=-1", "judge_check.pairs"),
    ("judge_check.path=/nonexistent.jsonl", "judge_check.path"),
])
def test_judge_check_block_is_validated(compose, setting, key):
    from zoo.config import validate

    plus, setting = ("+", setting[1:]) if setting.startswith("+") else ("", setting)
    for algo in ("rlaif", "online_dpo"):
        with pytest.raises(ConfigError, match=re.escape(f"algo.{key}")):
            validate(compose(f"algo={algo}", f"{plus}algo.{setting}"))
    with pytest.raises(ConfigError, match=re.escape(f"stages.ai_rm.{key}")):
        validate(compose("experiment=rlaif_rm", "model=tiny", f"{plus}stages.ai_rm.{setting}"))


def test_stop_raises_before_any_label_or_training(compose, tmp_path, monkeypatch):
    from zoo.rlaif.judging import JudgeAtChanceError
    from zoo.train import run

    monkeypatch.setattr(PairwiseLogProbJudge, "first_probs", lambda self, prompts, a, b, **k: [1.0] * len(prompts))
    out = tmp_path / "run"
    with pytest.raises(JudgeAtChanceError, match=r"algo\.judge_check\.at_chance"):
        run(compose("algo=rlaif", "data=safety", "data.max_rows=8", "algo.judge_check.at_chance=stop",
                    output_dir=out))
    stage = out / "stages" / "rlaif"
    assert not (stage / "ai_pairs.jsonl").exists() and not (stage / "model").exists()
    assert json.loads((stage / "judge_check.json").read_text())["at_chance"] is True


def _answers_a_louder_for_the_longer(self, prompts, firsts, seconds, **columns):
    """Always "A", more surely when response A is the longer: verdicts all position, order-averaged labels not 0.5
    (so the stage still gets pairs to train on)."""
    from zoo.generation import as_text

    return [0.9 if len(as_text(a)) > len(as_text(b)) else 0.6 for a, b in zip(firsts, seconds)]


def test_rlaif_stage_logs_its_judge_and_warns_at_chance(compose, tmp_path, monkeypatch, capsys):
    from zoo.train import run

    from zoo.generation import as_text

    monkeypatch.setattr(PairwiseLogProbJudge, "first_probs", _answers_a_louder_for_the_longer)
    checked = []  # the pairs the check scores the judge on (zoo.rlaif.judging imports judge_quality when it runs)
    monkeypatch.setattr("zoo.eval.judge_quality.judge_quality",
                        lambda judge, pairs: checked.append(pairs) or judge_quality(judge, pairs))
    metrics = run(compose("algo=rlaif", "data=safety", "data.max_rows=8", "algo.pairs.max_new_tokens=8",
                          "algo.args.max_length=96", output_dir=tmp_path / "run"))
    assert metrics["rlaif/judge/position_consistency"] == 0.0 and metrics["rlaif/judge/accuracy"] == 0.5
    assert metrics["rlaif/judge/num_pairs"] == 8 and metrics["rlaif/judge/at_chance"] == 1.0
    # Order-averaged, the stub prefers the longer response ((0.9 + 1 - 0.6) / 2 = 0.65): right where the gold
    # choice is the longer, a tie where lengths are equal.
    (pairs,) = checked
    longer = [len(as_text(p["chosen"])) - len(as_text(p["rejected"])) for p in pairs]
    expected = sum(1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in longer) / len(longer)
    assert metrics["rlaif/judge/label_accuracy"] == pytest.approx(expected)
    assert "the judge is AT CHANCE" in capsys.readouterr().err
    assert math.isfinite(metrics["rlaif/train_loss"])  # warn: trained anyway


def test_online_dpo_scores_a_rule_judge_on_gold_ranked_samples(compose, tmp_path, dense_reward, monkeypatch):
    from zoo.train import run

    from conftest import fraction_of_a

    checked = []  # the pairs the check scores the judge on (zoo.rlaif.judging imports judge_quality when it runs)
    monkeypatch.setattr("zoo.eval.judge_quality.judge_quality",
                        lambda judge, pairs: checked.append(pairs) or judge_quality(judge, pairs))
    # The gold ranks the check's pairs; a dense one (share of 'e'), since the tiny model's 8 random tokens almost
    # always tie under VADER and tied pairs are dropped.
    metrics = run(compose("algo=online_dpo", "data=sentiment", "data.gold=fraction_of_e", "algo.rounds=1",
                          "algo.steps_per_round=1", "trainer.per_device_train_batch_size=4", "algo.judge.kind=reward",
                          "algo.judge.reward=fraction_of_a", "algo.pairs.max_new_tokens=8", "algo.args.max_length=64",
                          "algo.judge_check.pairs=8", output_dir=tmp_path / "run"))
    assert 1 <= metrics["online_dpo/judge/num_pairs"] <= 8  # sampled pairs whose gold scores tie are dropped
    assert metrics["online_dpo/judge/position_consistency"] == 1.0  # a reward function: order-free
    # By hand: the rule judge is right where its score ranks the VADER-chosen completion higher, half right on ties.
    (pairs,) = checked
    a = fraction_of_a(None, [p["chosen"] for p in pairs])
    b = fraction_of_a(None, [p["rejected"] for p in pairs])
    expected = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b)) / len(pairs)
    assert metrics["online_dpo/judge/accuracy"] == pytest.approx(expected)
    assert math.isfinite(metrics["online_dpo/train_loss"])
    assert "online_dpo/scorers" in metrics and "sentiment" not in metrics["online_dpo/scorers"]


def test_a_noisy_gold_judge_is_checked_not_skipped(tmp_path, capsys):
    """The gold reward as judge agrees with gold by construction and is skipped; with label noise it does not, so
    the check measures it: here every verdict flipped (noise 1), accuracy 0."""
    from zoo.judges import NoisyJudge
    from zoo.rlaif.judging import judge_check

    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in _pairs(10)))
    ctx = _ctx(tmp_path, {"pairs": 10, "path": str(path)}, kind="reward", reward="sentiment", noise=1.0)
    metrics = judge_check(ctx, NoisyJudge(GoldJudge(), 1.0))
    assert "by construction" not in capsys.readouterr().out
    assert metrics["rlaif/judge/accuracy"] == 0.0 and metrics["rlaif/judge/position_consistency"] == 1.0


def test_rlaif_with_a_noisy_gold_judge_records_its_labeller_and_noise(compose, tmp_path, dense_reward):
    """The RLAIF baseline of known label noise, from config: each stored pair names its labeller, the stage logs
    the noise. The gold is a dense toy reward (the tiny model's 8 random tokens almost always tie under VADER, and a
    judge labels no tied pair)."""
    from zoo.files import read_jsonl
    from zoo.train import run

    out = tmp_path / "run"
    metrics = run(compose("algo=rlaif", "data=sentiment", "data.gold=fraction_of_e", "algo.judge.kind=reward",
                          "algo.judge.reward=fraction_of_e", "algo.judge.noise=0.2", "algo.judge_check.pairs=4",
                          "algo.pairs.max_new_tokens=8", "algo.args.max_length=64", output_dir=out))
    assert metrics["rlaif/judge_noise"] == 0.2 and "rlaif/judge/num_pairs" in metrics  # checked, not skipped
    pairs = read_jsonl(out / "stages" / "rlaif" / "ai_pairs.jsonl")
    assert pairs and all(p["labeller"] == "rule:fraction_of_e flipped w.p. 0.2" for p in pairs)
    assert all(p["p_chosen"] == 1.0 for p in pairs)  # hard labels: a flipped one swaps chosen and rejected

