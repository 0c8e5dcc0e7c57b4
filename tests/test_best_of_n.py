"""Best-of-n: the analytic KL, the selection, and `algo=best_of_n` end to end (curve over n, harness columns)."""

from __future__ import annotations

import json
import math

import pytest

from zoo.eval.best_of_n import BestOfN, analytic_kl, pick
from zoo.train import run


def test_analytic_kl_by_hand():
    assert analytic_kl(1) == 0.0
    assert analytic_kl(2) == pytest.approx(math.log(2) - 0.5)  # 0.1931
    assert analytic_kl(64) == pytest.approx(4.158883 - 63 / 64, abs=1e-6)  # 3.1745: KL grows like log n
    with pytest.raises(ValueError):
        analytic_kl(0)


def test_pick_takes_the_best_of_the_first_n():
    scores = [0.1, 0.9, 0.5, 0.2,    # prompt 0: pool of 4
              None, 0.3, 0.3, 2.0]   # prompt 1: None ranks last, ties go to the earlier sample
    assert pick(scores, 1, 4) == [0, 4]
    assert pick(scores, 2, 4) == [1, 5]
    assert pick(scores, 3, 4) == [1, 5]
    assert pick(scores, 4, 4) == [1, 7]


def _words(prompts, completions, **columns):
    return [float(len(str(c).split())) for c in completions]


@pytest.fixture
def words_reward(monkeypatch):
    from zoo import rewards

    monkeypatch.setitem(rewards.REWARDS, "words", _words)
    monkeypatch.setattr(rewards, "KNOWN", [*rewards.KNOWN, "words"])


def test_best_of_n_end_to_end(compose, tmp_path, words_reward, monkeypatch):
    import zoo.eval.best_of_n as bon

    draws, original = [], bon.sample
    monkeypatch.setattr(bon, "sample", lambda *a, **k: draws.append(k["num_return_sequences"]) or original(*a, **k))
    out = tmp_path / "run"
    metrics = run(compose("algo=best_of_n", "algo.n=8", "data=sentiment", "+reward.functions.words=1.0",
                          "eval.num_prompts=8", "eval.max_new_tokens=12", "eval.at_steps=[1]", output_dir=out))
    assert metrics["eval/kl"] == pytest.approx(math.log(8) - 7 / 8)
    assert metrics["before/kl"] == 0.0
    assert 0 < metrics["run/eval_seconds"] < metrics["run/seconds"]  # the harness's share of the run's time
    assert metrics["eval/proxy_reward"] > metrics["before/proxy_reward"]  # selection under the reward moved it
    assert metrics["best_of_n/scorers"] == ["words"] and metrics["run/trained_on"] == ["proxy_reward"]
    points = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [1, 2, 4, 8]
    assert [p["kl"] for p in points] == pytest.approx([analytic_kl(n) for n in (1, 2, 4, 8)])
    proxy = [p["proxy_reward"] for p in points]
    assert proxy == sorted(proxy) and proxy[-1] > proxy[0]  # the best of more of the same pool never scores less
    assert proxy[-1] == pytest.approx(metrics["eval/proxy_reward"])  # the final column is the n = 8 point
    assert draws == [8]  # one pool of 8 per prompt, drawn for the curve and reused by the final harness


def test_best_of_n_needs_a_scorer():
    with pytest.raises(ValueError, match="scorer"):
        BestOfN(object(), None, 4)


def test_fingerprint_follows_the_weights_not_the_object():
    import copy

    import torch

    from zoo.eval.best_of_n import fingerprint

    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64)
    reloaded = copy.deepcopy(model)  # what a run's reload after a stage gives: other objects, the same weights
    assert fingerprint(reloaded) == fingerprint(model)
    with torch.no_grad():
        reloaded.weight[0, 0] += 1e-3  # one optimizer-sized change
    assert fingerprint(reloaded) != fingerprint(model)


def test_pools_of_the_last_few_policies_are_reused(monkeypatch):
    """A sweep's best-of-n jobs alternate seeds (RM size x seed): each seed's SFT policy draws its pool once."""
    from collections import OrderedDict

    import torch

    import zoo.eval.best_of_n as bon

    monkeypatch.setattr(bon, "_POOLS", OrderedDict())
    torch.manual_seed(0)
    policies = [torch.nn.Linear(64, 64) for _ in range(bon.KEEP_POOLS + 1)]
    draws = []

    def draw(i):
        return bon._last_draw(policies[i], ("prompts", 32), lambda: draws.append(i) or f"pool {i}")

    assert [draw(i) for i in (0, 1, 2, 0, 1, 2)] == ["pool 0", "pool 1", "pool 2"] * 2
    assert draws == [0, 1, 2]  # seeds 0-2 under the second RM size reuse the first's pools
    assert bon._last_draw(policies[0], ("other prompts", 32), lambda: "new") == "new"  # the key counts too
    for i in range(1, bon.KEEP_POOLS + 1):
        draw(i)
    draw(0)  # pushed out by KEEP_POOLS newer pools: drawn again
    assert draws[-1] == 0 and len(bon._POOLS) == bon.KEEP_POOLS
