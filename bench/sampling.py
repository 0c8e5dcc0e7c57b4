"""What each sampling lever (trainer.zoo.contiguous_head / cdf_sampling / merged_lora_sampling / cast_once_sampling)
saves, alone and together, on the zoo's own sampler.

    python -m bench.sampling               # part of `make bench`; writes results/bench/sampling.json
    python -m bench.sampling --model tiny --rounds 1 --out /tmp/s.json   # smoke test (numbers mean nothing)

The embedded SmolLM2-135M under a LoRA r16 all-linear adapter (its B matrices drawn at random, as a trained
adapter's would be, so folding it in is real work) samples `--batch` completions of `--tokens` new tokens
(temperature 1) through `zoo.generation.sample`, as the harness, the preference-pair sampler and PPO's rollouts
do. A call runs as many decoding steps as its longest completion (rows that stopped early ride along), and the
levers that change the random stream change where rows stop, so the unit of time is the decoding step: seconds
per call / its longest completion. One process, the settings alternating within each round (order reversed every
other round), in bf16 weights, fp32 weights (the harness) and, where bf16 is native, fp32 weights under bf16
autocast (how a training run samples: PPO rollouts, TRL's GRPO/RLOO under the Trainer's bf16). Reported per
setting: the median ms per decoding step with min/max over rounds, and the speedup against all levers off (the
ratio of medians, and the per-round ratios).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import statistics
import time
from pathlib import Path

from bench.common import add_quiet_arg, machine, start_load_log, versions, write_result

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "results" / "bench" / "sampling.json"
SETTINGS = {
    "none": (),
    "contiguous_head": ("contiguous_head",),
    "cdf_sampling": ("cdf_sampling",),
    "merged_lora_sampling": ("merged_lora_sampling",),
    "cast_once_sampling": ("cast_once_sampling",),
    "all": ("contiguous_head", "cdf_sampling", "merged_lora_sampling", "cast_once_sampling"),
}


def _trainer(on: tuple[str, ...]):
    from omegaconf import OmegaConf

    from zoo.levers import SAMPLING

    return OmegaConf.create({"zoo": {name: name in on for name in SAMPLING}})


def _model(name: str, dtype):
    import torch
    from hydra import compose, initialize_config_dir

    from zoo.config import normalize_overrides
    from zoo.models import load_policy, wrap_peft

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=normalize_overrides(
            [f"model={name}", "peft=lora", "paths.output_dir=/tmp/zoo-bench-sampling"]))
    bundle = load_policy(cfg)
    model = wrap_peft(bundle).to(dtype)
    torch.manual_seed(0)
    for pname, p in model.named_parameters():
        if "lora_B" in pname:
            torch.nn.init.normal_(p, std=0.01)
    return model, bundle.tokenizer


def measure(model, tok, *, batch: int, tokens: int, rounds: int, autocast: bool = False) -> dict:
    from contextlib import nullcontext

    import torch

    from zoo import levers
    from zoo.generation import sample

    prompts = [f"Write a short review of movie number {i}. The film" for i in range(batch)]
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    names = list(SETTINGS)
    for r in range(rounds + 1):  # round 0 warms up every setting and is dropped
        for name in names if r % 2 else names[::-1]:
            amp = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()
            with levers.using(_trainer(SETTINGS[name])), amp:
                t = time.perf_counter()
                out = sample(model, tok, prompts, max_new_tokens=tokens, temperature=1.0, batch_size=batch, seed=r)
                dt = time.perf_counter() - t
            if r:
                times[name].append(dt / max(len(c) for c in out.completion_ids))
    base = times["none"]
    res = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        res[name] = {"median_ms_per_step": 1e3 * med, "min_ms_per_step": 1e3 * min(ts),
                     "max_ms_per_step": 1e3 * max(ts), "per_round_ms_per_step": [1e3 * t for t in ts],
                     "speedup_vs_none": statistics.median(base) / med,
                     "per_round_speedup_vs_none": [b / t for b, t in zip(base, ts)]}
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", type=Path, default=RESULT)
    add_quiet_arg(ap)
    a = ap.parse_args(argv)
    load = start_load_log("sampling", a.require_quiet)

    import torch

    from zoo.config import bf16_supported

    torch.set_num_threads(a.threads)
    t0, load_before = time.perf_counter(), os.getloadavg()
    # bf16 weights; fp32 weights (the harness); fp32 weights under bf16 autocast (how training samples where bf16
    # is native: the zoo's PPO rollouts, TRL's GRPO/RLOO generate under the Trainer's autocast)
    modes = ["bfloat16", "float32", "float32_autocast_bf16"] if bf16_supported(use_cpu=True) else ["float32"]
    by_dtype = {}
    for mode in modes:  # one side per precision: every setting's rounds run inside it
        model, tok = _model(a.model, getattr(torch, mode.split("_")[0]))
        with load.side(mode):
            by_dtype[mode] = measure(model, tok, batch=a.batch, tokens=a.tokens, rounds=a.rounds,
                                     autocast=mode.endswith("autocast_bf16"))
        del model
    result = {
        "benchmark": "sampling levers on zoo.generation.sample",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": f"python -m bench.sampling --model {a.model} --batch {a.batch} --tokens {a.tokens} "
                   f"--rounds {a.rounds} --threads {a.threads}",
        "settings": {"model": a.model, "peft": "lora r16 all-linear, B ~ N(0, 0.01)", "batch": a.batch,
                     "new_tokens": a.tokens, "rounds": a.rounds, "threads": a.threads,
                     "bf16_native": bf16_supported(use_cpu=True)},
        "by_dtype": by_dtype,
        "machine": machine(load_before),
        "noisy": load.noisy,
        "load": load.result(),
        "env": versions(),
        "bench_seconds": time.perf_counter() - t0,
    }
    write_result(result, a.out)
    for dtype, res in by_dtype.items():
        print(dtype, {k: f"{v['median_ms_per_step']:.1f}ms x{v['speedup_vs_none']:.2f}" for k, v in res.items()})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
