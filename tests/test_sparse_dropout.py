"""trainer.zoo.sparse_dropout (zoo/sparse_dropout.py): a mask drawn as the positions of its dropped elements has
torch dropout's distribution, scaling and gradient, and takes over only where it should."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from zoo.sparse_dropout import MAX_P, dropped_positions, sparse_dropout, sparse_dropouts


def _chi_square(counts: dict, probs: dict, n: int) -> float:
    return sum((counts.get(k, 0) - n * q) ** 2 / (n * q) for k, q in probs.items())


def test_every_pattern_of_a_short_mask_has_its_bernoulli_probability():
    """n = 4, p = 0.25: the 16 drop patterns over 40000 seeded draws against prod p^k (1-p)^(4-k). Chi-square with
    15 degrees of freedom: 37.7 is its 0.001 upper quantile; a mask that favoured any position or count fails."""
    p, n, draws = 0.25, 4, 40_000
    g = torch.Generator().manual_seed(0)
    counts: dict = {}
    for _ in range(draws):
        key = tuple(sorted(dropped_positions(n, p, g).tolist()))
        counts[key] = counts.get(key, 0) + 1
    probs = {tuple(i for i in range(n) if bits[i]): p ** sum(bits) * (1 - p) ** (n - sum(bits))
             for bits in itertools.product((0, 1), repeat=n)}
    assert set(counts) <= set(probs)
    assert _chi_square(counts, probs, draws) < 37.7


def test_rate_and_gaps_of_a_long_mask():
    """2M elements at p = 0.05: the dropped fraction within 5 binomial standard errors, the gaps between dropped
    positions geometric (P(gap = k) = p (1-p)^(k-1)) for k = 1..20 and the tail."""
    p, n = 0.05, 2_000_000
    idx = dropped_positions(n, p, torch.Generator().manual_seed(1))
    assert idx.dtype == torch.int64 and idx.min() >= 0 and idx.max() < n and torch.all(idx[1:] > idx[:-1])
    se = (p * (1 - p) / n) ** 0.5
    assert abs(len(idx) / n - p) < 5 * se
    gaps = torch.diff(idx).tolist()
    counts = {min(k, 21): 0 for k in range(1, 22)}
    for k in gaps:
        counts[min(k, 21)] += 1
    probs = {k: p * (1 - p) ** (k - 1) for k in range(1, 21)}
    probs[21] = (1 - p) ** 20
    assert _chi_square(counts, probs, len(gaps)) < 52.6  # 20 degrees of freedom, 0.0001 upper quantile


def test_kept_values_and_gradient_are_torchs():
    p = 0.1
    x = torch.randn(4, 33, 64, requires_grad=True)
    y = sparse_dropout(x, p)
    theirs = F.dropout(x.detach(), p, training=True)
    kept, kept_t = y != 0, theirs != 0
    assert 0 < (~kept).sum() < x.numel() // 4
    # the kept elements are x times torch's own 1/(1-p) in x's dtype, bit for bit, as in torch's dropout
    assert torch.equal(y[kept], x.detach()[kept] * torch.ones(()).div_(1 - p))
    assert torch.equal(theirs[kept_t], x.detach()[kept_t] * torch.ones(()).div_(1 - p))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, kept.float() * torch.ones(()).div_(1 - p))


def test_non_contiguous_input_masked_in_its_own_shape():
    """A transposed input (the scaled copy keeps its strides, so it is flattened through a copy): the same mask on
    the same draws as its contiguous twin, the gradient through the transpose."""
    p = 0.1
    x = torch.randn(64, 33, requires_grad=True)
    g = torch.Generator().manual_seed(5)
    y = sparse_dropout(x.t(), p, g)
    twin = sparse_dropout(x.detach().t().contiguous(), p, g.manual_seed(5))
    assert y.shape == (33, 64) and torch.equal(y, twin) and (y == 0).any()
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, (y != 0).t().float() * torch.ones(()).div_(1 - p))


def test_modules_patched_for_the_block_and_where_it_applies():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Dropout(0.05), torch.nn.Dropout(0.5),
                                torch.nn.Dropout(0.0))
    low, high, zero = model[1], model[2], model[3]
    x = torch.ones(8, 64)
    with sparse_dropouts(model, None, model):
        assert "forward" in vars(low) and "forward" in vars(high)
        calls = []
        import zoo.sparse_dropout as sd

        real = sd.sparse_dropout
        sd.sparse_dropout = lambda t, p: calls.append(p) or real(t, p)
        try:
            low(x), zero(x)
            torch.manual_seed(5)
            out_high = high(x)
        finally:
            sd.sparse_dropout = real
        assert calls == [0.05]  # p = 0.5 > MAX_P and p = 0 are torch's
        torch.manual_seed(5)
        assert torch.equal(out_high, F.dropout(x, 0.5, training=True))
        model.eval()
        assert torch.equal(low(x), x)  # eval mode: identity
    assert all("forward" not in vars(m) for m in (low, high, zero))
    assert MAX_P < 0.5


def test_lever_off_leaves_modules_alone():
    model = torch.nn.Sequential(torch.nn.Dropout(0.05))
    with sparse_dropouts(model, enabled=False):
        assert "forward" not in vars(model[0])
