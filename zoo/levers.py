"""Performance levers the zoo pulls around TRL's trainers (measured in results/bench/cpu_defaults.json; switched by
`trainer.zoo.*`, documented in conf/trainer/cpu.yaml). Each leaves results unchanged: tests/test_levers.py trains
with it on and off and compares the losses.
"""

from __future__ import annotations

from contextlib import contextmanager

from zoo.checks import known_keys, require

BLOCK = "zoo"  # trainer.zoo: the levers' block, beside the TrainingArguments fields
LEVERS = {"completion_only_logits": True}  # name -> default where trainer.zoo does not say


def check_levers(block, path: str) -> None:
    known_keys(block, LEVERS, path)
    for key, value in (block or {}).items():
        require(isinstance(value, bool), f"{path}.{key}={value!r}: expected true or false")


def lever(trainer_cfg, name: str) -> bool:
    block = trainer_cfg.get(BLOCK) or {}
    return bool(block.get(name, LEVERS[name]))


@contextmanager
def completion_only_logits(enabled: bool = True):
    """Score TRL's fused LM head only at the positions that have a label (completion tokens), on CPU too.

    TRL 1.16 computes per-token log-probs (DPO, SFT, GRPO, RLOO, KTO) with a chunked LM-head kernel. On CUDA/XPU it
    projects only the labelled positions; elsewhere it projects every position, prompt included, then masks the
    prompt away — there to keep tile shapes fixed for compiling backends, which eager CPU execution does not need.
    With a 49k vocabulary the head is a large share of a step, so scoring the completions alone halved a DPO step of
    SmolLM2-135M on 2 CPU cores (6.2-7.1 s -> 3.3-3.4 s, batch 8, arithmetic pairs) with a bit-identical loss.
    """
    if not enabled:
        yield
        return
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton  # TRL's "score labelled positions only" switch (also picks its kernel elsewhere)
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original
