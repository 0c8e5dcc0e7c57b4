"""The zoo's PPO against plain TRL GRPO (time per iteration) and the zoo's DPO (peak memory), in one run.

    WANDB_MODE=offline HF_HUB_OFFLINE=1 .venv/bin/python -m bench.ppo          # writes results/bench/ppo.json

Why: PPO is the zoo's own trainer (TRL 1.x has none). It carries a value model and a GAE pass that GRPO does
without, so the question a user asks is what that costs against the online method TRL ships (GRPO) at the same
rollout size, and against the cheapest preference method (DPO) in memory. Product goals, with LoRA (one base
model shared by policy and reference): PPO time per iteration <= 1.6x GRPO's, PPO peak RSS <= 1.5x DPO's.

Same rollout on both RL sides, 8 sequences of up to 32 sampled tokens per iteration, one optimisation pass:
  * ppo: `zoo.train.run(cfg)` with algo=ppo data=sentiment peft=lora, 8 prompts x 1 completion,
    num_ppo_epochs=1, num_mini_batches=1 (one optimizer step per iteration). Reward: the task's gold signal
    (VADER compound sentiment); reference = the policy with its adapter disabled; the value model is a separate
    sequence classifier (its own base weights plus its own adapter), as in zoo.algos.ppo.
  * grpo: a plain TRL GRPOTrainer script that never imports the zoo: the same model directory, LoRA values,
    sentiment prompts and learning rate, VADER via vaderSentiment, per_device_train_batch_size=8 with
    num_generations=2 (4 prompts x 2 completions), gradient_accumulation_steps=1 so steps_per_generation=1 and
    generation_batch_size=8: one optimizer step = one rollout of 8 sequences (asserted in the worker);
    num_iterations=1; beta=PPO's kl_coef, so a reference (adapter-disabled) pass happens like PPO's KL.
  * dpo: the zoo's DPO (data=arithmetic ships pairs, so nothing is sampled first), batch 8, a few steps; the
    memory reference (its step time is recorded too).
Each side runs in its own fresh subprocess, the order alternating (ppo, grpo, dpo, then dpo, grpo, ppo, ...)
because the machine is noisy. Zoo sides wrap the `fit` their algorithm trains through to attach the timer and to
stop the run once training returns (export and the eval harness are no training cost).

Per iteration: the zoo's PPO loop calls on_step_end but never on_step_begin, so every side is timed the same
way: on_train_begin -> first on_step_end, then on_step_end -> on_step_end (rollout, scoring, update, logging).
The first WARMUP intervals are dropped. GRPO's on_step_begin -> on_step_end (`step_s`) is recorded as well.
Peak RSS is ru_maxrss at on_train_end (model loading included: it is part of what a run needs).

Size (smollm2-135m, fp32 on 2 cores): a DPO step takes ~15 s (results/bench/dpo.json); a PPO iteration is
estimated at 10-20 s (generation + 3 no-grad passes + policy and value forward/backward), a GRPO one at about half.
With 6 iterations, 4 DPO steps and 2 repeats the bench takes ~12-20 minutes. Run it on a quiet machine: with the
cores already busy, torch's OpenMP threads wait on descheduled peers (a tiny-model generate went from 0.13 s to
10-20 s beside a 2-core job), so the driver warns about busy processes, records them, and `--threads N` pins
OMP_NUM_THREADS in the workers. `--model tiny --steps 4 --dpo-steps 3 --repeats 1 --threads 1 --out /tmp/x.json`
is a ~1-minute smoke test of the whole pipeline (its numbers mean nothing: imports dominate the tiny model's RSS).
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

from bench.common import parse_args, run_worker, spread, start_load_log, trailer, write_result

_T0 = time.perf_counter()  # worker start (after interpreter start-up), for the setup time

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "results" / "bench" / "ppo.json"
GOALS = {"ppo_over_grpo_time_per_iteration": 1.6, "ppo_over_dpo_peak_rss": 1.5}
WARMUP = 1  # iterations dropped from every run: first-touch allocations, lazy inits, dataloader start
SIDES = ("ppo", "grpo", "dpo")
MODELS = ("smollm2-135m", "tiny")


# ----------------------------------------------------------------------------------------------- driver


def _zoo_overrides(algo: str, model: str, steps: int, batch_size: int, bf16: bool, max_completion_length: int) -> list:
    common = [f"algo={algo}", f"model={model}", "peft=lora", "logger=none", "trainer=cpu",
              f"trainer.max_steps={steps}", f"trainer.per_device_train_batch_size={batch_size}",
              "trainer.logging_steps=1", f"trainer.bf16={str(bf16).lower()}"]
    if algo == "dpo":
        return [*common, "data=arithmetic"]
    return [*common, "data=sentiment", f"algo.args.max_completion_length={max_completion_length}",
            "algo.args.num_ppo_epochs=1", "algo.args.num_mini_batches=1"]


def _spec(a, bf16: bool, scratch: Path) -> dict:
    """Everything the workers need, taken from the zoo's own composed PPO config and sentiment data."""
    from omegaconf import OmegaConf

    from bench.dpo import _compose
    from zoo.config import trl_args
    from zoo.data import load_task
    from zoo.models import resolve_model_path
    from zoo.rl.ppo_config import PPOConfig

    ppo = _zoo_overrides("ppo", a.model, a.steps, a.batch_size, bf16, a.max_completion_length)
    dpo = _zoo_overrides("dpo", a.model, a.dpo_steps, a.batch_size, bf16, a.max_completion_length)
    cfg = _compose(ppo, str(scratch / "compose"))
    # smollm2-135m: converts the embedded GGUF once (ensure_embedded); tiny: builds it once (build_tiny).
    model_dir = resolve_model_path(cfg.model, cfg.paths.cache_dir)
    prompts = [r["prompt"] for r in load_task(cfg).train]
    # The PPOConfig the zoo builds (conf/algo/ppo.yaml sets only what differs from PPOConfig's defaults).
    pa = trl_args(PPOConfig, [("trainer", cfg.trainer), ("algo.args", cfg.algo.args)],
                  output_dir=str(scratch / "ppo-args")).to_dict()
    peft = OmegaConf.to_container(cfg.peft, resolve=True)
    if a.batch_size % a.num_generations:
        raise SystemExit(f"--batch-size {a.batch_size} must be divisible by --num-generations {a.num_generations}")
    grpo_args = {
        # GRPO counts per_device_train_batch_size in sequences: batch / num_generations prompts x num_generations.
        "per_device_train_batch_size": a.batch_size, "num_generations": a.num_generations,
        "gradient_accumulation_steps": 1, "max_completion_length": pa["max_completion_length"],
        "num_iterations": 1, "beta": pa["kl_coef"], "learning_rate": pa["learning_rate"],
        "max_grad_norm": pa["max_grad_norm"], "temperature": pa["temperature"], "top_p": pa["top_p"],
        "top_k": pa["top_k"], "seed": cfg.trainer.seed, "max_steps": a.steps,
        "use_cpu": True, "bf16": bf16, "gradient_checkpointing": False,
        "disable_dropout": True,  # the zoo's PPO keeps its models in eval mode (dropout off) for the whole run
        "report_to": [], "logging_steps": 1, "save_strategy": "no", "dataloader_num_workers": 0,
    }
    return {
        "model": a.model, "model_dir": str(model_dir), "dtype": cfg.model.dtype, "seed": cfg.trainer.seed,
        "ppo_overrides": ppo, "dpo_overrides": dpo, "prompts": prompts, "grpo_args": grpo_args,
        "ppo_args": {k: pa[k] for k in ("learning_rate", "max_completion_length", "num_ppo_epochs", "num_mini_batches",
                                        "kl_coef", "kl_estimator", "vf_coef", "temperature", "top_p", "top_k",
                                        "max_grad_norm")},
        "lora": {k: peft[k] for k in ("r", "lora_alpha", "lora_dropout", "target_modules")},
    }


def run_sides(spec: dict, scratch: Path, sides: tuple[str, ...], repeats: int, threads: int | None,
              module: str = "bench.ppo", load=None):
    """Write the workers' spec, then (repeat, side, result) for one fresh worker process per run, sides
    alternating order between repeats (`load`: the bench's LoadLog)."""
    from bench.dpo import alternating

    spec_path = scratch / "spec.json"
    spec_path.write_text(json.dumps(spec))
    for rep, side in alternating(sides, repeats):
        print(f"[bench] repeat {rep + 1}/{repeats}: {side} ...", flush=True)
        yield rep, side, run_worker(module, side, spec_path, scratch, f"{side}-{rep}", threads, load=load)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def drive(a, bf16: bool, result_path: Path, load) -> dict:
    from bench.dpo import _env, _scalar_stats, machine_load, start_driver

    t_start, scratch, load_before, busy_before = start_driver("ppo")
    try:
        spec = _spec(a, bf16, scratch)
        runs = []
        for rep, side, res in run_sides(spec, scratch, SIDES, a.repeats, a.threads, load=load):
            kept = res["interval_s"][WARMUP:]
            res.update(side=side, repeat=rep, order=len(runs), iter_s_median=statistics.median(kept),
                       iter_s_mean=statistics.fmean(kept))
            runs.append(res)
            lengths = res["completion_mean_length"]
            print(f"[bench]   {res['iter_s_median']:.3f} s/iteration (median of {len(kept)}), peak RSS "
                  f"{res['peak_rss_mb']:.0f} MiB, train_loss {res['train_loss']:.4f}"
                  + (f", mean completion length {statistics.fmean(lengths):.1f}" if lengths else ""), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    by = {s: [r for r in runs if r["side"] == s] for s in SIDES}
    summary = {
        s: {
            "iter_s": spread([x for r in by[s] for x in r["interval_s"][WARMUP:]]),
            **_scalar_stats(by[s]),
            **({"completion_mean_length": spread(lens)}
               if (lens := [x for r in by[s] for x in r["completion_mean_length"][WARMUP:]]) else {}),
        }
        for s in SIDES
    }
    p, g, d = summary["ppo"], summary["grpo"], summary["dpo"]
    ratios = {
        "ppo_over_grpo_time_per_iteration": _ratio(p["iter_s"]["median"], g["iter_s"]["median"]),
        "ppo_over_grpo_time_per_iteration_mean": _ratio(p["iter_s"]["mean"], g["iter_s"]["mean"]),
        "ppo_over_dpo_peak_rss": _ratio(p["peak_rss_mb"]["median"], d["peak_rss_mb"]["median"]),
        "ppo_over_grpo_peak_rss": _ratio(p["peak_rss_mb"]["median"], g["peak_rss_mb"]["median"]),
        # Generation stops at EOS (or the budget), so a side that samples shorter completions does less work.
        "ppo_over_grpo_completion_length": _ratio(p.get("completion_mean_length", {}).get("mean", float("nan")),
                                                  g.get("completion_mean_length", {}).get("mean", float("nan"))),
        "per_repeat_ppo_over_grpo_time": [_ratio(x["iter_s_median"], y["iter_s_median"])
                                          for x, y in zip(by["ppo"], by["grpo"])],
        "per_repeat_ppo_over_dpo_peak_rss": [_ratio(x["peak_rss_mb"], y["peak_rss_mb"])
                                             for x, y in zip(by["ppo"], by["dpo"])],
    }
    goals = {name: {"max": limit, "measured": ratios[name], "met": ratios[name] <= limit}
             for name, limit in GOALS.items()}
    env = _env()
    env.update(torch_threads=runs[0]["torch_threads"], bf16=bf16, cpu_native_bf16=_native_bf16())
    ga, pa = spec["grpo_args"], spec["ppo_args"]
    n = a.batch_size
    result = {
        "benchmark": "PPO (zoo.train.run, algo=ppo) time per iteration vs plain TRL GRPOTrainer at the same rollout "
                     "size, and peak RSS vs the zoo's DPO; LoRA, CPU",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["WANDB_MODE=offline HF_HUB_OFFLINE=1 .venv/bin/python -m bench.ppo", *sys.argv[1:]]),
        "settings": {
            "model": spec["model"], "model_dir": spec["model_dir"], "dtype": spec["dtype"], "bf16": bf16,
            "peft": {"method": "lora", **spec["lora"]},
            "rollout_per_iteration": {
                "ppo": f"{n} prompts x 1 completion x <= {pa['max_completion_length']} tokens",
                "grpo": f"{n // ga['num_generations']} prompts x {ga['num_generations']} completions x "
                        f"<= {ga['max_completion_length']} tokens",
            },
            "optimizer_steps_per_iteration": {"ppo": pa["num_ppo_epochs"] * pa["num_mini_batches"], "grpo": 1},
            "ppo": {**pa, "max_steps": a.steps, "reward": "task gold: VADER compound sentiment",
                    "overrides": spec["ppo_overrides"]},
            "grpo": {**ga, "resolved_by_grpo_config": by["grpo"][0]["resolved"],
                     "reward": "vaderSentiment compound (same as the zoo's sentiment gold)",
                     "data": f"{len(spec['prompts'])} sentiment prompts from zoo.data.load_task"},
            "dpo": {"max_steps": a.dpo_steps, "overrides": spec["dpo_overrides"]},
            "omp_num_threads": a.threads, "warmup_iterations_dropped": WARMUP, "repeats_per_side": a.repeats,
            "order": [r["side"] for r in runs],
            "iter_time": "wall time on_train_begin -> first on_step_end, then on_step_end -> on_step_end (rollout, "
                         "reward, reference/value passes, update, logging); the same for every side",
            "peak_rss": "resource.getrusage(RUSAGE_SELF).ru_maxrss at on_train_end, one fresh process per run",
        },
        "goals": goals,
        "ratios": ratios,
        "summary": summary,
        "runs": [{k: r[k] for k in ("side", "repeat", "order", "iter_s_median", "iter_s_mean", "train_s", "setup_s",
                                    "process_s", "peak_rss_mb", "rss_imports_mb", "rss_train_begin_mb", "train_loss",
                                    "global_step", "interval_s", "step_s", "completion_mean_length")}
                 for r in runs],
        **trailer(load, t_start, env, machine_load=machine_load(load_before, busy_before)),
    }
    write_result(result, result_path)
    _print_table(result, result_path)
    return result


def _print_table(res: dict, path: Path) -> None:
    s = res["summary"]

    def row(name, key, stat="median"):
        cells = "".join(f" {s[side][key][stat]:10.3f}" if key in s[side] else " " * 11 for side in SIDES)
        print(f"{name:26s}{cells}")

    print(f"\n{'':26s} {'ppo (zoo)':>10s} {'grpo (TRL)':>10s} {'dpo (zoo)':>10s}")
    row("s / iteration (median)", "iter_s")
    row("s / iteration (mean)", "iter_s", "mean")
    row("peak RSS MiB (median)", "peak_rss_mb")
    row("RSS at train begin MiB", "rss_train_begin_mb")
    row("mean completion tokens", "completion_mean_length", "mean")
    row("setup s (start -> train)", "setup_s")
    print()
    for name, g in res["goals"].items():
        print(f"{name:34s} {g['measured']:6.3f}  (goal <= {g['max']}: {'met' if g['met'] else 'MISSED'})")
    print(f"load avg after: {res['machine_load']['loadavg_after']}")
    print(f"[bench] wrote {path} in {res['bench_seconds']:.0f} s")


def _native_bf16() -> bool:
    from zoo.config import bf16_supported

    return bf16_supported(use_cpu=True)


# ----------------------------------------------------------------------------------------------- workers


class _TrainingDone(Exception):
    """Raised from the wrapped `fit` to end `zoo.train.run` once training is over (skip export and eval)."""


def _completion_lengths(log_history: list[dict]) -> list[float]:
    return [h["completions/mean_length"] for h in log_history if "completions/mean_length" in h]


def _zoo_worker(algo: str, overrides: list[str], workdir: Path, fit_module: str | None = None) -> dict:
    """Run the zoo's `algo` through zoo.train.run, timing the trainer that `<fit_module>.fit` trains
    (default zoo.algos.<algo>; GRPO/RLOO train through zoo.algos.online, DPO through zoo.algos.preference)."""
    import importlib

    from bench.common import IterationTimer, current_rss_mb
    from bench.dpo import _compose
    from zoo import train as zoo_train
    import zoo.data, zoo.eval, zoo.models, zoo.rewards  # noqa: E401,F401  (run() imports these before training)

    module = importlib.import_module(fit_module or f"zoo.algos.{algo}")
    rss_imports = current_rss_mb()
    cfg = _compose(overrides, str(workdir / "run"))
    timer, holder = IterationTimer(), {}
    real_fit = module.fit

    def timed_fit(trainer, ctx):
        trainer.add_callback(timer)
        holder["metrics"] = real_fit(trainer, ctx)
        holder["global_step"] = trainer.state.global_step
        holder["log_history"] = trainer.state.log_history
        raise _TrainingDone

    module.fit = timed_fit
    try:
        zoo_train.run(cfg)
        raise RuntimeError(f"zoo.train.run returned without training through {module.__name__}.fit")
    except _TrainingDone:
        pass
    finally:  # a worker may run inside a longer-lived process (tests): leave the module as it was
        module.fit = real_fit
    return {**timer.result(), "rss_imports_mb": rss_imports, "train_loss": holder["metrics"][f"{algo}/train_loss"],
            "global_step": holder["global_step"], "completion_mean_length": _completion_lengths(holder["log_history"])}


def _grpo_worker(spec: dict, workdir: Path) -> dict:
    """The GRPO script a user would write with TRL alone (no zoo, Hydra or OmegaConf import)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import GRPOConfig, GRPOTrainer
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from bench.common import IterationTimer, current_rss_mb

    rss_imports = current_rss_mb()
    analyzer = SentimentIntensityAnalyzer()

    def vader_sentiment(prompts, completions, **kwargs):
        return [analyzer.polarity_scores(c)["compound"] for c in completions]

    set_seed(spec["seed"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=getattr(torch, spec["dtype"]))
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    args = GRPOConfig(**spec["grpo_args"], output_dir=str(workdir / "grpo"))
    # One optimizer step must be one rollout of batch-size sequences, like one PPO iteration.
    batch = spec["grpo_args"]["per_device_train_batch_size"]
    assert args.steps_per_generation == 1 and args.generation_batch_size == batch, \
        (args.steps_per_generation, args.generation_batch_size)
    timer = IterationTimer()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=vader_sentiment,
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in spec["prompts"]]),
        processing_class=tokenizer,
        peft_config=LoraConfig(**spec["lora"], bias="none", task_type="CAUSAL_LM"),
        callbacks=[timer],
    )
    assert trainer.ref_model is None, "LoRA: the reference must be the adapter-disabled policy, not a copy"
    result = trainer.train()
    return {**timer.result(), "rss_imports_mb": rss_imports, "train_loss": result.training_loss,
            "global_step": trainer.state.global_step,
            "completion_mean_length": _completion_lengths(trainer.state.log_history),
            "resolved": {k: getattr(args, k) for k in ("generation_batch_size", "steps_per_generation", "loss_type",
                                                       "scale_rewards", "epsilon", "disable_dropout")}}


def _worker(side: str, spec_path: Path, workdir: Path, out: Path) -> None:
    spec = json.loads(spec_path.read_text())
    if side == "grpo":
        res = _grpo_worker(spec, workdir)
    else:
        res = _zoo_worker(side, spec[f"{side}_overrides"], workdir,
                          fit_module="zoo.algos.preference" if side == "dpo" else None)
    import torch

    # setup_s: worker start -> training start (imports, config, data, model loads, trainer init)
    res["setup_s"] = res.pop("t_train_begin") - _T0
    res["torch_threads"] = torch.get_num_threads()
    out.write_text(json.dumps(res))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, default="smollm2-135m",
                    help="tiny: the zoo's random test model, for smoke tests only")
    ap.add_argument("--repeats", type=int, default=2, help="runs per side, order alternating")
    ap.add_argument("--steps", type=int, default=6,
                    help="PPO iterations / GRPO steps per run (the first %d dropped)" % WARMUP)
    ap.add_argument("--dpo-steps", type=int, default=4, help="DPO steps per run (memory reference)")
    ap.add_argument("--batch-size", type=int, default=8, help="sequences per iteration (PPO prompts, GRPO rows)")
    ap.add_argument("--num-generations", type=int, default=2, help="GRPO completions per prompt")
    ap.add_argument("--max-completion-length", type=int, default=32)
    ap.add_argument("--bf16", choices=("auto", "true", "false"), default="auto",
                    help="trainer.bf16 for every side; auto: only where the hardware has native bf16 "
                    "(zoo.config.bf16_supported)")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for every worker (default: torch's own choice, one per core)")
    ap.add_argument("--out", type=Path, default=RESULT, help="result JSON (driver) or worker result file")
    a = parse_args(ap, argv, SIDES, lambda w: _worker(w.worker, w.spec, w.workdir, w.out))
    if a is None:
        return
    if min(a.steps, a.dpo_steps) <= WARMUP + 1:
        ap.error(f"--steps and --dpo-steps must be > {WARMUP + 1} (the first {WARMUP} are dropped)")
    load = start_load_log("ppo", a.require_quiet)
    bf16 = _native_bf16() if a.bf16 == "auto" else a.bf16 == "true"
    print(f"[bench] model={a.model}, trainer.bf16={bf16} (native bf16: {_native_bf16()})", flush=True)
    drive(a, bf16, a.out, load)


if __name__ == "__main__":
    main()
