"""K-wise reward modelling (InstructGPT): the loss and the pairwise accuracy by hand, ranked rows from one pair
routine, and algo=rm_ranked end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from zoo.rl.ranked_rm import kwise_loss, pair_accuracy


def _ls(x: float) -> float:
    return math.log(1 / (1 + math.exp(-x)))


def test_kwise_loss_by_hand():
    scores = torch.tensor([[2.0, 0.0, 1.0], [0.5, -0.5, 9.0]])
    ranks = torch.tensor([[0, 2, 1],    # prompt 0: y0 > y2 > y1, three comparisons
                          [0, 1, -1]])  # prompt 1: two completions (the third slot is padding), one comparison
    # prompt 0: -(ls(2-0) + ls(2-1) + ls(1-0)) / 3; prompt 1: -ls(0.5 - -0.5); the loss is their mean
    p0 = -(_ls(2.0) + _ls(1.0) + _ls(1.0)) / 3
    p1 = -_ls(1.0)
    assert float(kwise_loss(scores, ranks)) == pytest.approx((p0 + p1) / 2, rel=1e-6)
    # a tie is no comparison, and a prompt whose completions all tie adds nothing
    tied = kwise_loss(torch.tensor([[1.0, 3.0], [0.0, 5.0]]), torch.tensor([[0, 0], [0, 1]]))
    assert float(tied) == pytest.approx(-_ls(-5.0))
    # the gradient pushes the higher-ranked score up and the lower one down
    s = torch.zeros(1, 2, requires_grad=True)
    kwise_loss(s, torch.tensor([[1, 0]])).backward()
    assert s.grad[0, 1] < 0 < s.grad[0, 0]


def test_pair_accuracy_by_hand():
    scores = torch.tensor([[2.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    ranks = torch.tensor([[0, 2, 1], [1, 0, -1]])
    # prompt 0: all 3 ordered right; prompt 1: y1 above y0 but equal scores: half
    assert pair_accuracy(scores, ranks) == (pytest.approx(3.5 / 4), 4)


def test_ranked_rows_from_the_pair_routine(monkeypatch):
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from zoo.data import pairs as pairs_module

    def fake(model, tokenizer, prompts, *, num_return_sequences, **kwargs):
        return SimpleNamespace(completions=[f"{p} {c}" for p in prompts for c in ("aa", "b", "a", "bb")])

    monkeypatch.setattr(pairs_module, "sample", fake)
    block = OmegaConf.create({"num_samples": 4, "max_new_tokens": 4, "temperature": 1.0, "min_margin": 0.0})
    count_a = lambda prompts, completions, **c: [float(x.count("a")) for x in completions]  # noqa: E731
    rows = pairs_module.preference_rows(None, None, [{"prompt": "x", "answer": "1"}], count_a, block, seed=0,
                                        ranked=True)
    assert rows == [{"prompt": "x", "completions": ["x aa", "x b", "x a", "x bb"], "ranking": [0, 2, 1, 2],
                     "scores": [2.0, 0.0, 1.0, 0.0], "answer": "1", "labeller": "<lambda>"}]


def test_rm_ranked_end_to_end(compose, tmp_path, dense_reward):
    from zoo.train import run

    out = tmp_path / "run"
    metrics = run(compose("algo=rm_ranked", "data=sentiment", "data.gold=fraction_of_a", "algo.pairs.num_samples=4",
                          "algo.pairs.max_new_tokens=8", "trainer.max_steps=3", "algo.eval_fraction=0.25",
                          "data.max_rows=16", output_dir=out))
    rows = [json.loads(line) for line in (out / "stages" / "rm_ranked" / "ranked.jsonl").read_text().splitlines()]
    assert rows and all(len(r["completions"]) == len(r["ranking"]) == 4 for r in rows)
    assert metrics["rm_ranked/labelled_completions"] == 4 * len(rows)
    assert metrics["rm_ranked/num_comparisons"] == sum(a < b for r in rows for a in r["ranking"] for b in r["ranking"])
    assert 0 < metrics["rm_ranked/eval_pairs"] and math.isfinite(metrics["rm_ranked/train_loss"])
    assert metrics["rm_ranked/accuracy"] is not None
    assert (out / "stages" / "rm_ranked" / "model").is_dir()
