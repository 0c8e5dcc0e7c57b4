"""Probes: diagnostics that run on each evaluated policy beside the harness's sampled metrics, each on its own
prompts (sycophancy, capability, diversity, ...), each behind its own `eval.<name>` section and sized to stay on
by default on CPU.

A probe is a module in PROBES exposing
    KEY: str                                  its section of the `eval` group (e.g. "sycophancy")
    check_config(section, path: str) -> None  raise ConfigError naming `path.<key>` for a bad value
    measure(policy, tokenizer, section, *, eval_cfg, rows) -> dict[str, float | None]
        metric names without prefix; {} when the section turns the probe off. `eval_cfg`: the whole group
        (decoding, `seed`); `rows`: the task's held-out rows (probes with prompts of their own ignore them).
        Probes must not change the weights, and sample with `eval_cfg.seed` so every column sees the same random
        stream.
The harness prefixes the names like its own (`before/`, `eval/`, `eval_<stage>/`), so a probe's change is the
difference of its `eval/` and `before/` values, which `format_table` and `zoo.compare` show side by side.
"""

from __future__ import annotations

import importlib

PROBES = (
    "zoo.eval.diversity",
    "zoo.eval.sycophancy",
    "zoo.eval.capability",
    "zoo.eval.passk",
)


def modules() -> list:
    return [importlib.import_module(name) for name in PROBES]


def keys() -> tuple[str, ...]:
    return tuple(m.KEY for m in modules())


def check(eval_cfg) -> None:
    for module in modules():
        if eval_cfg.get(module.KEY) is not None:
            module.check_config(eval_cfg[module.KEY], f"eval.{module.KEY}")


def run(policy, tokenizer, eval_cfg, *, rows) -> dict:
    """Every probe's metrics for one policy (unprefixed)."""
    import torch

    out = {}
    with torch.no_grad():  # sampling draws from a stream of its own (zoo.seeds)
        for module in modules():
            section = eval_cfg.get(module.KEY)
            if section is not None:
                out.update(module.measure(policy, tokenizer, section, eval_cfg=eval_cfg, rows=rows))
    return out
