"""One loader for every algorithm: policy, tokenizer, reward/value models, LoRA / QLoRA / full.

The policy is returned un-wrapped together with its `peft_config`, the way TRL's trainers take it: TRL wraps
the model and uses the adapter-disabled base as the reference policy. The zoo's own trainers wrap with
`wrap_peft` for the same effect. Under `peft=none` the reference is a frozen copy of the starting weights.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo import dist
from zoo.checks import number, require
from zoo.errors import ModelLoadError
from zoo.files import atomic_dir
from zoo.levers import lever
from zoo.model_cache import EMBEDDED_HUB_ID, TINY_DIR_NAME, build_tiny, ensure_embedded
from zoo.sampling_levers import mark_eager_by_lever

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# model.attn_implementation (optional, `+model.attn_implementation=...`): transformers' attention kernels, and the
# package each needs beyond torch (FlashAttention runs on CUDA GPUs only).
ATTENTION = {"eager": None, "sdpa": None, "flex_attention": None, "flash_attention_2": "flash_attn",
             "flash_attention_3": "flash_attn_interface"}
# bitsandbytes quantizes 4-bit weights in blocks of this many inputs; on CPUs with native bf16 it also repacks
# them into (out_features, in_features // 64) blocks of 32 output rows.
BNB_4BIT_BLOCK = 64


@dataclass
class PolicyBundle:
    model: Any  # PreTrainedModel (not yet wrapped in PEFT)
    tokenizer: Any
    peft_config: Any  # peft.LoraConfig or None
    path: str  # resolved local directory or hub id the weights came from


def _is_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_][\w.-]*(/[\w.-]+)?", name))


def _named_hub_id(name: str) -> bool:
    """A hub id as a user writes one: not a path that merely has the same shape (./x, /x, ~/x)."""
    return _is_hub_id(name) and not name.startswith((".", "/", "~"))


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:
        return False


def resolve_model_path(model_cfg, cache_dir: str) -> str:
    """Turn `model.name_or_path` into something `from_pretrained` can open now, or fail fast and say why.

    The embedded model is used only while `name_or_path` names it: any other value (a directory, a hub id) means
    that model, so `model.name_or_path=...` on the default model group is never silently ignored.
    """
    source = model_cfg.get("source", "path")
    name = str(model_cfg.name_or_path)
    if source == "embedded" and name == EMBEDDED_HUB_ID:
        return str(ensure_embedded(cache_dir))
    if source == "tiny" and not Path(name).expanduser().exists():
        check_model_path(model_cfg, cache_dir)  # only the group's own cache location is built
        return str(build_tiny(name))
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if not _is_hub_id(name):
        raise ModelLoadError(f"model.name_or_path={name!r}: no such local directory")
    from zoo.data.io import hub_reachable

    if not _hub_cached(name) and not hub_reachable():
        raise ModelLoadError(
            f"model.name_or_path={name!r} is a hub id, but the Hugging Face Hub cannot be reached and the model is "
            f"not in the local HF cache. Download it elsewhere (`huggingface-cli download {name} --local-dir DIR`), "
            f"copy DIR here and run with model.name_or_path=DIR."
        )
    return name


def check_model_name(name: str | None, path: str) -> None:
    """A model named where the zoo takes one (null, a conf/model name, an existing directory or a hub id)."""
    from zoo.named_yaml import CONF_DIR

    require(not name or (CONF_DIR / "model" / f"{name}.yaml").is_file() or Path(str(name)).expanduser().is_dir()
            or _named_hub_id(str(name)),
            f"{path}={name!r}: expected null, a conf/model name, an existing directory or a hub id")


def check_model_path(model_cfg, cache_dir: str) -> None:
    """A model path that does not exist is a typo under every model group, caught before anything loads: only the
    embedded model (converted on first use) and the tiny test model at its own cache location
    (`<paths.cache_dir>/tiny-llama-v2`, built on first use) may not exist yet; a hub id is checked when it loads."""
    source, name = model_cfg.get("source", "path"), str(model_cfg.name_or_path)
    if (source == "embedded" and name == EMBEDDED_HUB_ID) or Path(name).expanduser().is_dir():
        return
    if source == "tiny":
        require(Path(name).expanduser() == Path(cache_dir).expanduser() / TINY_DIR_NAME,
                f"model.name_or_path={name!r}: no such directory. model=tiny builds its random test model only at "
                f"<paths.cache_dir>/{TINY_DIR_NAME} (leave model.name_or_path unset), or point it at an existing "
                f"model directory")
        return
    require(_named_hub_id(name),
            f"model.name_or_path={name!r}: no such local directory (and not a hub id such as org/name)")


def check_model_config(model_cfg) -> None:
    require(model_cfg.dtype in DTYPES, f"model.dtype={model_cfg.dtype!r}: expected one of {list(DTYPES)}")
    attention = model_cfg.get("attn_implementation")
    require(attention is None or attention in ATTENTION,
            f"model.attn_implementation={attention!r}: expected null or one of {list(ATTENTION)}")
    if ATTENTION.get(attention):
        require(importlib.util.find_spec(ATTENTION[attention]) is not None,
                f"model.attn_implementation={attention}: the {ATTENTION[attention]} package is not installed "
                f"(pip install flash-attn on a CUDA machine), or use sdpa")
    require(not model_cfg.get("use_kernels") or importlib.util.find_spec("kernels") is not None,
            "model.use_kernels=true: transformers' Hub kernels need the kernels package (pip install kernels)")
    require(not model_cfg.get("revision") or model_cfg.get("source", "path") == "path",
            f"model.revision={model_cfg.revision!r}: a revision selects a hub commit; model={model_cfg.name} is "
            f"{model_cfg.source}, built locally")


def check_peft_config(peft_cfg) -> None:
    require(peft_cfg.method in ("none", "lora", "qlora"),
            f"peft.method={peft_cfg.method!r}: expected none, lora or qlora")
    if peft_cfg.method == "none":
        return
    number(peft_cfg, "r", "peft", lambda v: v >= 1, "a LoRA rank >= 1", integer=True)
    number(peft_cfg, "lora_alpha", "peft", lambda v: v > 0, "a LoRA alpha > 0")
    number(peft_cfg, "lora_dropout", "peft", lambda v: 0 <= v < 1, "a dropout in [0, 1)")
    if peft_cfg.get("load_in_4bit"):
        require(peft_cfg.bnb_4bit_quant_type in ("nf4", "fp4"),
                f"peft.bnb_4bit_quant_type={peft_cfg.bnb_4bit_quant_type!r}: expected nf4 or fp4")
        require(peft_cfg.bnb_4bit_compute_dtype in DTYPES,
                f"peft.bnb_4bit_compute_dtype={peft_cfg.bnb_4bit_compute_dtype!r}: expected one of {list(DTYPES)}")


def named_model_path(name: str | None, default_path: str, cache_dir: str) -> str:
    """A model given by name where the zoo takes one (judges, graders): None = `default_path`, a conf/model
    name (e.g. qwen2.5-0.5b), else a local dir or hub id."""
    from omegaconf import OmegaConf

    from zoo.named_yaml import CONF_DIR

    if not name:
        return default_path
    named = CONF_DIR / "model" / f"{name}.yaml"
    if named.is_file():  # its values may interpolate ${paths.*}, so it is read inside a config that has them
        model_cfg = OmegaConf.merge({"paths": {"cache_dir": cache_dir}}, {"model": OmegaConf.load(named)}).model
    else:
        model_cfg = OmegaConf.create({"source": "path", "name_or_path": name})
    return resolve_model_path(model_cfg, cache_dir)


def check_4bit_shapes(path: str, trust_remote_code: bool = False) -> None:
    """Fail before loading when a Linear layer bitsandbytes would quantize is not a multiple of its 4-bit block.

    Such a model quantizes and even trains on CPUs without native bf16, then dies inside bitsandbytes on CPUs
    with it (AVX512-BF16/AMX), where 4-bit weights are repacked into (out, in // 64) blocks.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    skipped = model.get_output_embeddings()  # transformers keeps the LM head unquantized
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not skipped and (
                module.in_features % BNB_4BIT_BLOCK or module.out_features % BNB_4BIT_BLOCK):
            raise ModelLoadError(
                f"peft=qlora: {path}: layer {name} is Linear(in_features={module.in_features}, "
                f"out_features={module.out_features}); bitsandbytes 4-bit quantization needs both to be multiples "
                f"of its block size {BNB_4BIT_BLOCK}. Use peft=lora (or peft=none) for this model.")


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        # Masks are always built from lengths, never from `input_ids != pad`, so pad == eos is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(peft_cfg):
    if not peft_cfg.get("load_in_4bit", False):
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=peft_cfg.bnb_4bit_quant_type,
        bnb_4bit_compute_dtype=DTYPES[peft_cfg.bnb_4bit_compute_dtype],
        bnb_4bit_use_double_quant=peft_cfg.bnb_4bit_use_double_quant,
        # Sharded training (FSDP, ZeRO-3) flattens parameters of one dtype, so 4-bit weights are then stored in the
        # compute dtype; uint8 otherwise, as before.
        bnb_4bit_quant_storage=DTYPES[peft_cfg.bnb_4bit_compute_dtype] if _sharded() else torch.uint8,
    )


def _fsdp() -> bool:
    """Whether `accelerate launch` started this process under FSDP (it says so in the env)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"


def _sharded() -> bool:
    """Whether this process holds only a shard of the weights: FSDP, or DeepSpeed ZeRO-3."""
    env = os.environ
    return _fsdp() or (env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
                       and env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3")


def lora_config(peft_cfg, task_type: str = "CAUSAL_LM"):
    if peft_cfg.method == "none":
        return None
    from peft import LoraConfig

    target = peft_cfg.target_modules
    return LoraConfig(
        r=peft_cfg.r,
        lora_alpha=peft_cfg.lora_alpha,
        lora_dropout=peft_cfg.lora_dropout,
        target_modules=target if isinstance(target, str) else list(target),
        bias="none",
        task_type=task_type,
    )


def _from_pretrained(auto_cls, path: str, cfg, **extra):
    kwargs = dict(
        dtype=DTYPES[cfg.model.dtype],
        trust_remote_code=bool(cfg.model.trust_remote_code),
        **extra,
    )
    if cfg.model.get("revision"):
        kwargs["revision"] = cfg.model.revision
    attention = cfg.model.get("attn_implementation")
    by_lever = not attention and lever(cfg.trainer, "eager_attention")  # trainer.zoo: faster than SDPA on CPU
    if by_lever:
        attention = "eager"
    if attention:
        kwargs["attn_implementation"] = attention
    if cfg.model.get("use_kernels"):
        kwargs["use_kernels"] = True
    quant = quantization_config(cfg.peft)
    if quant is not None:
        check_4bit_shapes(path, bool(cfg.model.trust_remote_code))
        kwargs["quantization_config"] = quant
        kwargs["dtype"] = DTYPES[cfg.peft.bnb_4bit_compute_dtype]
        if torch.cuda.is_available() and not cfg.trainer.get("use_cpu", False) and not _sharded():
            # Each data-parallel process quantizes its own copy onto its own GPU (FSDP / ZeRO-3 place shards).
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = auto_cls.from_pretrained(path, **kwargs)
    if by_lever:
        mark_eager_by_lever(model)  # trainer.zoo.sdpa_sampling may sample it with SDPA
    if quant is not None:
        keep_4bit_trainable(model)
    return model


def keep_4bit_trainable(model) -> None:
    """Keep bitsandbytes from repacking 4-bit weights for its inference-only CPU kernel.

    On CPUs with AVX512-BF16, the first no-grad forward in eval mode (sampling, a reference pass) repacks every
    4-bit weight, and every later forward, training ones included, then runs a kernel with no backward: the
    gradient stops at each 4-bit layer's input, so the adapters below it train on a wrong gradient (measured on
    the tiny model: layer 0's LoRA gradient norm 0.011 instead of 0.030). With repacking off, every CPU takes
    the same dequantize-then-matmul path.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def load_policy(cfg, path: str | None = None) -> PolicyBundle:
    """The causal LM named by `cfg.model` (or an earlier stage's output `path`) with its PEFT config."""
    from transformers import AutoModelForCausalLM

    path = path or resolve_model_path(cfg.model, cfg.paths.cache_dir)
    tokenizer = load_tokenizer(path, bool(cfg.model.trust_remote_code))
    model = _from_pretrained(AutoModelForCausalLM, path, cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return PolicyBundle(model=model, tokenizer=tokenizer, peft_config=lora_config(cfg.peft), path=path)


def load_reference(cfg, path: str):
    """A frozen copy of the weights at `path`, for comparisons where the adapter cannot simply be disabled."""
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(AutoModelForCausalLM, path, cfg)
    model.requires_grad_(False)
    return model.eval()


def load_reward_model(cfg, path: str | None = None) -> PolicyBundle:
    """A scalar-head sequence classifier (reward or value model) on the same backbone."""
    from transformers import AutoModelForSequenceClassification

    path = path or resolve_model_path(cfg.model, cfg.paths.cache_dir)
    tokenizer = load_tokenizer(path, bool(cfg.model.trust_remote_code))
    model = _from_pretrained(AutoModelForSequenceClassification, path, cfg, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    return PolicyBundle(model=model, tokenizer=tokenizer, peft_config=lora_config(cfg.peft, "SEQ_CLS"), path=path)


def wrap_peft(bundle: PolicyBundle):
    """Wrap the model in its adapter, for the zoo's own trainers (TRL's trainers wrap it themselves)."""
    if bundle.peft_config is None:
        return bundle.model
    from peft import get_peft_model

    return get_peft_model(bundle.model, bundle.peft_config)


def export_merged(trained, bundle: PolicyBundle, cfg, out_dir: str | os.PathLike, causal_lm: bool = True) -> Path:
    """Save a stage's policy as plain full weights, so the next stage starts from it like from any checkpoint.

    LoRA adapters are merged into a full-precision copy of the base they were trained on (re-loaded unquantized
    under QLoRA, where merging into 4-bit weights would lose the update), so the next stage's reference policy is
    this stage's result.
    """
    out_dir = Path(out_dir)
    state = _gathered_state(trained) if _sharded() else None  # a collective: every rank takes part
    if not dist.is_main():  # under zoo.launch the main process writes; DDP ranks hold the same weights anyway
        dist.barrier()
        return out_dir
    try:
        return _export(trained, bundle, cfg, out_dir, causal_lm, state)
    finally:
        dist.barrier()  # the others load the next stage from out_dir only once it is complete


def _gathered_state(model) -> dict:
    """The whole state dict of a model whose weights are sharded over the processes (FSDP2, ZeRO-3), on CPU.
    Not exercised on CPU here: the GPU path, written to torch's and DeepSpeed's documented gather APIs."""
    if _fsdp():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _export(trained, bundle: PolicyBundle, cfg, out_dir: Path, causal_lm: bool, state: dict | None) -> Path:
    with atomic_dir(out_dir) as tmp:  # replaces an earlier export of the stage
        _save_merged(trained, bundle, cfg, tmp, causal_lm, state)
    return out_dir


def _save_merged(trained, bundle: PolicyBundle, cfg, tmp: Path, causal_lm: bool, state: dict | None) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if isinstance(trained, PeftModel):
        adapter_dir = tmp / "adapter"
        trained.save_pretrained(adapter_dir, state_dict=state)
        auto_cls = AutoModelForCausalLM if causal_lm else AutoModelForSequenceClassification
        extra = {} if causal_lm else {"num_labels": 1}
        base = auto_cls.from_pretrained(bundle.path, dtype=DTYPES[cfg.model.dtype],
                                        trust_remote_code=bool(cfg.model.trust_remote_code), **extra)
        if not causal_lm:
            base.config.pad_token_id = bundle.tokenizer.pad_token_id
        merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    else:
        merged = trained
    # The adapter, when there was one, stays beside the merged weights in adapter/.
    merged.save_pretrained(tmp, state_dict=state if merged is trained else None)
    bundle.tokenizer.save_pretrained(tmp)
