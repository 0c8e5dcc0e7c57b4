"""The zoo's CPU defaults against TRL's own defaults and against a plain TRL script with the obvious settings.

    python -m bench.cpu_defaults                      # part of `make bench`; writes results/bench/cpu_defaults.json
    python -m bench.cpu_defaults --algos dpo --repeats 3 --steps 8

For each algorithm (sft, rm, dpo, grpo), three sides train the embedded SmolLM2-135M + LoRA r16 (all-linear) on the
same rows, batch, learning rate, seed and algorithm settings (the zoo's composed ones), each in a fresh subprocess,
the order alternating (side order reversed every repeat) because the machine is noisy:

  trl_defaults  a plain TRL script with TRL's own defaults plus `use_cpu` (TRL 1.16: bf16 and gradient
                checkpointing on)
  obvious       the same script with what a careful user would set: bf16 only where the CPU has it natively,
                no gradient checkpointing
  zoo           `zoo.train.run(cfg)` with `trainer=cpu` as composed (the zoo's defaults), stopped once training
                returns

Per run: wall time of every optimizer step (the first WARMUP dropped), the time spent before the first step
inside the trainer (e.g. precomputing reference log-probs, which a per-step time would hide), the matmul FLOPs of
one step (torch's FlopCounterMode around step 2, a warm-up step, so the count's overhead is never timed), peak
RSS, and the final training loss (speed must not cost quality: same seed, same batches). The driver measures the
machine's matmul ceiling (fp32 and bf16 GFLOP/s, same thread count) in the same run, so every effective GFLOP/s
comes with its share of the ceiling of the precision that run used.

Ratios: `speedup_vs_defaults` and `speedup_vs_obvious` = the other side's time / the zoo's (> 1: the zoo is
faster), for the median step and for the whole training time per step (steps + in-trainer setup), each with its
per-repeat values, so the spread is on record; `speedup_vs_plain`, the headline, is the zoo against whichever of
the two plain sides was faster (`faster_plain_side`; per repeat, the smaller of the two ratios).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine, parse_args, run_worker, spread, start_load_log, versions, write_result
from bench.dpo import alternating

_T0 = time.perf_counter()

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "results" / "bench" / "cpu_defaults.json"
WARMUP = 2
SIDES = ("trl_defaults", "obvious", "zoo")
ALGOS = ("sft", "rm", "dpo", "grpo", "ppo")
# TRL 1.16 ships no PPO trainer, so PPO has no plain-TRL sides: its "obvious" side is the zoo's PPO with every
# trainer.zoo lever off (full LM head, torch.multinomial draws, LoRA applied unmerged while sampling).
SIDES_OF = {algo: SIDES for algo in ALGOS} | {"ppo": ("obvious", "zoo")}
# Sampling algorithms run each repeat with its own seed (all sides of a repeat share it): the zoo's sampling levers
# draw from the same distribution with another random stream, so their sampled reward can only be compared with the
# seed-to-seed spread. The others keep one seed, so their losses must match exactly.
SEED_PER_REPEAT = ("grpo", "ppo")
# Where the zoo's algorithm calls `fit` (the bench wraps it to attach its timers).
FIT_MODULE = {"sft": "zoo.algos.sft", "rm": "zoo.algos.preference", "dpo": "zoo.algos.preference",
              "grpo": "zoo.algos.online", "ppo": "zoo.algos.ppo"}
DATA = {"sft": "arithmetic", "rm": "arithmetic", "dpo": "arithmetic", "grpo": "sentiment", "ppo": "sentiment"}
# Algorithm fields every side gets from the zoo's composed config, so all three do the same work.
SHARED_FIELDS = ("learning_rate", "max_length", "beta", "loss_type", "completion_only_loss", "num_generations",
                 "max_completion_length", "temperature", "top_p", "scale_rewards", "epsilon", "num_iterations",
                 "mask_truncated_completions", "lr_scheduler_type", "per_device_train_batch_size", "seed",
                 "gradient_accumulation_steps")


# ----------------------------------------------------------------------------------------------- driver


def _compose(overrides: list[str], output_dir: str):
    from hydra import compose, initialize_config_dir

    from zoo.config import normalize_overrides

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train",
                       overrides=normalize_overrides([*overrides, f"paths.output_dir={output_dir}"]))


def _spec(algo: str, steps: int, batch_size: int, scratch: Path, extra: tuple[str, ...] = (),
          model: str = "smollm2-135m") -> dict:
    """What every side of `algo` needs, from the zoo's own composed config and data (`extra`: overrides after the
    bench's own, e.g. bench.gpu's trainer=gpu)."""
    from omegaconf import OmegaConf

    from zoo.config import bf16_supported, training_arguments
    from zoo.data import load_task
    from zoo.models import resolve_model_path

    overrides = [f"algo={algo}", f"model={model}", "peft=lora", f"data={DATA[algo]}", "logger=none",
                 f"trainer.max_steps={steps}", f"trainer.per_device_train_batch_size={batch_size}",
                 "trainer.save_strategy=no", "trainer.logging_steps=1", *extra]
    cfg = _compose(overrides, str(scratch / "compose"))
    model_dir = resolve_model_path(cfg.model, cfg.paths.cache_dir)  # the embedded model: converted once, here
    keep = {"sft": ("prompt", "completion"), "rm": ("prompt", "chosen", "rejected"),
            "dpo": ("prompt", "chosen", "rejected"), "grpo": ("prompt",), "ppo": ("prompt",)}[algo]
    rows = [{k: r[k] for k in keep} for r in load_task(cfg).train]
    if algo == "rm":  # the zoo's RM holds out eval_fraction of the pairs: every side trains on the same rest
        from zoo.algos.preference import split_pairs

        rows = split_pairs(rows, cfg.algo.eval_fraction, cfg.data.seed)[0]
    composed = {**training_arguments(cfg), **OmegaConf.to_container(cfg.algo.args, resolve=True)}
    shared = {k: composed[k] for k in SHARED_FIELDS if k in composed}
    peft = OmegaConf.to_container(cfg.peft, resolve=True)
    return {
        "algo": algo, "overrides": overrides, "model_dir": str(model_dir), "rows": rows, "steps": steps,
        "shared": shared, "native_bf16": bf16_supported(use_cpu=True),
        "lora": {k: peft[k] for k in ("r", "lora_alpha", "lora_dropout", "target_modules")},
    }


def _ceiling(threads: int) -> dict:
    """Matmul GFLOP/s of this machine in fp32 and bf16 (median of 20, a SmolLM2-sized product), in a fresh
    process with the workers' thread count."""
    code = (
        "import json, time, torch\n"
        f"torch.set_num_threads({threads})\n"
        "out = {}\n"
        "for name, dt in (('float32', torch.float32), ('bfloat16', torch.bfloat16)):\n"
        "    a, b = torch.randn(2048, 576, dtype=dt), torch.randn(576, 1536, dtype=dt)\n"
        "    for _ in range(3): a @ b\n"
        "    ts = []\n"
        "    for _ in range(20):\n"
        "        t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)\n"
        "    out[name] = 2 * 2048 * 576 * 1536 / sorted(ts)[10] / 1e9\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# The plain sides and the name of the zoo's speedup over each.
RATIO_OF = {"trl_defaults": "speedup_vs_defaults", "obvious": "speedup_vs_obvious"}


def _summarise(runs: list[dict], ceiling: dict, sides: tuple[str, ...]) -> dict:
    by = {s: [r for r in runs if r["side"] == s] for s in sides}
    summary = {}
    for side, rs in by.items():
        steps = [x for r in rs for x in r["step_s"][WARMUP:]]
        per_step_total = [r["train_s"] / r["global_step"] for r in rs]
        flops = statistics.median(r["step_flops"] for r in rs)
        precision = "bfloat16" if rs[0]["bf16"] else "float32"
        gflops = flops / statistics.median(steps) / 1e9
        summary[side] = {
            "step_s": spread(steps), "train_s_per_step": spread(per_step_total),
            "before_first_step_s": spread([r["before_first_step_s"] for r in rs]),
            "peak_rss_mb": spread([r["peak_rss_mb"] for r in rs]),
            "final_loss": spread([r["final_loss"] for r in rs]),
            "train_loss": spread([r["train_loss"] for r in rs]),
            "step_gflop": flops / 1e9, "precision": precision, "bf16": rs[0]["bf16"],
            "gradient_checkpointing": rs[0]["gradient_checkpointing"], "effective_gflops": gflops,
            "share_of_ceiling": gflops / ceiling[precision],
            "settings": rs[0]["settings"],
        }
        if any(any(r.get("generate_s") or ()) for r in rs):  # sampling vs the rest of a step's interval
            gen = sum(x for r in rs for x in r["generate_s"][WARMUP:])
            total = sum(x for r in rs for x in r["interval_s"][WARMUP:])
            n = sum(len(r["interval_s"][WARMUP:]) for r in rs)
            summary[side].update(generate_s_per_step=gen / n, rest_s_per_step=(total - gen) / n,
                                 generate_share=gen / total)
            for phase in sorted({p for r in rs for p in r.get("phase_s", {})} - {"generate"}):
                t = sum(x for r in rs for x in r["phase_s"][phase][WARMUP:])
                summary[side][f"{phase}_s_per_step"], summary[side][f"{phase}_share"] = t / n, t / total
        if all(r.get("reward_per_step") for r in rs):  # per run: its mean sampled reward (each repeat its own seed)
            summary[side]["mean_reward"] = spread([statistics.fmean(r["reward_per_step"]) for r in rs])
    z = by["zoo"]
    ratios = {}
    for other, name in RATIO_OF.items():
        if other not in by:
            continue
        per_repeat_step = [statistics.median(o["step_s"][WARMUP:]) / statistics.median(m["step_s"][WARMUP:])
                           for o, m in zip(by[other], z)]
        per_repeat_total = [(o["train_s"] / o["global_step"]) / (m["train_s"] / m["global_step"])
                            for o, m in zip(by[other], z)]
        ratios[name] = {
            "step_median": summary[other]["step_s"]["median"] / summary["zoo"]["step_s"]["median"],
            "step_per_repeat": per_repeat_step,
            "train_time_per_step": summary[other]["train_s_per_step"]["median"]
            / summary["zoo"]["train_s_per_step"]["median"],
            "train_time_per_step_per_repeat": per_repeat_total,
        }
    plain = [side for side in ("trl_defaults", "obvious") if side in by]
    if len(plain) == 2:  # the headline: the zoo against whichever plain script was faster (per repeat, too)
        faster = min(plain, key=lambda side: summary[side]["step_s"]["median"])
        both = [ratios[RATIO_OF[side]] for side in plain]
        ratios["speedup_vs_plain"] = {
            "faster_plain_side": faster,
            "step_median": ratios[RATIO_OF[faster]]["step_median"],
            "step_per_repeat": [min(r["step_per_repeat"][i] for r in both) for i in range(len(z))],
            "train_time_per_step": min(r["train_time_per_step"] for r in both),
        }
    return {"summary": summary, **ratios}


def drive(algos: list[str], repeats: int, steps: int, batch_size: int, threads: int, result_path: Path,
          load) -> dict:
    """Run the sides of each algorithm in turn; the result file is rewritten after each algorithm, so a bench killed
    part-way keeps what finished (merged with the file's other algorithms, as a partial `--algos` rerun is)."""
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="zoo-bench-cpu-"))
    ceiling = _ceiling(threads)
    print(f"[bench] matmul ceiling with {threads} threads: {ceiling}", flush=True)
    command = (f"python -m bench.cpu_defaults --algos {','.join(algos)} --repeats {repeats} --steps {steps} "
               f"--batch-size {batch_size} --threads {threads}")
    result = {}
    for algo in algos:
        first_side = len(load.sides)
        entry = _measure(algo, repeats, steps, batch_size, threads, ceiling, scratch, load)
        entry["measured"] = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                             "command": command, "ceiling_gflops": ceiling, "loadavg_before": load_before,
                             "loadavg_after": os.getloadavg(),
                             "noisy": any(s["noisy"] for s in load.sides[first_side:]),
                             "load_per_side": load.sides[first_side:]}
        merged = {**_previous_algos(result_path, [algo]), algo: entry}
        result = {
            "benchmark": "CPU defaults: zoo (trainer=cpu) vs TRL's defaults vs a plain TRL script with obvious "
                         "settings",
            "date": entry["measured"]["date"],
            "command": command,
            "settings": {"model": "smollm2-135m (embedded SmolLM2-135M-Instruct)", "peft": "lora r16 all-linear",
                         "steps_per_run": steps, "warmup_steps_dropped": WARMUP, "repeats": repeats,
                         "batch_size": batch_size, "threads": threads, "sides": SIDES_OF,
                         "seed_per_repeat": list(SEED_PER_REPEAT)},
            "ceiling_gflops": ceiling,
            "algos": {a: merged[a] for a in ALGOS if a in merged},
            "goals": goals({a: merged[a] for a in ALGOS if a in merged}),
            # whether any algorithm's numbers in this file were measured on a busy machine (each says in `measured`)
            "noisy": any(e.get("measured", {}).get("noisy", False) for e in merged.values()),
            "load": {k: v for k, v in load.result().items() if k != "sides"},
            "machine": machine(load_before),
            "env": versions(),
            "bench_seconds": time.perf_counter() - t_start,
        }
        write_result(result, result_path)
    _print_table(result, result_path)
    return result


def _measure(algo: str, repeats: int, steps: int, batch_size: int, threads: int, ceiling: dict,
             scratch: Path, load) -> dict:
    spec = _spec(algo, steps, batch_size, scratch)
    runs = []
    for repeat, side in alternating(SIDES_OF[algo], repeats):
        seed = repeat if algo in SEED_PER_REPEAT else spec["shared"]["seed"]
        spec_path = scratch / f"{algo}-spec-{seed}.json"
        if not spec_path.exists():
            spec_path.write_text(json.dumps({**spec, "shared": {**spec["shared"], "seed": seed},
                                             "overrides": [*spec["overrides"], f"trainer.seed={seed}"]}))
        tag = f"{algo}-{side}-{repeat}"
        print(f"[bench] {tag} ...", flush=True)
        res = run_worker("bench.cpu_defaults", side, spec_path, scratch, tag, threads,
                         extra_env={"TQDM_DISABLE": "1"}, load=load)
        res.update(side=side, repeat=repeat, seed=seed)
        runs.append(res)
        print(f"[bench] {tag}: median step {statistics.median(res['step_s'][WARMUP:]):.2f} s, "
              f"before first step {res['before_first_step_s']:.1f} s, train loss {res['train_loss']:.4f}",
              flush=True)
    return {**_summarise(runs, ceiling, SIDES_OF[algo]), "rows": len(spec["rows"]),
            "zoo_overrides": spec["overrides"], "shared_settings": spec["shared"],
            "runs": [{k: r[k] for k in ("side", "repeat", "seed", "step_s", "interval_s", "generate_s", "phase_s",
                                        "train_s", "before_first_step_s", "global_step", "peak_rss_mb", "final_loss",
                                        "train_loss", "reward_per_step", "process_s")} for r in runs]}


# The project's speed goals for this bench (issue: CPU defaults), checked against what was measured. A missed goal
# carries what bounds it, from the numbers of the same run.
GOALS = {  # algo -> ((ratio key, at least), ...)
    "dpo": (("speedup_vs_plain", 2.0), ("share_of_ceiling", 0.25)),  # the faster of TRL's defaults and obvious
    "grpo": (("speedup_vs_obvious", 2.5), ("speedup_vs_defaults", 1.5)),
    "ppo": (("speedup_vs_obvious", 1.3),),
}


def _bound(algo: str, entry: dict) -> str:
    """What limits the zoo's step, in the run's own numbers."""
    s = entry["summary"]
    zoo = s["zoo"]
    parts = [f"zoo step {zoo['step_s']['median']:.2f} s at {zoo['share_of_ceiling']:.0%} of the "
             f"{zoo['precision']} matmul ceiling"]
    if "generate_share" in zoo:
        parts.append(f"sampling {zoo['generate_s_per_step']:.2f} s ({zoo['generate_share']:.0%}) of a step, the "
                     f"rest {zoo['rest_s_per_step']:.2f} s")
        for other in ("obvious", "trl_defaults"):
            if other in s and "generate_share" in s[other]:
                o = s[other]
                parts.append(f"{other}: sampling {o['generate_s_per_step']:.2f} s, "
                             f"the rest {o['rest_s_per_step']:.2f} s")
    if "update_s_per_step" in zoo:
        parts.append(f"the zoo's PPO updates {zoo['update_s_per_step']:.2f} s ({zoo['update_share']:.0%}); value-model "
                     f"forwards {zoo['value_forward_s_per_step']:.2f} s ({zoo['value_forward_share']:.0%}), "
                     f"their backward inside the updates")
    return "; ".join(parts)


def goals(algos: dict) -> list[dict]:
    out = []
    for algo, targets in GOALS.items():
        entry = algos.get(algo)
        if not entry:
            continue
        for key, target in targets:
            if key == "share_of_ceiling":
                value, per_repeat = entry["summary"]["zoo"]["share_of_ceiling"], None
            elif key in entry:
                value, per_repeat = entry[key]["step_median"], entry[key]["step_per_repeat"]
            else:
                continue
            row = {"algo": algo, "goal": f"{key} >= {target}", "value": value, "per_repeat": per_repeat,
                   "met": value >= target}
            if not row["met"]:
                row["bound"] = _bound(algo, entry)
                if key in ("speedup_vs_defaults", "speedup_vs_plain"):  # the ceiling share the zoo would need
                    need = target * entry["summary"]["zoo"]["share_of_ceiling"] / entry[key]["step_median"]
                    row["bound"] += f"; {target}x would need {need:.0%} of the ceiling at the same FLOPs"
            out.append(row)
    return out


def _previous_algos(path: Path, rerun: list[str]) -> dict:
    """The algorithms an earlier result file holds that this run does not redo (`--algos dpo` refreshes DPO and
    keeps the rest, each with its own `measured` record). Entries from before that record existed get the old
    file's date and command."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    kept = {}
    for algo, entry in old.get("algos", {}).items():
        if algo in rerun:
            continue
        entry.setdefault("measured", {"date": old.get("date"), "command": old.get("command"),
                                      "ceiling_gflops": old.get("ceiling_gflops")})
        kept[algo] = entry
    return kept


def _print_table(res: dict, path: Path) -> None:
    print(f"\n{'algo':5s} {'side':13s} {'step s':>8s} {'train s/step':>12s} {'GFLOP/s':>8s} {'ceiling':>8s} "
          f"{'RSS MiB':>8s} {'loss':>8s}")
    for algo, r in res["algos"].items():
        for side, s in r["summary"].items():
            print(f"{algo:5s} {side:13s} {s['step_s']['median']:8.2f} {s['train_s_per_step']['median']:12.2f} "
                  f"{s['effective_gflops']:8.1f} {s['share_of_ceiling']:8.1%} {s['peak_rss_mb']['median']:8.0f} "
                  f"{s['final_loss']['median']:8.4f}")
        print("      zoo speedup " + ", ".join(
            f"{key.removeprefix('speedup_')} {r[key]['step_median']:.2f} (per repeat "
            f"{[round(x, 2) for x in r[key]['step_per_repeat']]})"
            for key in ("speedup_vs_plain", "speedup_vs_defaults", "speedup_vs_obvious") if key in r))
    for g in res.get("goals", []):
        print(f"goal {g['algo']} {g['goal']}: {g['value']:.2f} {'met' if g['met'] else 'MISSED: ' + g['bound']}")
    print(f"[bench] wrote {path} in {res['bench_seconds']:.0f} s")


# ----------------------------------------------------------------------------------------------- workers


class _TrainingDone(Exception):
    """Raised from the wrapped `fit` to end `zoo.train.run` once training is over (skip export and eval)."""


_PHASES: dict[str, float] = {}  # phase -> seconds spent in it, summed over the process


def _time_phase(owner, attr: str, phase: str) -> None:
    """Sum the wall time of every (outermost) call of `owner.attr` into _PHASES[phase]."""
    real = getattr(owner, attr)
    depth = [0]

    def timed(*args, **kwargs):
        depth[0] += 1
        t = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                _PHASES[phase] = _PHASES.get(phase, 0.0) + time.perf_counter() - t

    setattr(owner, attr, timed)


def _time_context(owner, attr: str, phase: str) -> None:
    """Sum the wall time spent inside every `with owner.attr(...)` block into _PHASES[phase]."""
    from contextlib import contextmanager

    real = getattr(owner, attr)

    @contextmanager
    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            with real(*args, **kwargs) as value:
                yield value
        finally:
            _PHASES[phase] = _PHASES.get(phase, 0.0) + time.perf_counter() - t

    setattr(owner, attr, timed)


def _time_phases(algo: str) -> None:
    """What a step's time goes to: `generate` (TRL's GRPO rollouts, the zoo's sampler; wrapped at the class, so the
    zoo's sampling levers, which wrap the bound method, are inside the span) for every side, and for PPO also its
    update phase (the PPO epochs over the rollout) and every value-model forward (rollout and updates; its
    backward is inside `update`)."""
    from transformers.generation.utils import GenerationMixin

    _time_phase(GenerationMixin, "generate", "generate")
    if algo == "dpo":  # the step's reference forward: TRL runs it inside use_adapter (LoRA's adapter disabled)
        import trl.trainer.dpo_trainer as dpo

        _time_context(dpo, "use_adapter", "reference")
    if algo == "ppo":
        import zoo.rl.ppo_trainer as ppo

        _time_phase(ppo.PPOTrainer, "_optimise", "update")
        _time_phase(ppo, "value_forward", "value_forward")


def _probe():
    """Timers and the FLOP count as one callback (imports transformers, so only inside a worker)."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench.common import IterationTimer

    class Probe(IterationTimer):  # step_s where the trainer has on_step_begin; interval_s always
        def __init__(self):
            super().__init__()
            self.flops, self._counter, self.t_constructed = None, None, None
            self.phase_s: dict[str, list[float]] = {}  # per step interval: seconds in each timed phase
            self._marks: dict[str, float] = {}

        def on_step_end(self, args, state, control, **kwargs):
            # Count the FLOPs of the second step's interval (end of step 1 -> end of step 2: everything a step
            # does, a rollout included), a warm-up step whose time is dropped anyway.
            super().on_step_end(args, state, control, **kwargs)
            for phase in dict.fromkeys(("generate", *_PHASES)):  # each phase once (generate is in both)
                total = _PHASES.get(phase, 0.0)
                self.phase_s.setdefault(phase, [0.0] * (len(self.interval_s) - 1)).append(
                    total - self._marks.get(phase, 0.0))
                self._marks[phase] = total
            if self._counter is not None:
                self._counter.__exit__(None, None, None)
                self.flops, self._counter = self._counter.get_total_flops(), None
            elif state.global_step == 1:
                self._counter = FlopCounterMode(display=False)
                self._counter.__enter__()

    return Probe()


def _finish(probe, trainer, t_before_trainer: float, train_loss: float) -> dict:
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    a = trainer.args
    timing = probe.result()
    if not timing["step_s"]:  # the zoo's PPO loop has no on_step_begin: its step is the whole iteration interval
        timing["step_s"] = timing["interval_s"]
    # The sampled reward per step (GRPO: TRL's `reward`; PPO: the zoo's `objective/scores`): the quality signal of
    # the sampling algorithms, whose losses say nothing about it.
    rewards = [h[key] for h in trainer.state.log_history for key in ("reward", "objective/scores") if key in h]
    return {**timing, "step_flops": probe.flops, "train_loss": train_loss,
            "generate_s": probe.phase_s.get("generate", []), "phase_s": probe.phase_s,
            "reward_per_step": rewards,
            # TRL's running count of the tokens the trainer consumed, at each logged step (logging_steps=1)
            "num_tokens": sorted({h["step"]: h["num_tokens"] for h in trainer.state.log_history
                                  if "num_tokens" in h}.items()),
            "final_loss": losses[-1] if losses else float("nan"), "global_step": trainer.state.global_step,
            # trainer construction + everything in train() before the first step (dataset tokenising, precomputed
            # reference log-probs, ...): part of what a user waits for, hidden from a per-step time
            "before_first_step_s": probe._t_train - t_before_trainer,
            # trainer.zoo.reference_precompute's pass, {"seconds", "pairs", "batch_size"}, or None (not run)
            "reference_precompute": getattr(trainer, "zoo_reference_precompute", None),
            "bf16": bool(a.bf16), "gradient_checkpointing": bool(a.gradient_checkpointing),
            "settings": {k: v for k, v in a.to_dict().items() if k in (
                "bf16", "gradient_checkpointing", "precompute_ref_log_probs", "padding_free", "torch_compile",
                "group_by_length", "dataloader_pin_memory", "max_length", "pad_to_multiple_of")}}


def _plain_worker(spec: dict, side: str, workdir: Path) -> dict:
    """The script a user would write with TRL alone (TRL's defaults, or the obvious CPU settings)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, set_seed
    import trl

    algo = spec["algo"]
    config_cls, trainer_cls = {"sft": (trl.SFTConfig, trl.SFTTrainer), "rm": (trl.RewardConfig, trl.RewardTrainer),
                               "dpo": (trl.DPOConfig, trl.DPOTrainer),
                               "grpo": (trl.GRPOConfig, trl.GRPOTrainer)}[algo]
    settings = {"use_cpu": True, **spec["shared"],  # bench.gpu's shared settings say use_cpu=false
                "max_steps": spec["steps"], "save_strategy": "no", "report_to": [], "logging_steps": 1,
                "output_dir": str(workdir / "out")}
    if side == "obvious":
        settings.update(bf16=spec["native_bf16"], gradient_checkpointing=False)
    args = config_cls(**settings)
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    if algo == "rm":
        model = AutoModelForSequenceClassification.from_pretrained(spec["model_dir"], num_labels=1)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(spec["model_dir"])
    kwargs = {}
    if algo == "grpo":
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        analyzer = SentimentIntensityAnalyzer()

        def sentiment(prompts, completions, **_):
            return [analyzer.polarity_scores(c if isinstance(c, str) else c[-1]["content"])["compound"]
                    for c in completions]

        kwargs["reward_funcs"] = [sentiment]
    probe = _probe()
    t = time.perf_counter()
    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(spec["rows"]),
                          processing_class=tokenizer, callbacks=[probe],
                          peft_config=LoraConfig(**spec["lora"], bias="none",
                                                 task_type="SEQ_CLS" if algo == "rm" else "CAUSAL_LM"), **kwargs)
    result = trainer.train()
    return _finish(probe, trainer, t, result.training_loss)


def _zoo_worker(spec: dict, workdir: Path, levers_on: bool = True) -> dict:
    import importlib

    from zoo import train as zoo_train
    from zoo.levers import LEVERS

    module = importlib.import_module(FIT_MODULE[spec["algo"]])
    off = [] if levers_on else [f"trainer.zoo.{name}=false" for name in LEVERS]
    cfg = _compose([*spec["overrides"], *off], str(workdir / "run"))
    probe, holder, real_fit = _probe(), {}, module.fit
    t = {}

    def timed_fit(trainer, ctx):
        trainer.add_callback(probe)
        metrics = real_fit(trainer, ctx)
        holder.update(trainer=trainer, loss=metrics[f"{ctx.stage}/train_loss"])
        raise _TrainingDone

    # The stage builds its trainer (tokenising, any precomputation) before calling fit: time from the stage's
    # start, as the plain script is timed from its trainer's construction.
    algo_module = importlib.import_module(f"zoo.algos.{spec['algo']}")
    real_train = algo_module.train

    def timed_train(ctx):
        t["stage_start"] = time.perf_counter()
        return real_train(ctx)

    module.fit, algo_module.train = timed_fit, timed_train
    try:
        zoo_train.run(cfg)
        raise RuntimeError(f"zoo.train.run returned without training through {FIT_MODULE[spec['algo']]}.fit")
    except _TrainingDone:
        pass
    finally:
        module.fit, algo_module.train = real_fit, real_train
    return _finish(probe, holder["trainer"], t["stage_start"], holder["loss"])


def _worker(side: str, spec_path: Path, workdir: Path, out: Path) -> None:
    spec = json.loads(spec_path.read_text())
    _time_phases(spec["algo"])
    if side == "zoo":
        res = _zoo_worker(spec, workdir)
    elif spec["algo"] == "ppo":  # no TRL PPO to script: the zoo's own, levers off
        res = _zoo_worker(spec, workdir, levers_on=False)
    else:
        res = _plain_worker(spec, side, workdir)
    res.pop("t_train_begin", None)
    out.write_text(json.dumps(res))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algos", default=",".join(ALGOS), help=f"comma-separated, of {ALGOS}")
    ap.add_argument("--repeats", type=int, default=2, help="runs per side; side order reversed every repeat")
    ap.add_argument("--steps", type=int, default=6, help=f"optimizer steps per run (first {WARMUP} dropped)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="OMP_NUM_THREADS of every worker")
    ap.add_argument("--out", type=Path, default=RESULT)
    a = parse_args(ap, argv, SIDES, lambda w: _worker(w.worker, w.spec, w.workdir, w.out))
    if a is None:
        return
    algos = [x for x in a.algos.split(",") if x]
    unknown = sorted(set(algos) - set(ALGOS))
    if unknown:
        ap.error(f"--algos: unknown {unknown}; known: {list(ALGOS)}")
    if a.steps <= WARMUP + 1:
        ap.error(f"--steps must be > {WARMUP + 1} (the first {WARMUP} are dropped)")
    drive(algos, a.repeats, a.steps, a.batch_size, a.threads, a.out, start_load_log("cpu_defaults", a.require_quiet))


if __name__ == "__main__":
    main()
