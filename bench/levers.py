"""Candidate CPU levers for the DPO step, one knob at a time against the zoo's defaults: what pays and what does not.

    python -m bench.levers                    # part of `make bench`; writes results/bench/levers.json
    python -m bench.levers --variants zoo_defaults,torch_compile --repeats 2 --steps 8

Every variant is `python -m zoo.train algo=dpo` as `bench.cpu_defaults` runs it (SmolLM2-135M + LoRA r16
all-linear, the arithmetic pairs, batch 8, same seed and rows), each run a fresh subprocess, variants alternating
(order reversed every repeat), with exactly one change from the zoo's defaults:

  zoo_defaults              trainer=cpu as composed
  torch_compile             trainer.torch_compile=true (inductor on CPU; compiling is paid inside the first steps)
  gradient_checkpointing    trainer.activation_checkpointing=true (TRL's default)
  precompute_ref_log_probs  algo.args.precompute_ref_log_probs=true (a pass over the pairs before training: the
                            step loses its reference forward, the pass is timed as `before_first_step_s`)
  reference_precompute      trainer.zoo.reference_precompute=true (the zoo's own pass, zoo/algos/reference.py: head
                            at completion positions only, batches of eval.batch_size sorted by length); the pass
                            is timed by itself: `reference_precompute_s_per_pair`, against the defaults' reference
                            forward inside a step, `in_step_reference_s_per_pair` (the time inside TRL's
                            use_adapter, per pair of the batch)
  sdpa_attention            trainer.zoo.eager_attention=false (torch SDPA instead of transformers' eager attention,
                            the zoo's CPU default since this bench measured it; before, the variant was
                            `eager_attention`, +model.attn_implementation=eager over SDPA defaults)
  fp32                      trainer.bf16=false (bf16 autocast off where it is native)
  one_thread                OMP_NUM_THREADS=1 (threads = physical cores is the default: this is the other side)
  malloc_keep_off           trainer.zoo.malloc_keep=false (glibc's default allocator: the zoo's defaults call
                            mallopt(M_MMAP_MAX=0, M_TRIM_THRESHOLD=-1) when a run starts)
  malloc_env                the lever off, MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2**40 in the environment
                            instead (glibc reads them at process start-up); results/bench/levers_malloc.json
                            measured this as `malloc_keep` against defaults without the lever

Per run: every step's time, the time before the first step, the train loss, and the shapes of the batches the
trainer was given (padded tokens vs real ones: what padding-free or length-bucketed batches could save at most).
Per variant: median step (first WARMUP dropped) with its spread, its ratio to the defaults per repeat, and the
whole training time per step including setup, so a lever that pays per step but costs up front says so.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import machine, parse_args, run_worker, spread, start_load_log, trailer, versions, write_result
from bench.dpo import alternating

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "results" / "bench" / "levers.json"
WARMUP = 2
VARIANTS = {  # name -> (overrides, extra environment)
    "zoo_defaults": ([], {}),
    "torch_compile": (["trainer.torch_compile=true"], {}),
    "gradient_checkpointing": (["trainer.activation_checkpointing=true"], {}),
    "precompute_ref_log_probs": (["algo.args.precompute_ref_log_probs=true"], {}),
    "reference_precompute": (["trainer.zoo.reference_precompute=true"], {}),
    "sdpa_attention": (["trainer.zoo.eager_attention=false"], {}),
    "fp32": (["trainer.bf16=false"], {}),
    "one_thread": ([], {"OMP_NUM_THREADS": "1"}),
    # glibc malloc serving every block from its heap and never returning freed memory to the OS (no mmap per large
    # tensor, so no page faults and zeroing of fresh pages at every step): the zoo's runtime lever off, and the same
    # settings from the environment at start-up instead of the lever
    "malloc_keep_off": (["trainer.zoo.malloc_keep=false"], {}),
    "malloc_env": (["trainer.zoo.malloc_keep=false"],
                   {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}),
}


def padding(batches: list[list[int]]) -> dict:
    """[padded tokens, real tokens] per batch -> the share of a batch's positions that are padding."""
    padded, real = sum(b[0] for b in batches), sum(b[1] for b in batches)
    return {"batches": len(batches), "padded_positions": padded, "real_tokens": real,
            "padding_share": 1 - real / padded if padded else 0.0}


def _whole_per_step(run: dict) -> float:
    """Training time per step including everything before the first step (what a user waits per step)."""
    return (run["train_s"] + run["before_first_step_s"]) / run["global_step"]


def reference_cost(rs: list[dict], batch_size: int) -> dict:
    """Per pair: the reference forward inside a step (seconds in TRL's use_adapter per step, first WARMUP steps
    dropped, over the batch's pairs) and, where the zoo's pass ran, the pass's seconds over its pairs."""
    out = {}
    inside = [x / batch_size for r in rs for x in r.get("phase_s", {}).get("reference", [])[WARMUP:]]
    if any(inside):
        out["in_step_reference_s_per_pair"] = spread(inside)
    passes = [r["reference_precompute"] for r in rs if r.get("reference_precompute")]
    if passes:
        out["reference_precompute_s_per_pair"] = spread([p["seconds"] / p["pairs"] for p in passes])
        out["reference_precompute_batch_size"] = passes[0]["batch_size"]
    return out


def summarise(runs: list[dict], variants: list[str], batch_size: int = 8) -> dict:
    base = [r for r in runs if r["variant"] == "zoo_defaults"]
    out = {}
    for name in variants:
        rs = [r for r in runs if r["variant"] == name]
        steps = [x for r in rs for x in r["step_s"][WARMUP:]]
        entry = {"step_s": spread(steps),
                 "train_s_per_step": spread([_whole_per_step(r) for r in rs]),
                 "first_steps_s": [r["step_s"][:WARMUP] for r in rs],
                 "before_first_step_s": spread([r["before_first_step_s"] for r in rs]),
                 "peak_rss_mb": spread([r["peak_rss_mb"] for r in rs]),
                 "train_loss": spread([r["train_loss"] for r in rs]),
                 "padding": padding([b for r in rs for b in r["batches"]]),
                 **reference_cost(rs, batch_size)}
        if base and name != "zoo_defaults":
            per = [statistics.median(b["step_s"][WARMUP:]) / statistics.median(r["step_s"][WARMUP:])
                   for b, r in zip(base, rs)]
            total = [_whole_per_step(b) / _whole_per_step(r) for b, r in zip(base, rs)]
            entry["speedup_vs_defaults"] = {"step_median": statistics.median(
                statistics.median(b["step_s"][WARMUP:]) for b in base) / entry["step_s"]["median"],
                "step_per_repeat": per, "train_time_per_step_per_repeat": total}
        out[name] = entry
    return out


def drive(variants: list[str], repeats: int, steps: int, batch_size: int, threads: int, path: Path, load) -> dict:
    from bench.cpu_defaults import _spec

    t0, load_before = time.perf_counter(), os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="zoo-bench-levers-"))
    spec = _spec("dpo", steps, batch_size, scratch)
    runs = []
    for repeat, name in alternating(tuple(variants), repeats):
        overrides, env = VARIANTS[name]
        spec_path = scratch / f"{name}.json"
        spec_path.write_text(json.dumps({**spec, "overrides": [*spec["overrides"], *overrides]}))
        tag = f"{name}-{repeat}"
        print(f"[bench] {tag} ...", flush=True)
        res = run_worker("bench.levers", "zoo", spec_path, scratch, tag, threads,
                         extra_env={"TQDM_DISABLE": "1", **env}, load=load)
        res.update(variant=name, repeat=repeat)
        runs.append(res)
        print(f"[bench] {tag}: median step {statistics.median(res['step_s'][WARMUP:]):.2f} s, first "
              f"{[round(x, 1) for x in res['step_s'][:WARMUP]]}, before first step {res['before_first_step_s']:.1f}"
              f" s, train loss {res['train_loss']:.4f}", flush=True)
    result = {
        "benchmark": "CPU levers for the DPO step, one at a time against the zoo's defaults",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": f"python -m bench.levers --variants {','.join(variants)} --repeats {repeats} --steps {steps} "
                   f"--batch-size {batch_size} --threads {threads}",
        "settings": {"algo": "dpo", "model": "smollm2-135m", "peft": "lora r16 all-linear", "data": "arithmetic",
                     "steps_per_run": steps, "warmup_steps_dropped": WARMUP, "repeats": repeats,
                     "batch_size": batch_size, "threads": threads, "max_length": spec["shared"].get("max_length"),
                     "variants": {v: {"overrides": VARIANTS[v][0], "env": VARIANTS[v][1]} for v in variants}},
        "variants": summarise(runs, variants, batch_size),
        "runs": [{k: r.get(k) for k in ("variant", "repeat", "step_s", "train_s", "before_first_step_s",
                                        "global_step", "peak_rss_mb", "train_loss", "final_loss", "settings",
                                        "process_s", "phase_s", "reference_precompute")} for r in runs],
        **trailer(load, t0, versions(), machine=machine(load_before)),
    }
    write_result(result, path)
    for name, v in result["variants"].items():
        sp = v.get("speedup_vs_defaults")
        print(f"{name:26s} step {v['step_s']['median']:6.2f} s  setup {v['before_first_step_s']['median']:6.1f} s"
              + (f"  x{sp['step_median']:.2f} (per repeat {[round(x, 2) for x in sp['step_per_repeat']]})"
                 if sp else "") + f"  loss {v['train_loss']['median']:.4f}")
    print(f"[bench] wrote {path} in {result['bench_seconds']:.0f} s")
    return result


# ----------------------------------------------------------------------------------------------- worker


def _record_batches(store: list) -> None:
    """Wrap every Trainer's collator as its train dataloader is built: [positions, real tokens] per batch."""
    from transformers import Trainer

    real = Trainer.get_train_dataloader

    def get_train_dataloader(self):
        collate = self.data_collator

        def recording(features):
            batch = collate(features)
            mask = batch.get("attention_mask") if isinstance(batch, dict) else None
            if mask is not None:
                store.append([int(mask.numel()), int(mask.sum())])
            return batch

        self.data_collator = recording
        try:
            return real(self)
        finally:
            self.data_collator = collate

    Trainer.get_train_dataloader = get_train_dataloader


def _worker(spec_path: Path, workdir: Path, out: Path) -> None:
    from bench.cpu_defaults import _time_phases, _zoo_worker

    _time_phases("dpo")  # phase_s["reference"]: the step's reference forward, per step
    batches: list = []
    _record_batches(batches)
    res = _zoo_worker(json.loads(spec_path.read_text()), workdir)
    res.pop("t_train_begin", None)
    out.write_text(json.dumps({**res, "batches": batches}))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8, help=f"optimizer steps per run (first {WARMUP} dropped)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="OMP_NUM_THREADS of every worker")
    ap.add_argument("--out", type=Path, default=RESULT)
    a = parse_args(ap, argv, ("zoo",), lambda w: _worker(w.spec, w.workdir, w.out))
    if a is None:
        return
    variants = [v for v in a.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"--variants: unknown {unknown}; known: {list(VARIANTS)}")
    if "zoo_defaults" not in variants:
        variants.insert(0, "zoo_defaults")  # every ratio is against it
    if a.steps <= WARMUP + 1:
        ap.error(f"--steps must be > {WARMUP + 1} (the first {WARMUP} are dropped)")
    drive(variants, a.repeats, a.steps, a.batch_size, a.threads, a.out, start_load_log("levers", a.require_quiet))


if __name__ == "__main__":
    main()
