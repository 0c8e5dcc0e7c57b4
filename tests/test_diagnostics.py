"""The harness's independence, over-optimisation and mode-collapse diagnostics, checked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoo.eval.diversity import entropies, self_bleu
from zoo.eval.metrics import overoptimisation, pearson, ranks, spearman, std
from zoo.eval.signals import trained_on
from zoo.rewards import usage


def test_ranks_share_ties():
    assert ranks([10, 30, 20, 20]) == [1.0, 4.0, 2.5, 2.5]


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1,2,3) vs (1,3,2): pearson of centred (-1,0,1) and (-1,1,0) = 1 / 2
    assert spearman([1, 2, 3], [5, 9, 7]) == pytest.approx(0.5)
    assert spearman([1, None, 3], [2, 5, None]) is None  # one complete pair only
    assert pearson([1, 1, 1], [1, 2, 3]) is None  # a constant side has no correlation


def test_proxy_equal_to_gold_correlates_and_never_flags():
    before, after = [0.1, -0.2, 0.3, 0.0], [0.5, 0.4, 0.9, 0.2]
    assert spearman(after, after) == pytest.approx(1.0)
    got = overoptimisation(after, after, before, before)
    assert got == {"proxy_gold_gap": pytest.approx(0.0), "overoptimised": 0.0}


def test_overoptimisation_flags_proxy_up_gold_down():
    proxy_before, gold_before = [0.0, 1.0, 2.0], [0.0, 0.5, 1.0]  # stds 1.0 and 0.5
    proxy, gold = [2.0, 3.0, 4.0], [0.0, 0.0, 0.0]  # proxy +2.0 (2 sd), gold -0.5 (-1 sd)
    got = overoptimisation(proxy, gold, proxy_before, gold_before)
    assert got["proxy_gold_gap"] == pytest.approx(2.0 - (-1.0))
    assert got["overoptimised"] == 1.0
    assert overoptimisation([None], gold, proxy_before, gold_before) == {"proxy_gold_gap": None,
                                                                         "overoptimised": None}
    assert std([1.0, 3.0]) == pytest.approx(2 ** 0.5)


def test_self_bleu_identical_is_one_unrelated_is_low():
    same = ["the film was a quiet triumph of acting"] * 3
    assert self_bleu([same]) == pytest.approx(1.0)
    mixed = ["the film was a quiet triumph", "rain fell on empty streets", "numbers never lie to us"]
    assert self_bleu([mixed]) < 0.1


def test_entropy_by_hand():
    import math

    import torch

    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    got = entropies(logits)
    assert got[0].item() == pytest.approx(math.log(4))
    assert got[1].item() == pytest.approx(0.0, abs=1e-6)


def test_trained_on_separates_optimised_from_labelling():
    columns, notes = trained_on({"rm": ["sentiment"], "ppo": ["reward_model"]}, ["ppo"], gold="sentiment",
                                proxy=["reward_model"], independent="textblob")
    assert columns == ["proxy_reward"]
    assert notes["gold_reward"].startswith("gold labelled training data (rm)")
    assert "independent_reward" not in notes
    columns, notes = trained_on({"dpo": ["sentiment"]}, ["dpo"], gold="sentiment", proxy=[], independent=None)
    assert columns == ["gold_reward"] and notes == {"gold_reward": "gold = training signal (dpo)"}


def test_usage_records_training_calls_only():
    from zoo import rewards

    fn = rewards.get("sentiment")
    with usage.recording() as calls:
        fn(["p"], ["good"])  # outside any stage: the harness
        with usage.training("ppo"):
            with usage.measuring():  # a curve point inside the stage
                fn(["p"], ["good"])
            assert calls == {}
            fn(["p"], ["good"])
    assert calls == {"sentiment": ["ppo"]}
    assert usage.tracked("x", fn) is fn  # wrapping twice would count twice


def test_textblob_is_a_second_lexicon():
    from zoo import rewards

    textblob = rewards.get("textblob")
    good, bad = textblob(["p", "p"], ["A wonderful, moving film.", "A terrible, boring mess."])
    assert good > 0.5 and bad < -0.5


@pytest.mark.parametrize("overrides, expected", [
    (["algo=dpo"], ["gold_reward"]),  # ranks its sampled pairs by the gold (VADER)
    (["algo=sft"], []),  # the task's demonstrations: no scorer called
    (["algo=ppo", "reward=sentiment"], ["gold_reward", "proxy_reward"]),  # the proxy *is* the gold
])
def test_run_records_what_it_trained_on(compose, overrides, expected):
    """The independent TextBlob column is filled and never trained on."""
    from zoo.train import run

    cfg = compose(*overrides, "data=sentiment", "eval.diversity.prompts=2")
    metrics = run(cfg)
    assert metrics["run/trained_on"] == expected
    assert "independent_reward" not in metrics["run/trained_on"]
    assert isinstance(metrics["eval/independent_reward"], float)
    assert metrics["eval/fluency"] < 0  # a mean log-probability
    assert 0 <= metrics["eval/self_bleu"] <= 1 and metrics["eval/token_entropy"] > 0
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["run/trained_on"] == metrics["run/trained_on"]


def test_probe_metrics_reach_metrics_json_for_both_columns(compose):
    """Every probe runs on the baseline ("before") and the trained policy, through run(cfg), into metrics.json."""
    from zoo.train import run

    cfg = compose("algo=sft", "eval.diversity.prompts=2", "eval.sycophancy.items=2", "eval.sycophancy.max_new_tokens=4",
                  "eval.capability.arithmetic=2", "eval.capability.choice=6", "eval.capability.max_new_tokens=4")
    run(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    for prefix in ("before", "eval"):
        for key in ("self_bleu", "token_entropy", "syco_first_accuracy", "arithmetic_accuracy", "choice_accuracy"):
            assert f"{prefix}/{key}" in saved, f"{prefix}/{key}"
        assert 0 <= saved[f"{prefix}/choice_accuracy"] <= 1 and 0 <= saved[f"{prefix}/arithmetic_accuracy"] <= 1
        assert saved[f"{prefix}/syco_n_correct"] + saved[f"{prefix}/syco_n_wrong"] == 2
