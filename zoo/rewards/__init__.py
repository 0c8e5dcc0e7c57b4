"""Reward functions, one protocol for all of them (the one TRL's GRPOTrainer calls):

    fn(prompts: list, completions: list, **columns) -> list[float | None]

`completions` are in the prompt's format (strings, or lists of messages for conversational prompts); extra
dataset columns (e.g. `answer`) arrive as keyword lists. None means "this function does not apply here".
Functions are selected by name with weights in conf/reward/*.yaml.
"""

from __future__ import annotations

import inspect
from typing import Callable

from zoo.rewards import judge, rbr, reasoning
from zoo.rewards.usage import tracked
from zoo.rewards.countdown import countdown_reward
from zoo.rewards.sentiment import sentiment_reward, textblob_reward
from zoo.rewards.verifiable import accuracy_reward

RewardFn = Callable[..., list]

# Reward functions that need no construction.
REWARDS: dict[str, RewardFn] = {
    "sentiment": sentiment_reward,
    "accuracy": accuracy_reward,
    "math_accuracy": reasoning.math_accuracy_reward,
    "format": reasoning.format_reward,
    "countdown": countdown_reward,
    "textblob": textblob_reward,
}
# Parametrised ones: conf/reward gives `{name: {weight: w, <param>: value, ...}}`.
FACTORIES: dict[str, Callable[..., RewardFn]] = {
    "soft_overlong": reasoning.soft_overlong,
    "cosine_length": reasoning.cosine_length,
    "repetition": reasoning.repetition,
    "rbr": rbr.make_rbr,
    "llm_judge": judge.make_llm_judge,
}
KNOWN = sorted([*REWARDS, *FACTORIES, "reward_model"])
# Parameter checks of factories whose values matter before anything loads.
CHECKS: dict[str, Callable[[dict, str], None]] = {"rbr": rbr.check_params, "llm_judge": judge.check_params}


class WeightedSum:
    """Weighted sum of several reward functions; a function's None is skipped, all None gives None."""

    def __init__(self, named: list[tuple[str, float, RewardFn]]):
        self.named = named
        self.__name__ = "+".join(n for n, _, _ in named)

    def __call__(self, prompts, completions, **columns):
        parts = [(w, fn(prompts, completions, **columns)) for _, w, fn in self.named]
        out = []
        for i in range(len(completions)):
            vals = [w * r[i] for w, r in parts if r[i] is not None]
            out.append(sum(vals) if vals else None)
        return out


def check_functions(functions, path: str = "reward.functions") -> None:
    """reward.functions (or any {name: weight | {weight, **params}} block): names, weights, parameters."""
    from zoo.checks import did_you_mean, require, unknown_key

    for name, spec in (functions or {}).items():
        where = f"{path}.{name}"
        require(name in KNOWN, f"{where}: unknown reward function{did_you_mean(name, KNOWN)}\n  known: {KNOWN}")
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            continue
        require(hasattr(spec, "items"), f"{where}={spec!r}: expected a weight or a mapping {{weight, <params>}}")
        params = dict(spec)
        weight = params.pop("weight", 1.0)
        require(isinstance(weight, (int, float)) and not isinstance(weight, bool),
                f"{where}.weight={weight!r}: expected a number")
        if name in FACTORIES:
            accepted = set(inspect.signature(FACTORIES[name]).parameters) - {"cfg"}
            unknown = sorted(set(params) - accepted)
            if unknown:
                raise unknown_key(where, unknown[0], accepted)
            check = CHECKS.get(name)
            if check:
                check(params, where)
        else:
            require(name == "reward_model" and set(params) <= {"path"} or not params,
                    f"{where}: takes no parameters besides weight{' and path' if name == 'reward_model' else ''}, "
                    f"got {sorted(params)}")


def get(name: str) -> RewardFn:
    """The registered function `name`, tracked (zoo.rewards.usage): a run knows which scorers it trained on."""
    if name not in REWARDS:
        raise KeyError(f"unknown reward function {name!r}; known: {KNOWN}")
    return tracked(name, REWARDS[name])


def named_functions(functions, artifacts: dict, cfg) -> list[tuple[str, float, RewardFn]]:
    """(name, weight, fn) for each configured reward; `spec` is a weight or {weight, **params}."""
    named = []
    for name, spec in (functions or {}).items():
        params = {} if isinstance(spec, (int, float)) else dict(spec)
        weight = float(spec) if isinstance(spec, (int, float)) else float(params.pop("weight", 1.0))
        if name == "reward_model":
            from zoo.rewards.reward_model import RewardModelReward

            path = params.get("path") or artifacts.get("reward_model")
            if path is None:
                raise ValueError("reward.functions.reward_model needs a path, or an `rm` stage earlier in the run")
            fn = RewardModelReward(path, cfg)
        elif name in FACTORIES:
            # Factories that load models (the RBR LLM grader) take the run config too.
            needs_cfg = "cfg" in inspect.signature(FACTORIES[name]).parameters
            fn = FACTORIES[name](**params, **({"cfg": cfg} if needs_cfg else {}))
        else:
            if params:
                raise ValueError(f"reward.functions.{name}: takes no parameters, got {sorted(params)}")
            fn = get(name)
        named.append((name, weight, tracked(name, fn)))
    return named


def build(functions, artifacts: dict, cfg) -> WeightedSum | None:
    """The configured proxy reward as one function (weighted sum), or None when none is configured."""
    named = named_functions(functions, artifacts, cfg)
    return WeightedSum(named) if named else None


def for_run(cfg, artifacts: dict) -> list[tuple[str, float, RewardFn]]:
    """The run's reward: `reward.functions` if configured, else the reward model an `rm` stage trained."""
    named = named_functions(cfg.reward.functions, artifacts, cfg)
    if not named and "reward_model" in artifacts:
        named = named_functions({"reward_model": 1.0}, artifacts, cfg)
    return named
