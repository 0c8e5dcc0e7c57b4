"""The model loader on every CPU: 4-bit shapes, QLoRA gradients, and `model.name_or_path` overrides."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import torch

from zoo.errors import ConfigError
from zoo.models import BNB_4BIT_BLOCK, ModelLoadError, load_policy, resolve_model_path

ROOT = Path(__file__).resolve().parents[1]


def _compose_with_model(model_group: str, *overrides: str, tmp_path: Path):
    """Compose without the fixture's model=tiny, for tests of the model group itself."""
    from hydra import compose, initialize_config_dir

    from zoo.config import normalize_overrides

    base = [f"model={model_group}", "logger=none", "trainer.max_steps=2", "trainer.bf16=false",
            "trainer.save_steps=1000", "eval.num_prompts=2", "eval.max_new_tokens=4", "data.max_rows=16",
            f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=normalize_overrides(base + list(overrides)))


def test_tiny_model_layers_are_multiples_of_the_4bit_block(tiny_dir):
    """Every Linear of the test model fills whole 4-bit blocks, so QLoRA tests take the same path on every CPU."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 * 7 + 1  # q k v o gate up down per layer, and the LM head
    for name, m in linears:
        assert m.in_features % 64 == 0 and m.out_features % 64 == 0, (name, m.in_features, m.out_features)
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # GQA, like SmolLM2


def test_4bit_cpu_repacking_fits_the_tiny_model(compose):
    """bitsandbytes' AVX512-BF16 weight repacking, forced here on any CPU (it is pure tensor reshaping): the
    tiny model's 4-bit layers fit it. A 32-wide layer fails exactly here on CPUs that take that path."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    policy = load_policy(compose("peft=qlora"))
    layers = [m for m in policy.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 14
    for layer in layers:
        packed, state = F._convert_weight_packed_for_cpu(layer.weight.data.clone(),
                                                          copy.deepcopy(layer.weight.quant_state))
        assert packed.shape == (layer.out_features, layer.in_features // 2) and state.packing_format_for_cpu


def test_qlora_gradients_do_not_depend_on_a_sampling_pass_before(compose):
    """On AVX512-BF16 CPUs, bitsandbytes repacks 4-bit weights at the first no-grad eval forward and then runs
    a kernel without a backward, cutting the gradient; the loader turns that off. Same gradient either way."""
    from peft import get_peft_model

    cfg = compose("peft=qlora")

    def lora_grads(sample_first: bool) -> dict:
        bundle = load_policy(cfg)
        torch.manual_seed(0)
        model = get_peft_model(bundle.model, bundle.peft_config)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)  # B starts at zero, which would hide any cut gradient
        ids = torch.randint(0, 500, (2, 12), generator=torch.Generator().manual_seed(0))
        if sample_first:
            model.eval()
            with torch.no_grad():
                model(input_ids=ids)
        model.train()
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, after_sampling = lora_grads(False), lora_grads(True)
    assert plain.keys() == after_sampling.keys() and len(plain) == 28  # lora_A and lora_B of 14 layers
    for name in plain:
        assert torch.allclose(plain[name], after_sampling[name], rtol=1e-3, atol=1e-6), name


def test_qlora_rejects_layers_that_do_not_fill_4bit_blocks(compose, tmp_path):
    from zoo.model_cache import build_tiny
    from zoo.train import run

    narrow = build_tiny(tmp_path / "narrow", hidden_size=32)
    with pytest.raises(ModelLoadError, match=rf"layer model\.layers\.0\.self_attn\.q_proj is Linear\("
                                             rf"in_features=32, out_features=32\).*block size {BNB_4BIT_BLOCK}"):
        run(compose("peft=qlora", f"model.name_or_path={narrow}", output_dir=tmp_path / "run"))
    assert not (tmp_path / "run" / "stages" / "dpo" / "checkpoints").exists()  # nothing trained
    assert load_policy(compose("peft=lora", f"model.name_or_path={narrow}")).model.config.hidden_size == 32


def test_embedded_model_group_honours_a_local_directory(tiny_dir, tmp_path):
    """model.name_or_path on the default (embedded) group means that model, not a silent SmolLM2."""
    from zoo.train import run

    cfg = _compose_with_model("smollm2-135m", "algo=sft", f"model.name_or_path={tiny_dir}", tmp_path=tmp_path)
    assert resolve_model_path(cfg.model, cfg.paths.cache_dir) == str(tiny_dir)
    run(cfg)
    import json

    exported = json.loads((tmp_path / "run" / "stages" / "sft" / "model" / "config.json").read_text())
    assert exported["hidden_size"] == 128  # the tiny model's; SmolLM2-135M's is 576


def test_embedded_model_group_honours_a_hub_id_and_fails_fast_offline(tmp_path, monkeypatch):
    from zoo.train import run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _compose_with_model("smollm2-135m", "model.name_or_path=Qwen/Qwen2.5-0.5B-Instruct", tmp_path=tmp_path)
    t0 = time.time()
    with pytest.raises(ModelLoadError, match=r"model\.name_or_path='Qwen/Qwen2\.5-0\.5B-Instruct' is a hub id"):
        run(cfg)
    assert time.time() - t0 < 10
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("smollm2*"))  # no SmolLM2


@pytest.mark.parametrize("override,message", [
    ("data.path=rows.jsonl", r"data\.path='rows\.jsonl': data=sentiment is a built-in task"),
    ("model.revision=main", r"model\.revision='main': a revision selects a hub commit; model=tiny is tiny"),
])
def test_keys_a_group_would_ignore_are_rejected(compose, override, message):
    from zoo.train import run

    with pytest.raises(ConfigError, match=message):
        run(compose(override))


def test_logger_mode_override_wins_over_the_environment(compose, tmp_path, monkeypatch):
    """$WANDB_MODE only sets logger.mode's default: an explicit logger.mode=offline is not ignored."""
    from zoo.train import run

    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "run"
    run(compose("algo=sft", "logger=wandb", "logger.mode=offline", output_dir=out))
    assert list((out / "wandb").glob("offline-run-*"))
