"""The zoo on one CUDA GPU against plain TRL scripts at the same settings, plus one step of each GPU-only path.

    make bench-gpu                              # = python -m bench.gpu; writes results/bench/gpu.json
    python -m bench.gpu --dry-run               # every side built on this machine (CPU is fine), nothing trained

Compared (SmolLM2-135M + LoRA r16 all-linear, batch 8, `trainer=gpu` as composed: bf16, activation
checkpointing, TRL's default fused AdamW): SFT, DPO and GRPO, each two ways on the same rows, seed and settings:

  zoo    `zoo.train.run(cfg)` stopped once training returns (bench.cpu_defaults' zoo worker)
  plain  a TRL script with the zoo's resolved TrainingArguments values (bf16, activation checkpointing, optimizer,
         learning rate, batch, ...; bench.cpu_defaults' plain worker), which never imports the zoo

Each run is a fresh process; repeats alternate the side order. Per run: the wall time of every step (CUDA
synchronised at the step's ends; the first WARMUP dropped), tokens per second (TRL's `num_tokens`: the tokens the
trainer consumed, prompt and completion, over the kept steps' time) and the peak GPU memory
(torch.cuda.max_memory_allocated). Per algorithm: each figure's median over repeats with its spread, and the zoo's
overhead, zoo step time / plain step time, per repeat and as the ratio of medians (goal <= 1.10).

One step each, zoo only, recorded as passed or failed with what was checked (a failure does not stop the bench):
  qlora        DPO with peft=qlora: the base in bitsandbytes 4-bit on CUDA, LoRA on top
  gpu_trainer  SFT with trainer=gpu, trainer.bf16=true, trainer.optim=adamw_torch_fused: the optimizer is fused
  ppo          one iteration of the zoo's PPO (rollout, reward, value and policy update)

Designed to take <= 8 minutes on one H100/H200, an estimate not yet timed: 21 worker processes (the 3 checks, then
3 repeats x 3 algorithms x 2 sides) of roughly 15-25 s each (imports, CUDA start, model load, 10 steps);
`--budget-s` (default 420) starts no repeat that would end past it (`truncated` in the file). Without CUDA it stops with one line and exit 2; `--dry-run` builds every side's config, model and trainer
(on the tiny model with `--model tiny`) in this process without training, as tests/test_bench_gpu.py does.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bench.common import (add_quiet_arg, add_worker_args, run_worker, spread, start_load_log, trailer, versions,
                          write_result)

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "results" / "bench" / "gpu.json"
GOAL = 1.10  # zoo step time / plain step time
WARMUP = 2
COMPARED = ("sft", "dpo", "grpo")
SIDES = ("zoo", "plain")
# The TrainingArguments values the plain side takes from the zoo's resolved config, beside cpu_defaults' shared
# algorithm fields: what trainer=gpu decides (bf16 `auto` is resolved for this machine).
GPU_FIELDS = ("use_cpu", "bf16", "activation_checkpointing", "optim", "dataloader_num_workers")
CHECKS = {  # name -> (algo, fit module (None: zoo.algos.<algo>), overrides after trainer=gpu)
    "qlora": ("dpo", "zoo.algos.preference", ["data=arithmetic", "peft=qlora"]),
    "gpu_trainer": ("sft", None, ["data=arithmetic", "peft=lora", "trainer.bf16=true",
                                  "trainer.optim=adamw_torch_fused"]),
    "ppo": ("ppo", None, ["data=sentiment", "peft=lora", "algo.args.max_completion_length=32",
                          "algo.args.num_ppo_epochs=1", "algo.args.num_mini_batches=1"]),
}


# ----------------------------------------------------------------------------------------------- specs


def compared_spec(algo: str, a, scratch: Path) -> dict:
    """bench.cpu_defaults' spec for `algo` under trainer=gpu, with the zoo's resolved GPU settings for the plain side."""
    from bench.cpu_defaults import _compose, _spec
    from zoo.algos import REGISTRY
    from zoo.config import trl_args

    spec = _spec(algo, a.steps, a.batch_size, scratch, extra=("trainer=gpu", *a.override), model=a.model)
    cfg = _compose(spec["overrides"], str(scratch / "compose"))
    built = trl_args(REGISTRY[algo].CONFIG_CLASS, [("trainer", cfg.trainer), ("algo.args", cfg.algo.args)],
                     output_dir=str(scratch / "resolve")).to_dict()
    spec["shared"].update({k: built[k] for k in GPU_FIELDS})
    return {**spec, "kind": "compared", "dry_run": a.dry_run}


def check_spec(name: str, a) -> dict:
    algo, fit_module, extra = CHECKS[name]
    overrides = [f"algo={algo}", f"model={a.model}", "logger=none", "trainer=gpu", *extra, *a.override,
                 "trainer.max_steps=1", f"trainer.per_device_train_batch_size={a.batch_size}",
                 "trainer.save_strategy=no", "trainer.logging_steps=1"]
    if a.dry_run:  # TrainingArguments refuses bf16 on a machine without CUDA; the rest is built as on a GPU
        overrides = [o for o in overrides if o != "trainer.bf16=true"]
    return {"kind": "check", "check": name, "algo": algo, "fit_module": fit_module, "overrides": overrides,
            "dry_run": a.dry_run}


# ----------------------------------------------------------------------------------------------- workers


class _Built(Exception):
    """Raised where training would start, in a dry run: the trainer is built, nothing trained."""


@contextmanager
def watch_training(dry_run: bool, zoo_side: bool, seen: list):
    """Note every trainer that starts training (its model, optimizer and settings are then described); in a dry run,
    stop there. The zoo's PPOTrainer has its own `train`; the plain side never imports the zoo."""
    from transformers import Trainer

    classes = [Trainer]
    if zoo_side:
        from zoo.rl.ppo_trainer import PPOTrainer

        classes.append(PPOTrainer)
    originals = [(cls, cls.__dict__["train"]) for cls in classes]
    for cls, real in originals:
        def train(self, *args, _real=real, **kwargs):
            seen.append(self)
            if dry_run:
                if self.optimizer is None:
                    self.create_optimizer()  # built, as train() would: the fused flag is checked on it
                raise _Built
            return _real(self, *args, **kwargs)

        cls.train = train
    try:
        yield
    finally:
        for cls, real in originals:
            cls.train = real


def describe(trainer) -> dict:
    """What a side built: its trainer, device, precision, optimizer (fused or not) and 4-bit layers."""
    opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it once training starts
    model = trainer.model
    four_bit = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
    return {"trainer": type(trainer).__name__, "device": str(next(model.parameters()).device),
            "bf16": bool(trainer.args.bf16), "optim": str(getattr(trainer.args.optim, "value", trainer.args.optim)),
            "optimizer": type(opt).__name__ if opt is not None else None,
            "fused": bool(opt.defaults.get("fused")) if opt is not None else None,
            "activation_checkpointing": bool(trainer.args.activation_checkpointing),
            "linear_4bit_layers": four_bit,
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def run_side(spec: dict, side: str, workdir: Path) -> dict:
    """One side of one spec, in this process: trained (timings, tokens, peak GPU memory) or, in a dry run, built."""
    import torch

    from bench import cpu_defaults
    from bench.ppo import _zoo_worker as zoo_run

    seen: list = []
    res = {}
    with watch_training(spec["dry_run"], side != "plain", seen):
        try:
            if spec["kind"] == "check":
                res = zoo_run(spec["algo"], spec["overrides"], workdir, fit_module=spec["fit_module"])
            elif side == "zoo":
                res = cpu_defaults._zoo_worker(spec, workdir)
            else:
                res = cpu_defaults._plain_worker(spec, side, workdir)
        except _Built:
            res = {"dry_run": True}
    res.pop("t_train_begin", None)
    res["built"] = describe(seen[-1])
    res["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_initialized() else None
    return res


def _worker(side: str, spec_path: Path, workdir: Path, out: Path) -> None:
    res = run_side(json.loads(spec_path.read_text()), side, workdir)
    if res.get("train_loss") is not None and not math.isfinite(res["train_loss"]):
        raise SystemExit(f"bench.gpu: {side}: the training loss is {res['train_loss']}")
    out.write_text(json.dumps(res))


# ----------------------------------------------------------------------------------------------- driver


def tokens_per_s(run: dict) -> float | None:
    """The tokens the trainer consumed in the kept steps (TRL's running `num_tokens`) over those steps' time."""
    tokens = dict(run.get("num_tokens") or [])
    last, first = len(run["interval_s"]), WARMUP
    if last not in tokens or first not in tokens:
        return None
    return (tokens[last] - tokens[first]) / sum(run["interval_s"][WARMUP:])


def summarise(runs: list[dict]) -> dict:
    """Per side: step time, tokens/s and peak GPU memory, each a median over repeats with its spread; the zoo's
    overhead (zoo / plain step time) as the ratio of medians and per repeat."""
    out = {}
    for side in SIDES:
        rs = [r for r in runs if r["side"] == side]
        out[side] = {"step_s": spread([statistics.median(r["interval_s"][WARMUP:]) for r in rs]),
                     "tokens_per_s": spread([t for r in rs if (t := tokens_per_s(r)) is not None] or [math.nan]),
                     "peak_gpu_mb": spread([r["peak_gpu_mb"] or math.nan for r in rs]),
                     "train_loss": [r["train_loss"] for r in rs], "built": rs[0]["built"]}
    zoo = [r for r in runs if r["side"] == "zoo"]
    plain = [r for r in runs if r["side"] == "plain"]
    per_repeat = [statistics.median(z["interval_s"][WARMUP:]) / statistics.median(p["interval_s"][WARMUP:])
                  for z, p in zip(zoo, plain)]
    ratio = out["zoo"]["step_s"]["median"] / out["plain"]["step_s"]["median"]
    out["zoo_over_plain_time"] = {"median": ratio, "per_repeat": per_repeat, "goal_max": GOAL, "met": ratio <= GOAL}
    return out


def drive(a, load) -> dict:
    import torch

    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="zoo-bench-gpu-"))
    try:
        specs = {algo: compared_spec(algo, a, scratch) for algo in COMPARED}
        paths = {}
        for name, spec in [*specs.items(), *((n, check_spec(n, a)) for n in CHECKS)]:
            paths[name] = scratch / f"{name}.json"
            paths[name].write_text(json.dumps(spec))
        checks = {}
        for name in CHECKS:
            print(f"[bench] check {name} ...", flush=True)
            res = run_worker("bench.gpu", "zoo", paths[name], scratch, f"check-{name}", load=load, check=False,
                             timeout=300)
            checks[name] = {"passed": "error" not in res, **res}
            print(f"[bench] check {name}: {'passed' if checks[name]['passed'] else 'FAILED'}", flush=True)
        runs, truncated, last_repeat_s = [], False, 0.0
        for rep in range(a.repeats):
            if rep and time.perf_counter() - t0 + last_repeat_s > a.budget_s:
                truncated = True
                print(f"[bench] stopping after {rep} repeats: another would pass --budget-s {a.budget_s}", flush=True)
                break
            t_rep = time.perf_counter()
            for algo in COMPARED:
                for side in SIDES if rep % 2 == 0 else SIDES[::-1]:
                    tag = f"{algo}-{side}-{rep}"
                    res = run_worker("bench.gpu", side, paths[algo], scratch, tag, load=load, timeout=300)
                    res.update(algo=algo, side=side, repeat=rep)
                    runs.append(res)
                    print(f"[bench] {tag}: median step {statistics.median(res['interval_s'][WARMUP:]):.3f} s, peak "
                          f"GPU {res['peak_gpu_mb']:.0f} MiB, train loss {res['train_loss']:.4f}", flush=True)
            last_repeat_s = time.perf_counter() - t_rep
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    compared = {algo: summarise([r for r in runs if r["algo"] == algo]) for algo in COMPARED}
    result = {
        "benchmark": "the zoo (trainer=gpu) vs plain TRL scripts at the same settings on one CUDA GPU: SFT, DPO, "
                     "GRPO; one step each of QLoRA, trainer=gpu's bf16 + fused AdamW, and the zoo's PPO",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.gpu", *sys.argv[1:]]),
        "device": {"name": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
                   "memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30},
        "settings": {"model": a.model, "batch_size": a.batch_size, "steps_per_run": a.steps,
                     "warmup_steps_dropped": WARMUP, "repeats": a.repeats, "budget_s": a.budget_s,
                     "zoo_overrides": {algo: specs[algo]["overrides"] for algo in COMPARED},
                     "plain_settings": {algo: specs[algo]["shared"] for algo in COMPARED},
                     "check_overrides": {n: check_spec(n, a)["overrides"] for n in CHECKS}},
        "truncated": truncated,
        "goal": {"zoo_over_plain_time_max": GOAL,
                 "met": {algo: compared[algo]["zoo_over_plain_time"]["met"] for algo in COMPARED}},
        "compared": compared,
        "checks": checks,
        "runs": [{k: r.get(k) for k in ("algo", "side", "repeat", "interval_s", "step_s", "num_tokens",
                                        "peak_gpu_mb", "train_loss", "process_s")} for r in runs],
        **trailer(load, t0, versions()),
    }
    write_result(result, a.out)
    for algo, c in compared.items():
        z, p = c["zoo"], c["plain"]
        print(f"{algo:5s} step s zoo {z['step_s']['median']:.3f} plain {p['step_s']['median']:.3f}  tokens/s zoo "
              f"{z['tokens_per_s']['median']:.0f} plain {p['tokens_per_s']['median']:.0f}  peak GPU MiB zoo "
              f"{z['peak_gpu_mb']['median']:.0f} plain {p['peak_gpu_mb']['median']:.0f}  zoo/plain "
              f"{c['zoo_over_plain_time']['median']:.3f} (goal <= {GOAL}: "
              f"{'met' if c['zoo_over_plain_time']['met'] else 'MISSED'})")
    print(f"[bench] wrote {a.out} in {result['bench_seconds']:.0f} s")
    return result


def dry_run(a) -> dict:
    """Every side built in this process, nothing trained: {side name: what it built}."""
    scratch = Path(tempfile.mkdtemp(prefix="zoo-bench-gpu-dry-"))
    try:
        built = {}
        for algo in COMPARED:
            spec = compared_spec(algo, a, scratch)
            for side in SIDES:
                built[f"{algo}-{side}"] = run_side(spec, side, scratch / f"{algo}-{side}")["built"]
        for name in CHECKS:
            built[f"check-{name}"] = run_side(check_spec(name, a), "zoo", scratch / f"check-{name}")["built"]
        return built
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="a conf/model group (tiny: smoke tests and --dry-run)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per side of each algorithm, order alternating")
    ap.add_argument("--steps", type=int, default=10, help=f"optimizer steps per run (first {WARMUP} dropped)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="start no repeat that would end past this many seconds (the checks and one repeat always run)")
    ap.add_argument("--override", action="append", default=[],
                    help="an extra zoo override for every side, e.g. model.name_or_path=/path (repeatable)")
    ap.add_argument("--dry-run", action="store_true", help="build every side on this machine, train nothing")
    ap.add_argument("--out", type=Path, default=RESULT)
    add_quiet_arg(ap)
    add_worker_args(ap, SIDES)
    return ap


def main(argv: list[str] | None = None) -> None:
    ap = parser()
    a = ap.parse_args(argv)
    if a.worker:
        _worker(a.worker, a.spec, a.workdir, a.out)
        return
    if a.steps <= WARMUP + 1:
        ap.error(f"--steps must be > {WARMUP + 1} (the first {WARMUP} are dropped)")
    if a.dry_run:
        for name, built in dry_run(a).items():
            print(f"{name:18s} {json.dumps(built)}")
        return
    import torch

    if not torch.cuda.is_available():
        print("bench.gpu: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine, or "
              "pass --dry-run to build every side without training", file=sys.stderr)
        raise SystemExit(2)
    drive(a, start_load_log("gpu", a.require_quiet))


if __name__ == "__main__":
    main()
