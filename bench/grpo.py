"""The zoo's GRPO (`zoo.train.run`, algo=grpo) against the same GRPO written as a plain TRL script, in one run.

    WANDB_MODE=offline HF_HUB_OFFLINE=1 .venv/bin/python -m bench.grpo        # writes results/bench/grpo.json

Why: the zoo wraps TRL's GRPOTrainer (Hydra config, validation, named reward functions, NaN guard, resumable
fit). The question a user asks is what that wrapping costs per iteration. Product goal: zoo / plain TRL time per
iteration <= 1.05. Also reported: time per generated token (iteration time / tokens sampled in it), the number
that carries over between completion lengths.

Both sides run the *same* GRPOConfig values: the driver composes the zoo's config (algo=grpo data=sentiment
peft=lora), takes the keys it sets (trainer.* then algo.args.*, bf16 resolved) and hands exactly those to the
plain script, which builds `GRPOConfig(**those)` itself, loads the model directory with transformers, wraps
nothing but TRL's own LoRA `peft_config`, and scores with vaderSentiment directly (the zoo's sentiment gold is
VADER compound). Same prompts (the zoo's sentiment task rows), seed, LoRA values. One optimizer step = one
rollout of `--batch-size` sequences (batch / num_generations prompts x num_generations), asserted in the TRL
worker. Each run is a fresh subprocess, sides alternating order per repeat; the first WARMUP iterations are
dropped. Timing as in bench/ppo.py: on_train_begin -> first on_step_end, then on_step_end -> on_step_end.
The goal's ratio is the median over all kept iterations of each side; beside it, the ratio paired by iteration
index (iteration k does the same work on both sides: same seed, same samples, equal train losses) with the
spread of the work itself taken out.
Run it on a quiet machine (see bench/ppo.py on OpenMP threads beside a busy core).

`--model tiny --steps 3 --repeats 1 --threads 1 --out /tmp/g.json`: a ~1-minute smoke test (numbers mean nothing).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench.common import parse_args, spread, start_load_log, trailer, write_result

_T0 = time.perf_counter()

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "results" / "bench" / "grpo.json"
GOAL = 1.05  # zoo / plain TRL time per iteration
WARMUP = 1
SIDES = ("zoo", "trl")


def _overrides(a, bf16: bool) -> list[str]:
    return ["algo=grpo", f"model={a.model}", "peft=lora", "data=sentiment", "logger=none", "trainer=cpu",
            f"trainer.max_steps={a.steps}", f"trainer.per_device_train_batch_size={a.batch_size}",
            "trainer.logging_steps=1", "trainer.save_strategy=no", f"trainer.bf16={str(bf16).lower()}",
            f"algo.args.num_generations={a.num_generations}",
            f"algo.args.max_completion_length={a.max_completion_length}"]


def _spec(a, bf16: bool, scratch: Path) -> dict:
    """The plain script's inputs, all read from the zoo's composed config so both sides train the same thing."""
    from omegaconf import OmegaConf

    from bench.dpo import _compose
    from zoo.config import training_arguments
    from zoo.data import load_task
    from zoo.models import resolve_model_path

    overrides = _overrides(a, bf16)
    cfg = _compose(overrides, str(scratch / "compose"))
    model_dir = resolve_model_path(cfg.model, cfg.paths.cache_dir)
    args = {**training_arguments(cfg), **OmegaConf.to_container(cfg.algo.args, resolve=True)}
    args.update(bf16=bf16, report_to=[])  # bf16 as the zoo resolves `auto`; no logger on either side
    peft = OmegaConf.to_container(cfg.peft, resolve=True)
    return {"model": a.model, "model_dir": str(model_dir), "dtype": cfg.model.dtype, "seed": cfg.trainer.seed,
            "zoo_overrides": overrides, "prompts": [r["prompt"] for r in load_task(cfg).train], "grpo_args": args,
            "lora": {k: peft[k] for k in ("r", "lora_alpha", "lora_dropout", "target_modules")}}


def per_token_s(interval_s: list[float], mean_lengths: list[float], batch: int) -> list[float]:
    """Seconds per generated token for each iteration: its wall time / (sequences x their mean length)."""
    return [t / (batch * n) for t, n in zip(interval_s, mean_lengths) if n > 0]


def paired_ratios(zoo_runs: list[dict], trl_runs: list[dict]) -> list[float]:
    """zoo/TRL mean iteration time per iteration index (warm-up dropped), each side averaged over its repeats."""
    def means(runs):
        return [statistics.fmean(col) for col in zip(*(r["interval_s"][WARMUP:] for r in runs))]

    return [z / t for z, t in zip(means(zoo_runs), means(trl_runs))]


def drive(a, bf16: bool, result_path: Path, load) -> dict:
    from bench.dpo import _env, _scalar_stats, machine_load, start_driver
    from bench.ppo import run_sides

    t_start, scratch, load_before, busy_before = start_driver("grpo")
    try:
        spec = _spec(a, bf16, scratch)
        runs = []
        for rep, side, res in run_sides(spec, scratch, SIDES, a.repeats, a.threads, module="bench.grpo",
                                        load=load):
            kept = res["interval_s"][WARMUP:]
            tok = per_token_s(kept, res["completion_mean_length"][WARMUP:], a.batch_size)
            res.update(side=side, repeat=rep, order=len(runs), iter_s_median=statistics.median(kept),
                       token_s_median=statistics.median(tok), token_s=tok)
            runs.append(res)
            print(f"[bench]   {res['iter_s_median']:.3f} s/iteration, {1e3 * res['token_s_median']:.2f} ms per "
                  f"generated token (medians of {len(kept)}), peak RSS {res['peak_rss_mb']:.0f} MiB, "
                  f"train_loss {res['train_loss']:.4f}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    by = {s: [r for r in runs if r["side"] == s] for s in SIDES}
    summary = {s: {"iter_s": spread([x for r in by[s] for x in r["interval_s"][WARMUP:]]),
                   "token_s": spread([x for r in by[s] for x in r["token_s"]]),
                   "completion_mean_length": spread([x for r in by[s] for x in r["completion_mean_length"][WARMUP:]]),
                   **_scalar_stats(by[s])} for s in SIDES}
    z, t = summary["zoo"], summary["trl"]
    ratios = {
        "zoo_over_trl_time_per_iteration": z["iter_s"]["median"] / t["iter_s"]["median"],
        "zoo_over_trl_time_per_generated_token": z["token_s"]["median"] / t["token_s"]["median"],
        "zoo_over_trl_peak_rss": z["peak_rss_mb"]["median"] / t["peak_rss_mb"]["median"],
        "zoo_over_trl_setup_s": z["setup_s"]["median"] / t["setup_s"]["median"],
        "per_repeat_zoo_over_trl_time": [x["iter_s_median"] / y["iter_s_median"] for x, y in zip(by["zoo"], by["trl"])],
        # Same seed, same data: iteration k samples the same completions on both sides (train losses match), so
        # zoo/TRL per iteration index (each side averaged over repeats) takes the work's own spread out of the ratio.
        "paired_zoo_over_trl_time_per_iteration": statistics.median(paired_ratios(by["zoo"], by["trl"])),
    }
    measured = ratios["zoo_over_trl_time_per_iteration"]
    env = _env()
    env.update(torch_threads=runs[0]["torch_threads"], bf16=bf16)
    result = {
        "benchmark": "GRPO: zoo.train.run (algo=grpo) vs a plain TRL GRPOTrainer script with the same GRPOConfig "
                     "values, time per iteration and per generated token; LoRA, CPU",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["WANDB_MODE=offline HF_HUB_OFFLINE=1 .venv/bin/python -m bench.grpo", *sys.argv[1:]]),
        "settings": {"model": spec["model"], "model_dir": spec["model_dir"], "dtype": spec["dtype"],
                     "peft": {"method": "lora", **spec["lora"]}, "zoo_overrides": spec["zoo_overrides"],
                     "grpo_config_values_both_sides": spec["grpo_args"],
                     "trl_resolved": by["trl"][0]["resolved"],
                     "rollout_per_iteration": f"{a.batch_size // a.num_generations} prompts x {a.num_generations} "
                                              f"completions x <= {a.max_completion_length} tokens",
                     "reward": "VADER compound (zoo: its sentiment gold; TRL script: vaderSentiment directly)",
                     "omp_num_threads": a.threads, "warmup_iterations_dropped": WARMUP, "repeats_per_side": a.repeats,
                     "order": [r["side"] for r in runs]},
        "goal": {"name": "zoo_over_trl_time_per_iteration", "max": GOAL, "measured": measured, "met": measured <= GOAL},
        "ratios": ratios,
        "summary": summary,
        "runs": [{k: r[k] for k in ("side", "repeat", "order", "iter_s_median", "token_s_median", "train_s", "setup_s",
                                    "process_s", "peak_rss_mb", "train_loss", "global_step", "interval_s", "token_s",
                                    "completion_mean_length")} for r in runs],
        **trailer(load, t_start, env, machine_load=machine_load(load_before, busy_before)),
    }
    write_result(result, result_path)
    print(f"\n{'':28s} {'zoo':>10s} {'plain TRL':>10s}")
    for name, key, scale in (("s / iteration (median)", "iter_s", 1), ("ms / generated token", "token_s", 1e3),
                             ("mean completion tokens", "completion_mean_length", 1), ("peak RSS MiB", "peak_rss_mb", 1),
                             ("setup s (start -> train)", "setup_s", 1)):
        print(f"{name:28s} {scale * z[key]['median']:10.3f} {scale * t[key]['median']:10.3f}")
    print(f"\nzoo / TRL time per iteration {measured:.3f} (goal <= {GOAL}: {'met' if measured <= GOAL else 'MISSED'}); "
          f"paired by iteration {ratios['paired_zoo_over_trl_time_per_iteration']:.3f}; "
          f"per generated token {ratios['zoo_over_trl_time_per_generated_token']:.3f}")
    print(f"[bench] wrote {result_path} in {result['bench_seconds']:.0f} s")
    return result


def _trl_worker(spec: dict, workdir: Path) -> dict:
    """The GRPO a user would write with TRL alone: no zoo, Hydra or OmegaConf import (bench.ppo's script)."""
    from bench.ppo import _grpo_worker

    return _grpo_worker(spec, workdir)


def _worker(side: str, spec_path: Path, workdir: Path, out: Path) -> None:
    spec = json.loads(spec_path.read_text())
    if side == "trl":
        res = _trl_worker(spec, workdir)
    else:
        from bench.ppo import _zoo_worker

        res = _zoo_worker("grpo", spec["zoo_overrides"], workdir, fit_module="zoo.algos.online")
    import torch

    res["setup_s"] = res.pop("t_train_begin") - _T0
    res["torch_threads"] = torch.get_num_threads()
    out.write_text(json.dumps(res))


def main(argv: list[str] | None = None) -> None:
    from bench.ppo import MODELS, _native_bf16

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=4, help="runs per side, order alternating")
    ap.add_argument("--steps", type=int, default=8, help="GRPO steps per run (the first %d dropped)" % WARMUP)
    ap.add_argument("--batch-size", type=int, default=8, help="sequences per iteration")
    ap.add_argument("--num-generations", type=int, default=4, help="completions per prompt (the group size)")
    ap.add_argument("--max-completion-length", type=int, default=32)
    ap.add_argument("--bf16", choices=("auto", "true", "false"), default="auto")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for every worker")
    ap.add_argument("--out", type=Path, default=RESULT)
    a = parse_args(ap, argv, SIDES, lambda w: _worker(w.worker, w.spec, w.workdir, w.out))
    if a is None:
        return
    if a.steps <= WARMUP + 1:
        ap.error(f"--steps must be > {WARMUP + 1} (the first {WARMUP} are dropped)")
    if a.batch_size % a.num_generations:
        ap.error(f"--batch-size {a.batch_size} must be divisible by --num-generations {a.num_generations}")
    load = start_load_log("grpo", a.require_quiet)
    bf16 = _native_bf16() if a.bf16 == "auto" else a.bf16 == "true"
    print(f"[bench] model={a.model}, trainer.bf16={bf16}", flush=True)
    drive(a, bf16, a.out, load)


if __name__ == "__main__":
    main()
