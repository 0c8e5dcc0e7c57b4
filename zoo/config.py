"""Validate the composed config and turn `trainer.*` + `algo.args.*` into TRL config dataclasses.

Everything here runs before any model or dataset loads, so a typo costs a second, not a model load. Errors
name the key path (`algo.args.beta`) and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

from zoo.errors import ConfigError
from zoo.levers import BLOCK as LEVERS_BLOCK


# Value rules TRL/transformers would only enforce deep inside a trainer (or not at all).
_RULES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "learning_rate": (lambda v: v >= 0, "a learning rate >= 0"),
    "beta": (lambda v: v >= 0, "a KL coefficient beta >= 0"),
    "max_steps": (lambda v: v == -1 or v > 0, "-1 (use epochs) or a positive step count"),
    "num_train_epochs": (lambda v: v > 0, "a positive number of epochs"),
    "per_device_train_batch_size": (lambda v: v >= 1, "a batch size >= 1"),
    "per_device_eval_batch_size": (lambda v: v >= 1, "a batch size >= 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, "an integer >= 1"),
    "max_grad_norm": (lambda v: v >= 0, "a gradient-norm bound >= 0"),
    "weight_decay": (lambda v: v >= 0, "weight decay >= 0"),
    "warmup_ratio": (lambda v: 0 <= v <= 1, "a ratio in [0, 1]"),
    "label_smoothing": (lambda v: 0 <= v < 0.5, "a value in [0, 0.5)"),
    "max_length": (lambda v: v is None or v > 0, "a positive token count or null"),
    "max_completion_length": (lambda v: v is None or v > 0, "a positive token count or null"),
    "temperature": (lambda v: v > 0, "a sampling temperature > 0"),
    "num_ppo_epochs": (lambda v: v >= 1, "an integer >= 1"),
    "num_mini_batches": (lambda v: v >= 1, "an integer >= 1"),
}

# Rules that differ by trainer: DPO's beta is a temperature (0 divides by zero), GRPO's a KL weight (0 = off).
_CLASS_RULES: dict[str, dict[str, tuple[typing.Callable[[Any], bool], str]]] = {
    "DPOConfig": {"beta": (lambda v: v > 0, "beta > 0 (DPO's beta scales the implicit reward)")},
}

# Keys the zoo sets itself from other parts of the config.
_MANAGED = {"output_dir", "run_name", "report_to"}
# trainer.zoo: the zoo's own performance levers, beside the TrainingArguments fields, not one of them.
ZOO_LEVERS = LEVERS_BLOCK

# Override keys under which any field of the TRL config may be set from the command line without `+`.
_OPEN_PREFIXES = ("algo.args.", "trainer.", "stages.")


def normalize_overrides(overrides: list[str]) -> list[str]:
    """Let `algo.args.<field>=v` set any TRL field, present in the YAML or not (Hydra would demand `++`)."""
    out = []
    for o in overrides:
        bare = o.lstrip("+~")
        if o == bare and "=" in o and bare.startswith(_OPEN_PREFIXES) and (
            not bare.startswith("stages.") or ".args." in bare.split("=", 1)[0]
        ):
            o = "++" + o
        out.append(o)
    return out


def _choices(field: dataclasses.Field, hint) -> list[str] | None:
    if typing.get_origin(hint) is typing.Literal:
        return [str(a) for a in typing.get_args(hint)]
    if field.metadata.get("choices"):  # declared by the dataclass (TRL's KTO/CPO loss types, samplers, ...)
        return [str(c) for c in field.metadata["choices"]]
    help_text = field.metadata.get("help", "")
    m = re.search(r"Possible values are:?(.*?)(?:\.\s|\.$|$)", help_text, re.S)
    if not m:
        return None
    found = re.findall(r"`'?([\w-]+)'?`", m.group(1))
    return found or None


def _check_type(path: str, value, hint):
    """Return `value` coerced to `hint` (ints to floats, a str to a one-item list), or raise ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(path, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{path}={value!r}: expected {_describe(hint)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}={value!r}: expected one of {list(args)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str) and args and args[0] is str:
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}={value!r}: expected a list")
        inner = args[0] if args else Any
        return [_check_type(f"{path}[{i}]", v, inner) for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}={value!r}: expected a mapping")
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [e.value for e in hint]
        if value not in allowed and not isinstance(value, hint):
            raise ConfigError(f"{path}={value!r}: expected one of {allowed}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}={value!r}: expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}={value!r}: expected an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r}: expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}={value!r}: expected a string")
        return value
    return value


def _describe(hint) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "null")


def _check_field(path: str, field: dataclasses.Field, hint, value, rules=_RULES):
    value = _check_type(path, value, hint)
    choices = _choices(field, hint)
    if choices and value is not None:
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v not in choices:
                raise ConfigError(f"{path}={v!r}: unknown value; allowed: {choices}")
    name = path.rsplit(".", 1)[-1]
    if name in rules and value is not None:
        ok, expected = rules[name]
        if not ok(value):
            raise ConfigError(f"{path}={value!r}: expected {expected}")
    return value


def training_arguments(cfg: DictConfig) -> dict:
    """trainer.* as plain TrainingArguments fields (without the zoo's own levers), for scripts that build a TRL
    config themselves, e.g. the benchmarks' plain-TRL sides."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer.pop(ZOO_LEVERS, None)
    return trainer


def bf16_supported(use_cpu: bool) -> bool:
    """Whether bf16 autocast pays off here: a CUDA GPU with bf16, or a CPU with native bf16 (AVX512-BF16/AMX).

    On CPUs without it (e.g. AVX2-only), oneDNN emulates bf16 and a LoRA training step was measured ~15x
    slower than fp32, so `bf16: auto` picks fp32 there.
    """
    import torch

    if not use_cpu:  # a GPU config: on a machine without CUDA (a login node, a dry run) TrainingArguments would
        # refuse bf16 on the CPU it falls back to, so the CPU's support must not decide it
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def trl_args(config_cls, sections: list[tuple[str, Any]], **managed):
    """Build `config_cls` from (key path, mapping) sections, later sections overriding earlier ones."""
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    hints = typing.get_type_hints(config_cls)
    values: dict[str, Any] = {}
    for prefix, section in sections:
        section = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else section
        for key, value in (section or {}).items():
            path = f"{prefix}.{key}"
            if key == ZOO_LEVERS and prefix == "trainer":
                continue
            if key in _MANAGED:
                raise ConfigError(f"{path}: set by the zoo from paths/logger config; remove it")
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=3)
                hint = f"; did you mean {close}?" if close else ""
                raise ConfigError(f"{path}: {config_cls.__name__} has no field {key!r}{hint}")
            if key == "bf16" and value == "auto":
                value = bf16_supported(bool(values.get("use_cpu", False)))
            rules = {**_RULES, **_CLASS_RULES.get(config_cls.__name__, {})}
            values[key] = _check_field(path, fields[key], hints[key], value, rules)
    values.update(managed)
    try:
        return config_cls(**values)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{sections[-1][0]}: {config_cls.__name__} rejected these values: {e}") from e


def validate(cfg: DictConfig) -> None:
    """Every group's own checks (each beside what it validates) and the ones that span groups. The TRL fields
    are checked when each stage's TRL config is built (_stage_args in zoo.train)."""
    from zoo import rewards
    from zoo.algos import REGISTRY
    from zoo.checks import require
    from zoo.data import check_data_config
    from zoo.eval import check_eval_config
    from zoo.levers import check_levers
    from zoo.models import check_model_config, check_model_path, check_peft_config
    from zoo.rlaif.judging import check_judge

    for name, stage in iter_stages(cfg):
        path = stage_path(cfg, name)
        require(stage.name in REGISTRY, f"{path}.name={stage.name!r}: unknown algorithm; known: {sorted(REGISTRY)}")
        module = REGISTRY[stage.name]
        extra = set(stage) - {"name", "args"} - set(module.EXTRA_KEYS)
        require(not extra, f"{path}: unknown keys {sorted(extra)}; allowed besides name/args: "
                           f"{sorted(module.EXTRA_KEYS)}")
        require(name != "start", "stages.start: 'start' names the run's starting weights (eval.baseline); rename "
                                 "the stage")
        if stage.get("judge") is not None:
            check_judge(stage.judge, f"{path}.judge")
        if hasattr(module, "check_config"):
            module.check_config(stage, path)
    check_levers(cfg.trainer.get(ZOO_LEVERS), f"trainer.{ZOO_LEVERS}")
    check_model_config(cfg.model)
    check_model_path(cfg.model, cfg.paths.cache_dir)
    check_peft_config(cfg.peft)
    check_data_config(cfg.data)
    check_eval_config(cfg.eval, [n for n, a in iter_stages(cfg) if REGISTRY[a.name].PRODUCES == "policy"])
    rewards.check_functions(cfg.reward.functions)
    for key in ("gold", "independent"):
        name = cfg.data.get(key)
        require(name is None or name in rewards.REWARDS,
                f"data.{key}={name!r}: expected null or a reward function that needs no parameters: "
                f"{sorted(rewards.REWARDS)}")
    require(cfg.logger.backend in ("wandb", "none"), f"logger.backend={cfg.logger.backend!r}: expected wandb or none")


def iter_stages(cfg: DictConfig):
    """(stage name, algo config) in run order: `stages.*` first, then `algo` (the final stage)."""
    stages = [(name, stage) for name, stage in (cfg.get("stages") or {}).items()]
    names = [n for n, _ in stages]
    if cfg.algo.name in names:
        raise ConfigError(f"stages.{cfg.algo.name}: clashes with the final stage algo={cfg.algo.name}; rename it")
    return stages + [(cfg.algo.name, cfg.algo)]


def stage_path(cfg: DictConfig, name: str) -> str:
    """Where a stage's config sits: "algo" for the final stage, else "stages.<name>"."""
    return "algo" if name == cfg.algo.name else f"stages.{name}"
