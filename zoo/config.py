"""Validate the composed config and turn `trainer.*` + `algo.args.*` into TRL config dataclasses.

Everything here runs before any model or dataset loads, so a typo costs a second, not a model load. Errors
name the key path (`algo.args.beta`) and what is allowed.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from zoo.checks import check_value, helps, unknown_key
from zoo.checks import choices_of as _choices  # noqa: F401  (tests read a TRL field's choices through it)
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

# Override keys the zoo validates itself: set from the command line without `+`, present in the YAML or not, so a
# TRL field the YAML leaves out can be set, and a misspelt key reaches the zoo's check and its did-you-mean
# (`algo.pairs.num_sample=4` -> "did you mean num_samples?") instead of Hydra's bare "not in struct".
_OPEN_PREFIXES = ("algo.", "trainer.", "stages.", "data.", "eval.")


def normalize_overrides(overrides: list[str]) -> list[str]:
    """`algo.args.<field>=v` (any TRL field) and every key of the zoo's validated blocks, as Hydra's `++`; except a
    key a sweep file on the command line sweeps (`+sweeps=<name>`), which takes the file's own spelling: Hydra's
    basic sweeper matches keys as written, so `++trainer.seed=0,1,2` would sweep beside the file's `trainer.seed`
    (a grid of duplicate jobs) instead of replacing it."""
    swept = swept_keys(overrides)
    out = []
    for o in overrides:
        bare = o.lstrip("+~")
        if o == bare and "=" in o and bare.startswith(_OPEN_PREFIXES):
            key = bare.split("=", 1)[0]
            o = swept[key] + o[len(key):] if key in swept else "++" + o
        out.append(o)
    return out


SWEEPS_DIR = Path(__file__).resolve().parents[1] / "conf" / "sweeps"


def swept_keys(overrides: list[str]) -> dict[str, str]:
    """{bare key: the key as written} for `hydra.sweeper.params` in the sweep files the overrides name (`+sweeps=a`,
    `+sweeps=[a,b]`)."""
    keys: dict[str, str] = {}
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key != "sweeps":
            continue
        for name in value.strip("[]").split(","):
            path = SWEEPS_DIR / f"{name.strip()}.yaml"
            if path.is_file():
                params = ((OmegaConf.load(path).get("hydra") or {}).get("sweeper") or {}).get("params") or {}
                keys.update({str(k).lstrip("+~"): str(k) for k in params})
    return keys


def _check_field(path: str, field: dataclasses.Field, hint, value, rules=_RULES):
    return check_value(path, field, hint, value, rules.get(path.rsplit(".", 1)[-1]))


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
                raise unknown_key(prefix, key, fields, helps(config_cls), owner=config_cls.__name__)
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
    from zoo.checks import known_keys, require
    from zoo.data import check_data_config
    from zoo.eval import check_eval_config
    from zoo.levers import check_levers
    from zoo.models import check_model_config, check_model_path, check_peft_config
    from zoo.rlaif.judging import check_judge

    for name, stage in iter_stages(cfg):
        path = stage_path(cfg, name)
        require(stage.name in REGISTRY, f"{path}.name={stage.name!r}: unknown algorithm; known: {sorted(REGISTRY)}")
        module = REGISTRY[stage.name]
        known_keys(stage, ("name", "args", *module.EXTRA_KEYS), path)
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
