"""Per-token log-probs through the LM head on CPU, the zoo's stand-in for TRL's chunked kernel there
(`trainer.zoo.cpu_logprob_head`; the lever is documented in conf/trainer/cpu.yaml).

TRL 1.16 scores DPO, SFT, GRPO, RLOO and KTO through one autograd function (trl.kernels.ChunkedLogProbFunction)
built for GPUs: the logits are made in vocabulary tiles of 32768 so they never exist whole, each tile is folded
into running log-sum-exp statistics, the backward makes every tile again, and the logits' gradient is multiplied
back through the head in fp32 from bf16 copies of the weight cut anew on every call. On CPU, with no Triton, each
fold is a dozen full-tile torch operations, and at a GRPO step's 256 completion tokens the head's forward and
backward took ~0.4 s of a ~2 s step.

This function computes the same outputs with the same math (log-prob of the label, entropy, log sum p^2, mean
logit, whether the label is the argmax; their gradients) with fewer passes: one matrix multiply for a block of up
to `TOKENS` tokens over the whole vocabulary, torch's vectorised log-sum-exp, the gradient built in place, the
head's weight cast to the compute dtype once per weight version rather than once per tile and call, and (within
`KEEP_BYTES`) the forward's log-softmax kept so that the backward makes no logits at all. Under bf16
autocast the gradient to the hidden states is one bf16 product (fp32 inside, rounded once at the end), as any
autocast linear layer's is; TRL accumulates its two tiles' products in fp32. Same values up to that rounding
(tests/test_logprob_head.py compares both functions' outputs and gradients, in fp32 and under autocast).
Logit soft-capping, a head with a bias, and devices other than the CPU go to TRL's own function.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

TOKENS = 1024  # tokens per block: 1024 x 49k-vocabulary fp32 logits is 200 MB, made twice per step (fwd, bwd)
# The forward's fp32 log-softmax (and, where the entropy is asked for, the probabilities) kept for the backward while
# they take at most this many bytes, instead of making the logits again there: one matrix multiply over the
# vocabulary, its cast to fp32, a subtraction and an exponential less per block. GRPO's 256 completion tokens x 49k
# vocabulary keep 100 MB; larger calls make them again as before.
KEEP_BYTES = 256 * 2**20
_CAST: dict = {}  # the head's weight in the compute dtype: {"key": (weight id, data_ptr, version, dtype), "value"}


def _weight_as(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`weight.to(dtype)` (no gradient), kept while the weight is unchanged: a frozen head is cast once per run, a
    trained one again after each optimizer step (which bumps the tensor's version)."""
    if weight.dtype == dtype:
        return weight.detach()
    key = (id(weight), weight.data_ptr(), weight._version, dtype)
    if _CAST.get("key") != key:
        _CAST.clear()  # drop the old copy before making the new one
        _CAST.update(key=key, value=weight.detach().to(dtype))
    return _CAST["value"]


def _logits(hidden, weight, compute_dtype, scale: float) -> torch.Tensor:
    """fp32 logits of a block of hidden states, multiplied by `scale` (logit scale / temperature)."""
    z = torch.mm(hidden.to(compute_dtype), _weight_as(weight, compute_dtype).t()).float()
    return z.mul_(scale) if scale != 1.0 else z


class CpuLogProbFunction(torch.autograd.Function):
    """The signature and outputs of trl.kernels.ChunkedLogProbFunction (chunk_size is ignored; CPU only, no
    soft-capping, no bias), and `keep`: whether a backward may follow (False for a pass without gradients, such as
    a reference forward: nothing is kept for it)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
                logit_scale=1.0, outputs=("log_probs",), keep=True):
        device_type = hidden.device.type
        compute_dtype = (torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type)
                         else hidden.dtype)
        scale = logit_scale / temperature
        n = hidden.shape[0]
        log_z = hidden.new_empty(n, dtype=torch.float32)
        target_z = torch.empty_like(log_z)
        extra = {name: torch.empty_like(log_z) for name in ("entropy", "log_sum_sq_probs", "mean_logits")
                 if name in outputs}
        is_top1 = torch.empty(n, dtype=torch.bool, device=hidden.device) if "is_top1" in outputs else None
        entropy_asked = "entropy" in extra
        # fp32 (log p, p) per block for the backward, or None: made again there
        kept = [] if keep and n * weight.shape[0] * 4 * (2 if entropy_asked else 1) <= KEEP_BYTES else None
        with torch.autocast(device_type, enabled=False):
            for s in range(0, n, TOKENS):
                e = min(s + TOKENS, n)
                z = _logits(hidden[s:e], weight, compute_dtype, scale)
                t = targets[s:e].unsqueeze(-1)
                target_z[s:e] = z.gather(-1, t).squeeze(-1)
                if "mean_logits" in extra:
                    extra["mean_logits"][s:e] = z.mean(-1)
                if is_top1 is not None:  # argmax returns the first maximum: the label ties earlier tokens no win
                    is_top1[s:e] = z.argmax(-1) == targets[s:e]
                log_z[s:e] = lz = torch.logsumexp(z, -1)
                if "log_sum_sq_probs" in extra:
                    extra["log_sum_sq_probs"][s:e] = torch.logsumexp(z * 2, -1) - 2 * lz
                if entropy_asked or kept is not None:
                    log_p = z.sub_(lz.unsqueeze(-1))
                    p = log_p.exp() if entropy_asked else None
                    if entropy_asked:  # H = -sum_v p_v log p_v
                        extra["entropy"][s:e] = -torch.linalg.vecdot(p, log_p)
                    if kept is not None:
                        kept.append((log_p, p))
        logprobs = target_z - log_z
        entropy = extra.get("entropy")
        ctx.save_for_backward(hidden, weight, targets, log_z, log_z if entropy is None else entropy)
        ctx.compute_dtype, ctx.scale, ctx.kept = compute_dtype, scale, kept
        ctx.mark_non_differentiable(*(x for x in (extra.get("log_sum_sq_probs"), extra.get("mean_logits"), is_top1)
                                      if x is not None))
        return logprobs, entropy, extra.get("log_sum_sq_probs"), extra.get("mean_logits"), is_top1

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy, *_):
        hidden, weight, targets, log_z, entropy = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        if grad_logprobs is None and grad_entropy is None or not (need_hidden or need_weight):
            return (None,) * 10
        cd, kept = ctx.compute_dtype, ctx.kept
        ctx.kept = None  # freed with this pass (a second backward through a retained graph makes them again)
        grad_hidden = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        with torch.autocast(hidden.device.type, enabled=False):
            w = _weight_as(weight, cd)
            for block, s in enumerate(range(0, hidden.shape[0], TOKENS)):
                e = min(s + TOKENS, hidden.shape[0])
                h = hidden[s:e].to(cd)
                if kept is None:
                    log_p = _logits(hidden[s:e], weight, cd, ctx.scale).sub_(log_z[s:e].unsqueeze(-1))
                    p = None
                else:
                    log_p, p = kept[block]
                if p is None:
                    p = log_p.exp()
                # d log p_y / dz = onehot_y - p;  d H / dz = -p (log p + H)
                # grad = -p * (g_lp + g_H (log p + H)) + g_lp * onehot_y
                g_lp = grad_logprobs[s:e].float().unsqueeze(-1) if grad_logprobs is not None else None
                if grad_entropy is None:
                    grad = p.mul_(-g_lp)
                else:
                    grad = log_p.add_(entropy[s:e].unsqueeze(-1)).mul_(grad_entropy[s:e].float().unsqueeze(-1))
                    if g_lp is not None:
                        grad.add_(g_lp)
                    grad.mul_(p).neg_()
                if g_lp is not None:
                    grad.scatter_add_(-1, targets[s:e].unsqueeze(-1), g_lp)
                if ctx.scale != 1.0:
                    grad.mul_(ctx.scale)
                grad = grad.to(cd)
                if need_hidden:
                    grad_hidden[s:e] = torch.mm(grad, w).float()
                if need_weight:
                    grad_weight.add_(torch.mm(grad.t(), h).float())
        return (grad_hidden.to(hidden.dtype) if need_hidden else None,
                grad_weight.to(weight.dtype) if need_weight else None, *(None,) * 8)


def _dispatch(trl_function):
    """An `apply` that takes the CPU path where it can and TRL's function elsewhere."""

    class Dispatch:
        @staticmethod
        def apply(hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
                  logit_scale=1.0, outputs=("log_probs",)):
            args = (hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping, logit_scale,
                    outputs)
            if hidden.device.type != "cpu" or bias is not None or final_logit_softcapping is not None:
                return trl_function.apply(*args)
            return CpuLogProbFunction.apply(*args, torch.is_grad_enabled())

    return Dispatch


@contextmanager
def cpu_logprob_head(enabled: bool = True):
    """Route TRL's fused LM head (trl.trainer.utils.add_fused_lm_head) through CpuLogProbFunction on CPU."""
    if not enabled:
        yield
        return
    import trl.trainer.utils as trl_utils

    original = trl_utils._ChunkedLogProbFunction
    trl_utils._ChunkedLogProbFunction = _dispatch(original)
    try:
        yield
    finally:
        trl_utils._ChunkedLogProbFunction = original
        _CAST.clear()
