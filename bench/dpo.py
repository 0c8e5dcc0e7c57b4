"""The zoo's DPO against a plain TRL DPOTrainer script: same model, rows and settings, side by side in one run.

    make bench        # = WANDB_MODE=offline HF_HUB_OFFLINE=1 .venv/bin/python -m bench.dpo

Why: the zoo wraps TRL (Hydra config, validated TRL args, the NaN guard, resumable `fit`, the run dir). This
measures what those wrappers cost per optimizer step and in peak memory, against the script a user would
write with TRL alone. Product goal: zoo / plain <= 1.05 for both.

How:
  * The driver composes the zoo config once (data=arithmetic ships chosen/rejected pairs, so nothing is sampled
    before training), makes sure the embedded model is converted, and writes a spec: the training rows
    `load_task(cfg)` returns, the DPOConfig values (trainer.* then algo.args.*), the LoRA values.
  * Each side trains in its own fresh subprocess (`--worker zoo|trl`), so import and allocator state never
    leak between them; the order alternates zoo, trl, zoo, trl, ... because the machine is noisy.
  * zoo worker: `zoo.train.run(cfg)` unchanged, with `zoo.algos.preference.fit` (DPO's trainer) wrapped to
    attach the step timer and to stop the run once training returns (export and the eval harness are not DPO
    step costs).
  * trl worker: from_pretrained + LoraConfig + DPOConfig + DPOTrainer, nothing else; it never imports the
    zoo, Hydra or OmegaConf (that memory is part of what the zoo costs).
  * Per step: wall time on_step_begin -> on_step_end; the first WARMUP steps are dropped. Peak RSS is
    ru_maxrss at on_train_end, before anything else runs.

Size: batch 8 (trainer=cpu's default), 8 steps per run, 2 runs per side. A DPO step on the embedded 135M model
takes ~15 s in fp32 on 2 cores, so the whole bench is ~9 minutes; `--steps/--repeats` trade time for precision.

Writes results/bench/dpo.json and prints a short table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import parse_args, run_worker, spread, start_load_log, trailer, write_result

_T0 = time.perf_counter()  # worker start (after interpreter start-up), for the setup time

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "results" / "bench" / "dpo.json"
GOAL = 1.05
WARMUP = 2  # steps dropped from every run: first-touch allocations, autocast caches, lazy inits
SIDES = ("zoo", "trl")


# ----------------------------------------------------------------------------------------------- driver


def _native_bf16() -> bool:
    from zoo.config import bf16_supported

    return bf16_supported(use_cpu=True)


def _overrides(steps: int, batch_size: int, bf16: bool) -> list[str]:
    return [
        "algo=dpo", "model=smollm2-135m", "peft=lora", "data=arithmetic", "logger=none", "trainer=cpu",
        f"trainer.max_steps={steps}", f"trainer.per_device_train_batch_size={batch_size}",
        f"trainer.bf16={str(bf16).lower()}",
    ]


def _compose(overrides: list[str], output_dir: str):
    from hydra import compose, initialize_config_dir

    from zoo.config import normalize_overrides

    # paths.output_dir defaults to a Hydra runtime interpolation that does not exist under compose.
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=normalize_overrides([*overrides, f"paths.output_dir={output_dir}"]))


def _spec(overrides: list[str], scratch: Path) -> dict:
    """Everything the plain worker needs, taken from the zoo's own composed config and data."""
    from omegaconf import OmegaConf

    from zoo.config import training_arguments
    from zoo.data import load_task
    from zoo.model_cache import ensure_embedded

    cfg = _compose(overrides, str(scratch / "compose"))
    model_dir = ensure_embedded(cfg.paths.cache_dir)  # convert once here, so no worker pays for it
    rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in load_task(cfg).train]
    dpo_args = {**training_arguments(cfg), **OmegaConf.to_container(cfg.algo.args, resolve=True)}
    peft = OmegaConf.to_container(cfg.peft, resolve=True)
    return {
        "overrides": overrides,
        "model_dir": str(model_dir),
        "dtype": cfg.model.dtype,
        "seed": cfg.trainer.seed,
        "rows": rows,
        "dpo_args": dpo_args,
        "run_name": f"{cfg.logger.run_name}/{cfg.algo.name}",  # what the zoo passes
        "lora": {k: peft[k] for k in ("r", "lora_alpha", "lora_dropout", "target_modules")},
    }


RUN_SCALARS = ("peak_rss_mb", "rss_imports_mb", "rss_train_begin_mb", "setup_s", "process_s")


def _scalar_stats(runs: list[dict]) -> dict:
    """Statistics over repeats of the one-number-per-run readings every bench worker reports."""
    return {key: spread([r[key] for r in runs]) for key in RUN_SCALARS}


def _env() -> dict:
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": {p: version(p) for p in ("torch", "transformers", "trl", "peft", "datasets", "accelerate")},
    }


def start_driver(name: str) -> tuple[float, Path, tuple, list[str]]:
    """A driver's preamble: start time, a scratch dir, and how busy the machine was (warned about if it is)."""
    os.environ.setdefault("PREFZOO_CACHE", str(Path.home() / ".cache" / "prefzoo"))
    t_start = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f"prefzoo-bench-{name}-"))
    load_before, busy_before = os.getloadavg(), _busy_processes()
    if busy_before:
        # With every core already busy, torch's OpenMP threads wait on descheduled peers: small ops were measured
        # ~100x slower (a tiny-model generate: 0.13 s alone, 10-20 s beside a 2-core job), so numbers are not usable.
        print(f"[bench] WARNING: other processes are using CPU, timings will be distorted: {busy_before}", flush=True)
    return t_start, scratch, load_before, busy_before


def alternating(sides: tuple[str, ...], repeats: int):
    """(repeat, side) in run order: the sides in order on even repeats, reversed on odd ones (noisy machines)."""
    for rep in range(repeats):
        for side in sides if rep % 2 == 0 else sides[::-1]:
            yield rep, side


def _busy_processes() -> list[str]:
    """Other processes using CPU right now (the bench's numbers are only as quiet as the machine)."""
    try:
        ps = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    except OSError:
        return []
    busy = []
    for line in ps.splitlines()[1:]:
        pid, pcpu, args = line.split(None, 2)
        if int(pid) != os.getpid() and float(pcpu) >= 10:
            busy.append(f"{pcpu}% {args[:120]}")
    return busy


def machine_load(load_before: tuple, busy_before: list[str]) -> dict:
    """The load average and the busy processes before the bench and now."""
    return {"loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "busy_processes_before": busy_before, "busy_processes_after": _busy_processes()}


def drive(repeats: int, steps: int, batch_size: int, bf16: bool, result_path: Path, load) -> dict:
    t_start, scratch, load_before, busy_before = start_driver("dpo")
    try:
        spec = _spec(_overrides(steps, batch_size, bf16), scratch)
        spec_path = scratch / "spec.json"
        spec_path.write_text(json.dumps(spec))
        runs = []
        for rep in range(repeats):
            for side in SIDES:  # zoo, trl, zoo, trl, ...
                print(f"[bench] repeat {rep + 1}/{repeats}: {side} ...", flush=True)
                res = run_worker("bench.dpo", side, spec_path, scratch, f"{side}-{rep}", timeout=900, load=load)
                kept = res["step_s"][WARMUP:]
                res.update(side=side, repeat=rep, order=len(runs), step_s_median=statistics.median(kept),
                           step_s_mean=statistics.fmean(kept),
                           interval_s_median=statistics.median(res["interval_s"][WARMUP:]))
                runs.append(res)
                print(f"[bench]   {res['step_s_median']:.3f} s/step (median), peak RSS {res['peak_rss_mb']:.0f} MiB, "
                      f"train_loss {res['train_loss']:.4f}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    by = {s: [r for r in runs if r["side"] == s] for s in SIDES}
    summary = {
        s: {
            "step_s": spread([x for r in by[s] for x in r["step_s"][WARMUP:]]),
            "interval_s": spread([x for r in by[s] for x in r["interval_s"][WARMUP:]]),
            **_scalar_stats(by[s]),
        }
        for s in SIDES
    }
    z, p = summary["zoo"], summary["trl"]
    ratios = {
        "step_time_median": z["step_s"]["median"] / p["step_s"]["median"],
        "step_time_mean": z["step_s"]["mean"] / p["step_s"]["mean"],
        "step_interval_median": z["interval_s"]["median"] / p["interval_s"]["median"],
        "peak_rss_median": z["peak_rss_mb"]["median"] / p["peak_rss_mb"]["median"],
        # Both sides draw the same batches in the same order (same seed), so step k is the same work on both:
        # zoo/trl per step index (times averaged over repeats) removes the batch-length spread from the ratio.
        "paired_step_time_median": statistics.median(
            statistics.fmean(r["step_s"][k] for r in by["zoo"]) / statistics.fmean(r["step_s"][k] for r in by["trl"])
            for k in range(WARMUP, min(len(r["step_s"]) for r in runs))),
        "per_repeat_step_time_median": [a["step_s_median"] / b["step_s_median"] for a, b in zip(by["zoo"], by["trl"])],
        "per_repeat_peak_rss": [a["peak_rss_mb"] / b["peak_rss_mb"] for a, b in zip(by["zoo"], by["trl"])],
    }
    env = _env()
    env["torch_threads"] = runs[0]["torch_threads"]
    a = spec["dpo_args"]
    result = {
        "benchmark": "DPO: zoo (zoo.train.run, algo=dpo) vs plain TRL DPOTrainer script, same model/rows/settings",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "make bench  (WANDB_MODE=offline HF_HUB_OFFLINE=1 .venv/bin/python -m bench.dpo)",
        "settings": {
            "model": "smollm2-135m (embedded SmolLM2-135M-Instruct)", "model_dir": spec["model_dir"],
            "dtype": spec["dtype"], "bf16": a.get("bf16"), "cpu_native_bf16": _native_bf16(),
            "use_cpu": a.get("use_cpu"),
            "peft": {"method": "lora", **spec["lora"]}, "data": "arithmetic", "train_rows": len(spec["rows"]),
            "per_device_train_batch_size": a["per_device_train_batch_size"], "max_steps": a["max_steps"],
            "max_length": a.get("max_length"), "loss_type": a.get("loss_type"), "beta": a.get("beta"),
            "learning_rate": a.get("learning_rate"), "gradient_checkpointing": a.get("gradient_checkpointing"),
            "warmup_steps_dropped": WARMUP, "repeats_per_side": repeats, "order": [r["side"] for r in runs],
            "zoo_overrides": spec["overrides"],
            "step_time": "on_step_begin -> on_step_end wall time (forward+backward+optimizer); interval_s adds "
                         "batch fetch/collate and logging (on_step_end -> on_step_end)",
            "peak_rss": "resource.getrusage(RUSAGE_SELF).ru_maxrss at on_train_end, one fresh process per run",
        },
        "goal": {"max_ratio": GOAL,
                 "step_time_ok": ratios["step_time_median"] <= GOAL,
                 "peak_rss_ok": ratios["peak_rss_median"] <= GOAL},
        "ratios": ratios,
        "summary": summary,
        "runs": [{k: r[k] for k in ("side", "repeat", "order", "step_s_median", "step_s_mean", "interval_s_median",
                                    "train_s", "setup_s", "process_s", "peak_rss_mb", "rss_imports_mb",
                                    "rss_train_begin_mb", "train_loss", "global_step", "step_s", "interval_s")}
                 for r in runs],
        **trailer(load, t_start, env, machine_load=machine_load(load_before, busy_before)),
    }
    write_result(result, result_path)
    _print_table(result, result_path)
    return result


def _print_table(res: dict, path: Path) -> None:
    s, r = res["summary"], res["ratios"]
    rows = [
        ("step s (median)", s["zoo"]["step_s"]["median"], s["trl"]["step_s"]["median"], r["step_time_median"]),
        ("step s (mean)", s["zoo"]["step_s"]["mean"], s["trl"]["step_s"]["mean"], r["step_time_mean"]),
        ("step, paired by batch", None, None, r["paired_step_time_median"]),
        ("step interval s (median)", s["zoo"]["interval_s"]["median"], s["trl"]["interval_s"]["median"],
         r["step_interval_median"]),
        ("peak RSS MiB (median)", s["zoo"]["peak_rss_mb"]["median"], s["trl"]["peak_rss_mb"]["median"],
         r["peak_rss_median"]),
        ("RSS after imports MiB", s["zoo"]["rss_imports_mb"]["median"], s["trl"]["rss_imports_mb"]["median"], None),
        ("RSS at train begin MiB", s["zoo"]["rss_train_begin_mb"]["median"], s["trl"]["rss_train_begin_mb"]["median"],
         None),
        ("setup s (start -> train)", s["zoo"]["setup_s"]["median"], s["trl"]["setup_s"]["median"], None),
    ]
    print(f"\n{'':26s} {'zoo':>10s} {'plain TRL':>10s} {'zoo/TRL':>8s}")
    for name, a, b, q in rows:
        cells = "".join(" " * 11 if v is None else f" {v:10.3f}" for v in (a, b))
        print(f"{name:26s}{cells} {'' if q is None else f'{q:8.3f}'}")
    g = res["goal"]
    print(f"\ngoal <= {g['max_ratio']}: step time {'OK' if g['step_time_ok'] else 'MISSED'}, "
          f"peak RSS {'OK' if g['peak_rss_ok'] else 'MISSED'}; per-repeat step ratios "
          f"{[round(x, 3) for x in r['per_repeat_step_time_median']]}; load avg {res['machine_load']['loadavg_after']}")
    print(f"[bench] wrote {path} in {res['bench_seconds']:.0f} s")


# ----------------------------------------------------------------------------------------------- workers


class _TrainingDone(Exception):
    """Raised from the wrapped `fit` to end `zoo.train.run` once training is over (skip export and eval)."""


def _zoo_worker(spec: dict, workdir: Path) -> dict:
    from bench.common import StepTimer, current_rss_mb

    import zoo.algos.preference as zoo_dpo  # where zoo's DPO stages call fit
    from zoo import train as zoo_train
    import zoo.data, zoo.eval, zoo.models, zoo.rewards  # noqa: E401,F401  (run() imports these before training)

    rss_imports = current_rss_mb()
    cfg = _compose(spec["overrides"], str(workdir / "run"))
    timer, holder = StepTimer(), {}
    real_fit = zoo_dpo.fit

    def timed_fit(trainer, ctx):
        trainer.add_callback(timer)
        holder["metrics"] = real_fit(trainer, ctx)
        holder["global_step"] = trainer.state.global_step
        raise _TrainingDone

    zoo_dpo.fit = timed_fit
    try:
        zoo_train.run(cfg)
        raise RuntimeError("zoo.train.run returned without training through zoo.algos.preference.fit")
    except _TrainingDone:
        pass
    finally:  # a worker may run inside a longer-lived process (tests): leave the module as it was
        zoo_dpo.fit = real_fit
    return {**timer.result(), "rss_imports_mb": rss_imports, "train_loss": holder["metrics"]["dpo/train_loss"],
            "global_step": holder["global_step"]}


def _trl_worker(spec: dict, workdir: Path) -> dict:
    """The script a user would write with TRL alone."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer

    from bench.common import StepTimer, current_rss_mb

    rss_imports = current_rss_mb()
    set_seed(spec["seed"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=getattr(torch, spec["dtype"]))
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    set_seed(spec["seed"])
    args = DPOConfig(**spec["dpo_args"], output_dir=str(workdir / "run" / "stages" / "dpo" / "checkpoints"),
                     run_name=spec["run_name"], report_to=[])
    timer = StepTimer()
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(spec["rows"]),
        processing_class=tokenizer,
        peft_config=LoraConfig(**spec["lora"], bias="none", task_type="CAUSAL_LM"),
        callbacks=[timer],
    )
    result = trainer.train()
    return {**timer.result(), "rss_imports_mb": rss_imports, "train_loss": result.training_loss,
            "global_step": trainer.state.global_step}


def _worker(side: str, spec_path: Path, workdir: Path, out: Path) -> None:
    spec = json.loads(spec_path.read_text())
    res = (_zoo_worker if side == "zoo" else _trl_worker)(spec, workdir)
    import torch

    # setup_s: worker start -> training start (imports, config, data, model load, DPOTrainer init/tokenizing)
    res["setup_s"] = res.pop("t_train_begin") - _T0
    res["torch_threads"] = torch.get_num_threads()
    out.write_text(json.dumps(res))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2, help="runs per side, alternating zoo, trl, zoo, trl, ...")
    ap.add_argument("--steps", type=int, default=8, help="trainer.max_steps per run (first %d dropped)" % WARMUP)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--bf16", choices=("auto", "true", "false"), default="auto",
                    help="trainer.bf16 for both sides; auto: only where the hardware has native bf16 "
                    "(zoo.config.bf16_supported)")
    ap.add_argument("--out", type=Path, default=RESULT, help="result JSON (driver) or worker result file")
    a = parse_args(ap, argv, SIDES, lambda w: _worker(w.worker, w.spec, w.workdir, w.out))
    if a is not None:
        if a.steps <= WARMUP + 1:
            ap.error(f"--steps must be > {WARMUP + 1} (the first {WARMUP} are dropped)")
        load = start_load_log("dpo", a.require_quiet)
        bf16 = _native_bf16() if a.bf16 == "auto" else a.bf16 == "true"
        print(f"[bench] trainer.bf16={bf16} (native bf16: {_native_bf16()})", flush=True)
        drive(a.repeats, a.steps, a.batch_size, bf16, a.out, load)


if __name__ == "__main__":
    main()
