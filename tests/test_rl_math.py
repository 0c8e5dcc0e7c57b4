"""PPO math against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.rl.math import (
    AdaptiveKLController, clipped_policy_loss, clipped_value_loss, gae, kl_per_token, last_token_index,
    masked_mean, masked_whiten, token_rewards,
)


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.full((1, 3), 0.5)
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.95)
    assert torch.allclose(adv, torch.tensor([[0.45125, 0.475, 0.5]]))
    assert torch.allclose(ret, adv + 0.5)


def test_gae_ignores_padding_even_when_pad_is_eos():
    # Row 2 is row 1 plus two padding tokens: the padded tail must not change anything.
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 7.0, 7.0]])
    values = torch.tensor([[0.5, 0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.5, 3.0, 3.0]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    assert torch.allclose(adv[0], adv[1]) and torch.allclose(adv[0, :3], torch.tensor([0.45125, 0.475, 0.5]))
    assert (adv[:, 3:] == 0).all() and (ret[:, 3:] == 0).all()


def test_gae_discounting():
    adv, _ = gae(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2), torch.ones(1, 2), gamma=0.5, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[1.0 + 0.5 * 2.0, 2.0]]))


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_per_token(logp, ref, "k1").item() == pytest.approx(math.log(2))
    # k3 = (q/p - 1) - log(q/p) = (0.5 - 1) - log(0.5)
    assert kl_per_token(logp, ref, "k3").item() == pytest.approx(-0.5 + math.log(2))
    assert kl_per_token(ref, logp, "k3").item() == pytest.approx(1.0 - math.log(2))
    with pytest.raises(ValueError, match="kl_estimator"):
        kl_per_token(logp, ref, "k2")


def test_token_rewards_score_on_last_real_token():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    kl = torch.tensor([[0.1, 0.2, 9.0], [0.0, 0.0, 0.5]])
    r = token_rewards(torch.tensor([1.0, 2.0]), kl, mask, kl_coef=0.5)
    assert torch.allclose(r, torch.tensor([[-0.05, 0.9, 0.0], [0.0, 0.0, 1.75]]))
    assert last_token_index(torch.tensor([[0, 0, 0]])).item() == 0


@pytest.mark.parametrize("adv,ratio,expected_loss,clipped", [
    (1.0, 1.1, -1.1, False),    # inside the range: plain surrogate
    (1.0, 1.5, -1.2, True),     # positive advantage, ratio above 1+eps: clipped at 1.2
    (1.0, 0.5, -0.5, False),    # positive advantage, ratio below 1-eps: pessimistic unclipped
    (-1.0, 0.5, 0.8, True),     # negative advantage, ratio below 1-eps: clipped at 0.8
    (-1.0, 1.5, 1.5, False),    # negative advantage, ratio above 1+eps: pessimistic unclipped
])
def test_clipped_policy_loss(adv, ratio, expected_loss, clipped):
    old = torch.zeros(1, 1)
    loss, stats = clipped_policy_loss(torch.log(torch.tensor([[ratio]])), old, torch.tensor([[adv]]),
                                      torch.ones(1, 1), cliprange=0.2)
    assert loss.item() == pytest.approx(expected_loss, abs=1e-6)
    assert stats["clipfrac"].item() == float(clipped)


def test_clipped_value_loss():
    # old 0, new 1, return 2, eps 0.2: unclipped (1-2)^2 = 1, clipped (0.2-2)^2 = 3.24 -> 0.5 * 3.24
    loss, frac = clipped_value_loss(torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[2.0]]),
                                    torch.ones(1, 1), cliprange_value=0.2)
    assert loss.item() == pytest.approx(1.62) and frac.item() == 1.0
    loss, frac = clipped_value_loss(torch.tensor([[0.1]]), torch.tensor([[0.0]]), torch.tensor([[2.0]]),
                                    torch.ones(1, 1), cliprange_value=0.2)
    assert loss.item() == pytest.approx(0.5 * 1.9 ** 2) and frac.item() == 0.0


def test_adaptive_kl_controller():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    # KL 12 is double the target: error clipped to +0.2; 256 steps -> *= 1 + 0.2 * 256 / 10000
    assert ctl.update(12.0, 256) == pytest.approx(0.2 * (1 + 0.2 * 256 / 10000))
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    assert ctl.update(5.4, 100) == pytest.approx(0.2 * (1 - 0.1 * 100 / 10000))


def test_masked_helpers():
    x, mask = torch.tensor([[1.0, 3.0, 100.0]]), torch.tensor([[1, 1, 0]])
    assert masked_mean(x, mask).item() == 2.0
    w = masked_whiten(x, mask)
    assert w[0, 2] == 0 and masked_mean(w, mask).abs() < 1e-6
