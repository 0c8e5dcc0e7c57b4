"""trainer.zoo.cast_once_training (zoo/frozen_cast.py): frozen Linear weights cast to the autocast dtype once per
weight version, with outputs and gradients bit for bit those of autocast's own per-forward casts."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.frozen_cast import FrozenCast, frozen_casts, frozen_linears
from zoo.train import run


def _adapted(compose):
    """The tiny model (64-wide) under a LoRA adapter whose B is not zero, so the adapters carry gradient."""
    from zoo.models import load_policy, wrap_peft

    bundle = load_policy(compose("peft=lora"))
    torch.manual_seed(0)
    model = wrap_peft(bundle)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return model, bundle.tokenizer


def _step(model, ids):
    """Logits and the adapters' gradients of one bf16-autocast forward and backward."""
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=ids).logits
    logits.float().logsumexp(-1).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach(), grads


def test_same_logits_and_gradients_bit_for_bit_and_cast_once(compose):
    model, _ = _adapted(compose)
    model.eval()  # no dropout: the same forward each time (gradients flow in eval mode too)
    ids = torch.tensor([[1, 5, 9, 200, 7, 3], [3, 3, 40, 2, 11, 8]])
    plain_logits, plain_grads = _step(model, ids)
    casts = []
    real = FrozenCast.cast

    def counting(self, dtype):
        before = self.weight
        out = real(self, dtype)
        casts.append(out is not None and out[0] is not before)
        return out

    with pytest.MonkeyPatch.context() as mp, frozen_casts(model) as modules:
        mp.setattr(FrozenCast, "cast", counting)
        # LoRA's base layers (frozen); the adapters' own A/B train and are left alone
        bases = {id(m.base_layer) for m in model.modules() if hasattr(m, "base_layer")}
        assert bases and bases <= {id(m) for m in modules}
        assert not any(m.weight.requires_grad for m in modules)
        first = _step(model, ids)
        made = sum(casts)
        second = _step(model, ids)
    assert made == len(modules) == len(bases) + 1 and sum(casts) == made  # the bases and the head, first forward only
    for logits, grads in (first, second):
        assert torch.equal(logits, plain_logits)
        assert grads.keys() == plain_grads.keys()
        assert all(torch.equal(grads[n], plain_grads[n]) for n in grads)
    assert not any("forward" in vars(m) for m in modules)  # restored


def test_a_changed_weight_is_cast_again_and_fp32_passes_through(compose):
    """An in-place change (version bump) or another tensor is seen; without autocast, or inside inference mode, the
    layer runs as before and keeps nothing."""
    layer = torch.nn.Linear(64, 128).requires_grad_(False)
    x = torch.randn(4, 64)
    with frozen_casts(layer) as modules:
        assert modules == [layer]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            first = layer(x)
            kept = layer.forward.weight
            with torch.no_grad():
                layer.weight.mul_(2.0)
            second = layer(x)
            assert layer.forward.weight is not kept
            assert torch.equal(second, torch.nn.functional.linear(x, layer.weight, layer.bias))
            assert not torch.equal(first, second)
            layer.weight = torch.nn.Parameter(torch.randn(128, 64), requires_grad=False)
            assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
        held = layer.forward.weight
        assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
        assert layer(x).dtype == torch.float32 and layer.forward.weight is held  # fp32: nothing cast
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            layer.weight.data = torch.randn(128, 64)  # another storage, seen only in inference mode
            out = layer(x)
        assert out.dtype == torch.bfloat16 and layer.forward.weight is held  # not kept: an inference tensor


def test_only_frozen_plain_linears_are_taken():
    trained, frozen = torch.nn.Linear(64, 64), torch.nn.Linear(64, 64).requires_grad_(False)
    patched = torch.nn.Linear(64, 64).requires_grad_(False)
    patched.forward = lambda x: x
    assert frozen_linears(torch.nn.Sequential(trained, frozen, patched), None) == [frozen]
    with frozen_casts(frozen, enabled=False) as modules:
        assert modules == [] and "forward" not in vars(frozen)


def test_sampling_packs_a_frozen_layer_once_per_run(compose):
    """Under the lever, cast-once sampling takes the LM head's bf16 (packed where oneDNN can) copy from the layer's
    FrozenCast, so two generate calls make it once; the tokens are those without the lever, and the layer's
    FrozenCast is back after each call."""
    from omegaconf import OmegaConf

    from zoo import levers, sampling_levers

    model, tok = _adapted(compose)
    model.eval()
    head = model.get_output_embeddings()
    enc = tok(["The film was", "A long"], return_tensors="pt", padding=True)
    cfg = OmegaConf.create({"zoo": {name: True for name in levers.SAMPLING}})

    def generate():
        with levers.using(cfg), sampling_levers.fast_generate(model, autocast_dtype=torch.bfloat16):
            return model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)

    plain = generate()
    with frozen_casts(model) as modules:
        assert head in modules
        kept = head.forward
        first = generate()
        made = kept.packed if sampling_levers._packable(head.weight, torch.bfloat16) else kept.weight
        assert made is not None and head.forward is kept
        second = generate()
        assert (kept.packed if kept.packed is not None else kept.weight) is made
    assert torch.equal(first, plain) and torch.equal(second, plain)


@pytest.mark.parametrize("algo", ["dpo", "grpo"])
def test_training_losses_unchanged(compose, dense_reward, tmp_path, monkeypatch, algo):
    """In a bf16 run (every CPU runs trainer.bf16=true) the losses with the lever on and off are the same number,
    and with it on the training forwards ran on kept casts."""
    losses, used = {}, []
    real = FrozenCast.cast

    def counting(self, dtype):
        out = real(self, dtype)
        used.append(out is not None and torch.is_grad_enabled())
        return out

    monkeypatch.setattr(FrozenCast, "cast", counting)
    for on in (True, False):
        used.clear()
        metrics = run(compose(f"algo={algo}", "data=arithmetic", "trainer.max_steps=2", "trainer.bf16=true",
                              f"trainer.zoo.cast_once_training={str(on).lower()}",
                              *([dense_reward] if algo == "grpo" else []), output_dir=tmp_path / f"run-{on}"))
        losses[on] = metrics[f"{algo}/train_loss"]
        assert any(used) if on else not used
    assert math.isfinite(losses[True]) and losses[True] == losses[False]
