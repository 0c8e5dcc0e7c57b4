"""Performance levers the zoo pulls around TRL's trainers (measured in results/bench/cpu_defaults.json and
results/bench/levers.json; switched by `trainer.zoo.*`, documented in conf/trainer/cpu.yaml). Each leaves results
unchanged up to float rounding: tests/test_levers.py trains with it on and off and compares the losses, or, for the
sampling levers, the tokens or the distribution they are drawn from.
"""

from __future__ import annotations

import os
import platform
import sys
from contextlib import contextmanager
from contextvars import ContextVar

from zoo.checks import known_keys, require

BLOCK = "zoo"  # trainer.zoo: the levers' block, beside the TrainingArguments fields
LEVERS = {  # name -> default where trainer.zoo does not say
    "completion_only_logits": True,
    "contiguous_head": True,
    "cdf_sampling": True,
    "merged_lora_sampling": True,
    "cast_once_sampling": True,
    "packed_sampling": True,
    "fused_projections": True,
    "decode_attention": True,
    "sdpa_sampling": True,
    "training_precision_sampling": True,
    "length_buckets": True,
    "static_cache": False,
    "compiled_decode": False,
    "eager_attention": False,
    "malloc_keep": True,
    "reference_precompute": False,
    "cpu_logprob_head": True,
    "sparse_dropout": True,
}


# Levers that may also be `auto`: on or off by what the run does, decided where it is used (`lever(..., auto=)`).
AUTO = {"reference_precompute": "on when the stage trains at least one epoch over its pairs"}


def check_levers(block, path: str) -> None:
    known_keys(block, LEVERS, path)
    for key, value in (block or {}).items():
        if key in AUTO:
            require(isinstance(value, bool) or value == "auto",
                    f"{path}.{key}={value!r}: expected true, false or auto ({AUTO[key]})")
        else:
            require(isinstance(value, bool), f"{path}.{key}={value!r}: expected true or false")


def lever(trainer_cfg, name: str, *, auto: bool = False) -> bool:
    """trainer.zoo.<name>; for a lever set to `auto`, the caller's decision `auto`."""
    block = trainer_cfg.get(BLOCK) or {}
    value = block.get(name, LEVERS[name])
    return auto if value == "auto" else bool(value)


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


# ------------------------------------------------------------------------------------- which levers are on
# The sampling levers (zoo/sampling_levers.py; the weights they prepare: zoo/sampling_weights.py) act wherever the zoo
# samples (zoo.generation.sample: the harness, preference pairs, PPO rollouts, critique/revise) and around TRL's own
# `generate` calls (GRPO/RLOO, through `fit`). `train.run` sets every lever for the whole run from trainer.zoo
# (`using`); outside a run their defaults hold.
SAMPLING = ("contiguous_head", "cdf_sampling", "merged_lora_sampling", "cast_once_sampling", "packed_sampling",
            "fused_projections", "sdpa_sampling", "decode_attention")
# How decoding is organised rather than what each step computes (bench.sampling has a variant for each):
# `length_buckets` (on by default) acts in zoo.generation.sample only, `static_cache` and `compiled_decode` (off: they
# measured slower or pay only after minutes of compiling) on every generate call the levers wrap (TRL's GRPO/RLOO
# too).
DECODING = ("length_buckets", "static_cache", "compiled_decode")
_ACTIVE: ContextVar[dict] = ContextVar("zoo_levers", default={})


@contextmanager
def using(trainer_cfg):
    """Make trainer.zoo's settings the ones `active` reports, for the duration of the block."""
    token = _ACTIVE.set({name: lever(trainer_cfg, name) for name in LEVERS})
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active(name: str) -> bool:
    return bool(_ACTIVE.get().get(name, LEVERS[name]))


# ------------------------------------------------------------------------------------------------- allocator
# glibc's mallopt parameters (malloc.h). M_TRIM_THRESHOLD -1 disables trimming completely (mallopt(3)).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEEP_FREED = {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": -1}
_KEPT: dict = {}  # what an earlier run in this process applied: glibc has no call that undoes it


def _glibc():
    """The process's C library when it is glibc (a CDLL with `mallopt`), else the reason it is not used."""
    if sys.platform != "linux":
        return None, f"not Linux ({sys.platform})"
    libc, version = platform.libc_ver()
    if libc != "glibc":
        return None, f"not glibc (platform.libc_ver() = {libc or 'unknown'!r})"
    import ctypes

    lib = ctypes.CDLL(None)
    if not hasattr(lib, "mallopt"):
        return None, f"glibc {version} without mallopt"
    return lib, None


def malloc_keep(enabled: bool) -> dict:
    """What trainer.zoo.malloc_keep applied (`_malloc_keep`), with any glibc malloc settings the environment gave
    the process at start-up (in effect whatever the lever does)."""
    out = _malloc_keep(enabled)
    env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES"}
    return {**out, "environment": env} if env else out


def _malloc_keep(enabled: bool) -> dict:
    """trainer.zoo.malloc_keep: tell glibc's malloc to keep freed memory for reuse, from the start of a run.

    By default glibc serves each large block (a tensor) with a fresh mmap and unmaps it on free, so every training
    step page-faults and zeroes its activations afresh; M_MMAP_MAX=0 serves every block from the heap and
    M_TRIM_THRESHOLD=-1 never hands the heap's top back. Set in the environment before Python started
    (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2**40) it made a DPO step 1.20x faster on 2 cores at the same loss
    and +2% peak RSS (results/bench/levers_malloc.json); set here, it covers every allocation after the run starts.
    The cost: memory a run frees stays in the process (RSS does not shrink after a peak). Returns what was applied,
    for env.json: {"mallopt": true, "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": -1}, or {"mallopt": false, "why": ...}.
    """
    if not enabled:
        out = {"mallopt": False, "why": "trainer.zoo.malloc_keep=false"}
        if _KEPT:  # an earlier run of this process set it, and mallopt cannot be taken back
            out["still_in_effect_from_an_earlier_run"] = dict(_KEPT)
        return out
    lib, why = _glibc()
    if lib is None:
        return {"mallopt": False, "why": why}
    import ctypes

    lib.mallopt.argtypes, lib.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    for name, param in (("M_MMAP_MAX", M_MMAP_MAX), ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD)):
        if lib.mallopt(param, KEEP_FREED[name]) != 1:  # 1 on success, 0 on error
            return {"mallopt": False, "why": f"mallopt({name}, {KEEP_FREED[name]}) returned an error",
                    **({"applied": dict(_KEPT)} if _KEPT else {})}
        _KEPT[name] = KEEP_FREED[name]
    return {"mallopt": True, **KEEP_FREED}
