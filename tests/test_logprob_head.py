"""trainer.zoo.cpu_logprob_head (zoo/logprob_head.py): the CPU log-prob head gives TRL's chunked kernel's outputs
and gradients, with TRL's function still used where the zoo's does not apply."""

from __future__ import annotations

import pytest
import torch
from trl.kernels import ChunkedLogProbFunction

import zoo.logprob_head as head
from zoo.logprob_head import CpuLogProbFunction, cpu_logprob_head

ALL = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
V, H = 3072, 128  # TRL's tiles cut at chunk_size=1024 below, so its side folds three tiles


def _run(function, hidden, weight, targets, outputs, autocast=False, temperature=0.7, logit_scale=1.3,
         grads=(1.0, 1.0)):
    h = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = function.apply(h, w, None, targets, temperature, 1024, None, logit_scale, outputs)
    g = torch.Generator().manual_seed(3)
    loss = sum(x.float().mul(torch.randn(x.shape, generator=g)).sum() * k
               for x, k in zip(out[:2], grads) if x is not None and k)
    loss.backward()
    return out, h.grad, w.grad


def _close(a, b):  # fp32 rounding of sums over the vocabulary, relative to the gradient's scale
    return torch.allclose(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())


def _inputs(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, H, generator=g)
    weight = torch.randn(V, H, generator=g) * 0.2
    targets = torch.randint(0, V, (n,), generator=g)
    targets[0] = int((hidden[0] @ weight.t()).argmax())  # one label that is the argmax, for is_top1
    return hidden, weight, targets


# the forward's log-softmax kept for the backward (the default at these sizes) or made again there
KEEP = pytest.mark.parametrize("keep_bytes", [head.KEEP_BYTES, 0], ids=["kept", "made_again"])


@KEEP
@pytest.mark.parametrize("outputs", [ALL, ("log_probs",), ("log_probs", "entropy")])
def test_matches_trls_kernel_in_fp32(outputs, keep_bytes, monkeypatch):
    monkeypatch.setattr(head, "TOKENS", 16)  # several token blocks
    monkeypatch.setattr(head, "KEEP_BYTES", keep_bytes)
    hidden, weight, targets = _inputs()
    ours, gh, gw = _run(CpuLogProbFunction, hidden, weight, targets, outputs)
    theirs, th, tw = _run(ChunkedLogProbFunction, hidden, weight, targets, outputs)
    for name, a, b in zip(ALL, ours, theirs):
        assert (a is None) == (b is None), name
        if a is None:
            continue
        if a.dtype == torch.bool:
            assert torch.equal(a, b), name
            continue
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), name
    assert ours[4] is None or ours[4][0]  # the argmax label counts as top-1
    assert _close(gh, th) and gh.abs().max() > 1e-3
    assert _close(gw, tw) and gw.abs().max() > 1e-3


@KEEP
def test_gradient_of_one_output_alone(keep_bytes, monkeypatch):
    monkeypatch.setattr(head, "KEEP_BYTES", keep_bytes)
    hidden, weight, targets = _inputs()
    for grads in ((1.0, 0.0), (0.0, 1.0)):
        _, gh, gw = _run(CpuLogProbFunction, hidden, weight, targets, ("log_probs", "entropy"), grads=grads)
        _, th, tw = _run(ChunkedLogProbFunction, hidden, weight, targets, ("log_probs", "entropy"), grads=grads)
        assert _close(gh, th) and _close(gw, tw)


def test_log_prob_by_hand():
    """One token, a vocabulary of 4: log p = z_y - log sum exp z, entropy = -sum p log p."""
    hidden = torch.tensor([[1.0, 0.0]])
    weight = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]])
    lp, ent, *_ = CpuLogProbFunction.apply(hidden, weight, None, torch.tensor([1]), 1.0, 1024, None, 1.0,
                                           ("log_probs", "entropy"))
    z = torch.tensor([2.0, 1.0, 0.0, -1.0])
    p = z.softmax(-1)
    assert lp.item() == pytest.approx(1.0 - torch.logsumexp(z, 0).item(), abs=1e-6)
    assert ent.item() == pytest.approx(-(p * p.log()).sum().item(), abs=1e-6)


@KEEP
def test_under_bf16_autocast_close_to_trls_kernel(keep_bytes, monkeypatch):
    """Under autocast both make bf16 logits; the zoo's gradient to the hidden states is one bf16 product, TRL's the
    fp32 sum of per-tile products: close, not equal."""
    monkeypatch.setattr(head, "KEEP_BYTES", keep_bytes)
    hidden, weight, targets = _inputs(64)
    ours, gh, gw = _run(CpuLogProbFunction, hidden, weight, targets, ALL, autocast=True)
    theirs, th, tw = _run(ChunkedLogProbFunction, hidden, weight, targets, ALL, autocast=True)
    assert torch.allclose(ours[0], theirs[0], atol=1e-4) and torch.allclose(ours[1], theirs[1], atol=1e-4)
    assert ours[0].dtype == theirs[0].dtype == torch.float32 and gh.dtype == th.dtype == torch.float32
    assert torch.allclose(gh, th, rtol=2e-2, atol=2e-2 * th.abs().max().item())
    assert torch.allclose(gw, tw, rtol=2e-2, atol=2e-2 * tw.abs().max().item())


@pytest.mark.parametrize("outputs", [("log_probs",), ("log_probs", "entropy")])
def test_kept_log_softmax_skips_the_backwards_logits(outputs, monkeypatch):
    """Within KEEP_BYTES the backward makes no logits (the forward's are kept), above it one block per block; the
    gradients are the same either way, also through a retained graph's second backward (the kept tensors are
    neither changed nor needed by it)."""
    monkeypatch.setattr(head, "TOKENS", 16)
    calls = []
    real = head._logits
    monkeypatch.setattr(head, "_logits", lambda *a: calls.append(1) or real(*a))
    hidden, weight, targets = _inputs()  # 40 tokens: three blocks
    grads, default = {}, head.KEEP_BYTES
    for keep_bytes in (default, 40 * V * 4 * len(outputs) - 1):  # the second just over the limit
        monkeypatch.setattr(head, "KEEP_BYTES", keep_bytes)
        h = hidden.clone().requires_grad_(True)
        out = CpuLogProbFunction.apply(h, weight, None, targets, 0.7, 1024, None, 1.0, outputs)
        loss = sum(x.sum() * k for x, k in zip(out[:2], (1.0, 0.5)) if x is not None)
        calls.clear()
        loss.backward(retain_graph=True)
        grads[keep_bytes], made = h.grad.clone(), len(calls)
        h.grad = None
        calls.clear()
        loss.backward()  # the kept tensors were freed by the first pass: made again
        assert len(calls) == 3 and torch.equal(h.grad, grads[keep_bytes])
        assert made == (0 if keep_bytes == default else 3)
    first, second = grads.values()
    assert torch.allclose(first, second, rtol=1e-5, atol=1e-6) and first.abs().max() > 1e-3
    monkeypatch.setattr(head, "KEEP_BYTES", default)
    h = hidden.clone().requires_grad_(True)
    out = CpuLogProbFunction.apply(h, weight, None, targets, 0.7, 1024, None, 1.0, outputs, False)
    calls.clear()
    out[0].sum().backward()
    assert len(calls) == 3  # told that no backward would follow (keep=False): nothing kept, made again


def test_cast_weight_follows_in_place_updates():
    hidden, weight, targets = _inputs()
    weight.requires_grad_(False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = CpuLogProbFunction.apply(hidden, weight, None, targets, 1.0, 1024, None, 1.0, ("log_probs",))[0]
        with torch.no_grad():
            weight.mul_(2.0)  # what an optimizer step does to a trained head: the tensor's version moves
        after = CpuLogProbFunction.apply(hidden, weight, None, targets, 1.0, 1024, None, 1.0, ("log_probs",))[0]
        expected = ChunkedLogProbFunction.apply(hidden, weight, None, targets, 1.0, 32768, None, 1.0,
                                                ("log_probs",))[0]
    assert not torch.allclose(before, after) and torch.allclose(after, expected, atol=1e-4)


def test_trls_function_where_the_cpu_path_does_not_apply():
    import trl.trainer.utils as trl_utils

    calls = []

    class Spy(ChunkedLogProbFunction):
        @staticmethod
        def forward(ctx, *args):
            calls.append(args[6])
            return ChunkedLogProbFunction.forward(ctx, *args)

    original = trl_utils._ChunkedLogProbFunction
    hidden, weight, targets = _inputs()
    try:
        trl_utils._ChunkedLogProbFunction = Spy
        with cpu_logprob_head(True):
            fn = trl_utils._ChunkedLogProbFunction
            fn.apply(hidden, weight, None, targets, 1.0, 1024, None, 1.0, ("log_probs",))
            assert calls == []  # plain CPU call: the zoo's function
            fn.apply(hidden, weight, None, targets, 1.0, 1024, 30.0, 1.0, ("log_probs",))  # soft-capping
            fn.apply(hidden, weight, torch.zeros(V), targets, 1.0, 1024, None, 1.0, ("log_probs",))  # a bias
            assert calls == [30.0, None]
        assert trl_utils._ChunkedLogProbFunction is Spy
        with cpu_logprob_head(False):
            assert trl_utils._ChunkedLogProbFunction is Spy
    finally:
        trl_utils._ChunkedLogProbFunction = original


def test_nothing_kept_for_a_pass_without_gradients(monkeypatch):
    """Through TRL's entry point, a call under no_grad (a reference forward) tells the function no backward follows,
    so it keeps no log-softmax; with gradients on it may keep one."""
    import trl.trainer.utils as trl_utils

    seen = []

    class Recorder:
        @staticmethod
        def apply(*args):
            seen.append(args[-1])

    monkeypatch.setattr(head, "CpuLogProbFunction", Recorder)
    hidden, weight, targets = _inputs()
    with cpu_logprob_head(True):
        fn = trl_utils._ChunkedLogProbFunction
        with torch.no_grad():
            fn.apply(hidden, weight, None, targets, 1.0, 1024, None, 1.0, ("log_probs",))
        fn.apply(hidden.requires_grad_(True), weight, None, targets, 1.0, 1024, None, 1.0, ("log_probs",))
    assert seen == [False, True]
