"""What each sampling lever (trainer.zoo.contiguous_head / cdf_sampling / merged_lora_sampling / cast_once_sampling /
packed_sampling / fused_projections / sdpa_sampling / decode_attention, and the decoding levers length_buckets (on by
default) / static_cache / compiled_decode (off) on top of those) saves against plain Hugging Face `generate` (`none`:
every lever off), on the zoo's own sampler, at the shapes the zoo samples in.

    python -m bench.sampling               # part of `make bench`; writes results/bench/sampling.json
    python -m bench.sampling --shapes grpo --settings none,all,all+static_cache   # a part of it
    python -m bench.sampling --model tiny --rounds 1 --out /tmp/s.json   # smoke test (numbers mean nothing)

The embedded SmolLM2-135M, loaded with transformers' default (SDPA) attention as a plain script gets it, under a LoRA
r16 all-linear adapter (its B matrices drawn at random, as a trained adapter's would be, so folding it in is real
work) samples through `zoo.generation.sample`, as the harness, the
preference-pair sampler and PPO's rollouts do, at three shapes (SHAPES):

- `single`: `--batch` prompts of one length in one batch of `--tokens` new tokens, temperature 1, in bf16 weights, fp32
  weights and, where bf16 is native, fp32 weights under bf16 autocast: the shape of the earlier numbers.
- `harness`: the harness's decoding (conf/eval: 64 prompts, here sentiment prompts of 5-14 tokens, batches of 32, 32
  tokens, temperature 0.7) in fp32 weights, as the harness samples: two batches, so length bucketing can act.
- `grpo`: TRL's GRPO step at the zoo's defaults (per_device_train_batch_size 8 = 2 arithmetic prompts x
  num_generations 4, max_completion_length 32, temperature 1) in fp32 weights under bf16 autocast where native, as
  a bf16 Trainer samples. TRL calls `generate` itself with this batch; the levers that wrap `generate` act there
  the same way, length bucketing does not (one batch).

A call runs as many decoding steps as its batches' longest completions (rows that stopped early ride along), and
the levers that change the random stream change where rows stop, so the unit of time is the decoding step: seconds
per call / the steps `generate` ran (`Samples.decoding_steps`); seconds per call are kept too. The settings
alternate within each round (order reversed every other round); round 0 warms every setting up (its time is
`warmup_s`: what compiled_decode spends compiling) and is dropped. `--allocator as_run` (the default) times `none`
in a worker process with glibc's defaults, as a plain script allocates, and every other setting in a second worker
with trainer.zoo.malloc_keep applied, as a zoo run allocates (trainer=cpu keeps freed memory); one call at a time,
never both at once. `--allocator shared` times every setting in this process with glibc's defaults (the earlier
files). Reported per setting: the median ms per
decoding step with min/max over rounds, and the speedup against `none` (the ratio of medians, and per round).

`--profile SETTING` (default `all`; `none` to skip) runs one more call of that setting per shape and precision
under torch.profiler and records where its time went (`profile`): the matrix multiplies' share of the operators'
self time, their ms per decoding step, and `bound_speedup_vs_none`, what the setting could reach against plain
`generate` if everything but those multiplies cost nothing. The profiler adds a little to every operator, so the
share is a slight underestimate. Beside it, `linear_chain`: the model's own linear layers (every decoder layer's
projections and the LM head, fp32, random inputs, no attention or anything else) run back to back at 16, 32, 64 and
128 rows: what one decoding step's multiplies cost at that batch height on this machine, and the GFLOP/s they reach,
through torch's `F.linear` and, prepacked, through oneDNN's inner product (what packed_sampling runs in fp32).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import statistics
import time
from pathlib import Path

from bench.common import add_quiet_arg, machine, start_load_log, trailer, versions, write_result
from zoo.levers import DECODING, LEVERS, SAMPLING

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "results" / "bench" / "sampling.json"
# The sampler as a run gets it: every sampling and decoding lever on by default (the eight sampling levers and
# length_buckets). Earlier files' `all` lacks the levers added since (their `levers` field lists each setting's).
ALL = tuple(name for name in (*SAMPLING, *DECODING) if LEVERS[name])
SETTINGS = {
    "none": (),
    "contiguous_head": ("contiguous_head",),
    "cdf_sampling": ("cdf_sampling",),
    "merged_lora_sampling": ("merged_lora_sampling",),
    "cast_once_sampling": ("cast_once_sampling",),
    "all": ALL,
    "all-packed_sampling": tuple(name for name in ALL if name != "packed_sampling"),
    "all-length_buckets": tuple(name for name in ALL if name != "length_buckets"),
    "all-fused_projections": tuple(name for name in ALL if name != "fused_projections"),
    "all-decode_attention": tuple(name for name in ALL if name != "decode_attention"),
    "all+static_cache": (*ALL, "static_cache"),
    "all+compiled_decode": (*ALL, "compiled_decode"),
}


def _single_prompts(batch: int) -> list:
    return [f"Write a short review of movie number {i}. The film" for i in range(batch)]


def _harness_prompts(batch: int) -> list:
    from zoo.data.tasks import sentiment

    return sentiment.prompts(64, 0)


def _grpo_prompts(batch: int) -> list:
    from zoo.data.tasks import arithmetic

    return [r["prompt"] for r in arithmetic.rows(2, 0)]


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_mkl_linear", "mkldnn::_linear_pointwise",
              "aten::mkldnn_linear")


def matmul_share(self_us: dict[str, float], steps: int, baseline_ms_per_step: float | None = None) -> dict:
    """Where a profiled call's time went, from each operator's total self time in microseconds: the matrix
    multiplies' share, their ms per decoding step, and the speedup over `baseline_ms_per_step` that a step made of
    those multiplies alone would reach."""
    total = sum(self_us.values())
    mm = sum(us for name, us in self_us.items() if name in MATMUL_OPS)
    out = {"matmul_share": mm / total, "matmul_ms_per_step": mm / 1e3 / steps,
           "profiled_ms_per_step": total / 1e3 / steps}
    if baseline_ms_per_step is not None:
        out["bound_speedup_vs_none"] = baseline_ms_per_step / out["matmul_ms_per_step"]
    return out


def profile_call(call) -> tuple[dict[str, float], object]:
    """Run `call()` under the CPU profiler: each operator's total self time (us) and what the call returned."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = call()
    return {e.key: e.self_cpu_time_total for e in prof.key_averages()}, out


def linear_chain(model, rows: tuple[int, ...] = (16, 32, 64, 128), repeats: int = 5) -> dict:
    """One decoding step's matrix multiplies alone: every nn.Linear of `model`'s decoder (LoRA's own small ones left
    out, as when folded in) and its LM head, once each, fp32, on `rows` random rows; the median of `repeats` after
    one warm-up pass. `by_rows`: torch's `F.linear` (MKL's gemm); `packed_by_rows`, where torch has oneDNN: the same
    weights prepacked for oneDNN's fp32 inner product, as trainer.zoo.packed_sampling runs them without autocast
    (the two alternate within each repeat)."""
    import torch

    from zoo.sampling_weights import _packable, _packed_linear

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    weights = [m.weight.detach().float().contiguous() for name, m in base.get_decoder().named_modules()
               if isinstance(m, torch.nn.Linear) and "lora_" not in name]  # the base layers (adapters folded in)
    weights.append(head.weight.detach().float().contiguous())
    flops_per_row = sum(2 * w.numel() for w in weights)
    packed = ([torch.ops.mkldnn._reorder_linear_weight(w) for w in weights]
              if _packable(weights[0], torch.float32) else None)
    kinds = {"by_rows": lambda x, i: torch.nn.functional.linear(x, weights[i])}
    if packed is not None:
        kinds["packed_by_rows"] = lambda x, i: _packed_linear(x, packed=packed[i], bias=None, dtype=torch.float32)
    out = {kind: {} for kind in kinds}
    with torch.no_grad():
        for m in rows:
            xs = {w.shape[1]: torch.randn(m, w.shape[1]) for w in weights}
            times = {kind: [] for kind in kinds}
            for r in range(repeats + 1):
                for kind, linear in (kinds.items() if r % 2 else list(kinds.items())[::-1]):
                    t = time.perf_counter()
                    for i, w in enumerate(weights):
                        linear(xs[w.shape[1]], i)
                    if r:
                        times[kind].append(time.perf_counter() - t)
            for kind, ts in times.items():
                med = statistics.median(ts)
                out[kind][str(m)] = {"ms_per_step": 1e3 * med, "min_ms": 1e3 * min(ts), "max_ms": 1e3 * max(ts),
                                     "ms_per_row": 1e3 * med / m, "gflops": flops_per_row * m / med / 1e9}
    return {"linears": len(weights), "gflop_per_row": flops_per_row / 1e9, **out}


# name -> prompts(batch), samples per prompt, batch size (None: --batch), temperature, precisions ("bf16" expands to
# bf16 weights + fp32 under bf16 autocast where bf16 is native)
SHAPES = {
    "single": dict(prompts=_single_prompts, n=1, batch=None, temperature=1.0, modes=("float32", "bf16")),
    "harness": dict(prompts=_harness_prompts, n=1, batch=32, temperature=0.7, modes=("float32",)),
    "grpo": dict(prompts=_grpo_prompts, n=4, batch=8, temperature=1.0, modes=("float32_autocast_bf16",)),
}


def _trainer(on: tuple[str, ...]):
    from omegaconf import OmegaConf

    return OmegaConf.create({"zoo": {name: name in on for name in (*SAMPLING, *DECODING)}})


def _model(name: str, dtype):
    import torch
    from hydra import compose, initialize_config_dir

    from zoo.config import normalize_overrides
    from zoo.models import load_policy, wrap_peft

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=normalize_overrides(
            [f"model={name}", "peft=lora", "paths.output_dir=/tmp/zoo-bench-sampling",
             # transformers' default attention (SDPA), the one plain `generate` gets: a zoo run's model trains with
             # eager attention (trainer.zoo.eager_attention) and samples with SDPA (trainer.zoo.sdpa_sampling)
             "trainer.zoo.eager_attention=false"]))
    bundle = load_policy(cfg)
    model = wrap_peft(bundle).to(dtype)
    torch.manual_seed(0)
    for pname, p in model.named_parameters():
        if "lora_B" in pname:
            torch.nn.init.normal_(p, std=0.01)
    return model, bundle.tokenizer


def timed_call(model, tok, on: tuple[str, ...], *, prompts: list, tokens: int, temperature: float, n: int, batch: int,
               autocast: bool, seed: int) -> tuple[float, int]:
    """One `zoo.generation.sample` call with the levers `on`: (seconds, decoding steps it ran)."""
    from contextlib import nullcontext

    import torch

    from zoo import levers
    from zoo.generation import sample

    amp = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()
    with levers.using(_trainer(on)), amp:
        t = time.perf_counter()
        out = sample(model, tok, prompts, max_new_tokens=tokens, temperature=temperature, num_return_sequences=n,
                     batch_size=batch, seed=seed)
        dt = time.perf_counter() - t
    return dt, out.decoding_steps or max(len(c) for c in out.completion_ids)


def _serve(conn, model_name: str, dtype: str, keep_freed: bool, threads: int) -> None:
    """A worker process of `--allocator as_run`: glibc set as a run would set it (`keep_freed`: the zoo's
    malloc_keep, before anything is allocated), its own copy of the model; then one `timed_call` per request."""
    import torch

    from zoo.levers import malloc_keep

    applied = malloc_keep(keep_freed)
    torch.set_num_threads(threads)
    model, tok = _model(model_name, getattr(torch, dtype))
    conn.send(applied)
    while (request := conn.recv()) is not None:
        conn.send(timed_call(model, tok, **request))


class Workers:
    """`--allocator as_run`: two worker processes, one with glibc's defaults (where `none`, plain `generate`, runs,
    as a plain script runs) and one with trainer.zoo.malloc_keep applied (every other setting, as a zoo run samples:
    trainer=cpu keeps freed memory). The parent sends one call at a time, so they never run together."""

    def __init__(self, model_name: str, dtype: str, threads: int):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.pipes, self.procs, self.allocator = {}, [], {}
        for keep in (False, True):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, model_name, dtype, keep, threads), daemon=True)
            proc.start()
            self.allocator["zoo_levers" if keep else "none"] = parent.recv()
            self.pipes[keep] = parent
            self.procs.append(proc)

    def __call__(self, name: str, on: tuple[str, ...], **request) -> tuple[float, int]:
        pipe = self.pipes[name != "none"]
        pipe.send({"on": on, **request})
        return pipe.recv()

    def close(self) -> None:
        for pipe in self.pipes.values():
            pipe.send(None)
        for proc in self.procs:
            proc.join(timeout=60)


def measure(model, tok, *, batch: int, tokens: int, rounds: int, autocast: bool = False, prompts: list | None = None,
            n: int = 1, temperature: float = 1.0, settings: dict | None = None, profile: str | None = None,
            workers: Workers | None = None) -> dict:
    settings = settings or SETTINGS
    prompts = prompts or _single_prompts(batch)
    times: dict[str, list[float]] = {name: [] for name in settings}
    calls: dict[str, list[float]] = {name: [] for name in settings}
    warmup: dict[str, float] = {}
    names = list(settings)

    def request(seed: int) -> dict:  # one call's arguments beside the levers
        return dict(prompts=prompts, tokens=tokens, temperature=temperature, n=n, batch=batch, autocast=autocast,
                    seed=seed)

    for r in range(rounds + 1):  # round 0 warms up every setting (compiles, for compiled_decode) and is dropped
        for name in names if r % 2 else names[::-1]:
            dt, steps = (workers(name, settings[name], **request(r)) if workers is not None
                         else timed_call(model, tok, settings[name], **request(r)))
            if r:
                times[name].append(dt / steps)
                calls[name].append(dt)
            else:
                warmup[name] = dt
    base = times[names[0]]
    res = {}
    if profile in settings:
        self_us, (_, steps) = profile_call(lambda: timed_call(model, tok, settings[profile], **request(rounds + 1)))
        prof = {"setting": profile, **matmul_share(self_us, max(1, steps), 1e3 * statistics.median(base))}
    for name, ts in times.items():
        med = statistics.median(ts)
        res[name] = {"median_ms_per_step": 1e3 * med, "min_ms_per_step": 1e3 * min(ts),
                     "max_ms_per_step": 1e3 * max(ts), "per_round_ms_per_step": [1e3 * t for t in ts],
                     f"speedup_vs_{names[0]}": statistics.median(base) / med,
                     f"per_round_speedup_vs_{names[0]}": [b / t for b, t in zip(base, ts)],
                     "median_s_per_call": statistics.median(calls[name]), "warmup_s": warmup[name]}
    if profile in settings:
        res[profile]["profile"] = prof
    return res


def _modes(shape: dict, bf16_native: bool) -> list[str]:
    out = []
    for mode in shape["modes"]:
        if mode == "bf16":
            out += ["bfloat16", "float32_autocast_bf16"] if bf16_native else []
        elif mode == "float32_autocast_bf16" and not bf16_native:
            out.append("float32")
        else:
            out.append(mode)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=16, help="rows of the single shape")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {list(SHAPES)}")
    ap.add_argument("--settings", default=",".join(SETTINGS),
                    help=f"comma-separated, of {list(SETTINGS)}; the first is the baseline (none: plain generate)")
    ap.add_argument("--profile", default="all", help="the setting to profile once per shape and precision (none: skip)")
    ap.add_argument("--allocator", choices=("as_run", "shared"), default="as_run",
                    help="as_run: `none` in a process with glibc's defaults, the other settings in one with the zoo's "
                         "malloc_keep, as a plain script and a zoo run each allocate; shared: every setting in this "
                         "process, glibc's defaults")
    ap.add_argument("--out", type=Path, default=RESULT)
    add_quiet_arg(ap)
    a = ap.parse_args(argv)
    shapes, names = a.shapes.split(","), a.settings.split(",")
    unknown = [x for x in shapes if x not in SHAPES] + [x for x in names if x not in SETTINGS]
    if unknown:
        ap.error(f"unknown shape or setting: {unknown}")
    load = start_load_log("sampling", a.require_quiet)

    import torch

    from zoo.config import bf16_supported

    torch.set_num_threads(a.threads)
    t0, load_before = time.perf_counter(), os.getloadavg()
    native = bf16_supported(use_cpu=True)
    by_shape, chain = {}, None
    for shape_name in shapes:
        shape = SHAPES[shape_name]
        batch = shape["batch"] or a.batch
        prompts = shape["prompts"](batch)
        by_dtype, allocators = {}, {}
        for mode in _modes(shape, native):  # one side per precision: every setting's rounds run inside it
            model, tok = _model(a.model, getattr(torch, mode.split("_")[0]))
            workers = Workers(a.model, mode.split("_")[0], a.threads) if a.allocator == "as_run" else None
            try:
                with load.side(f"{shape_name}/{mode}"):
                    by_dtype[mode] = measure(model, tok, batch=batch, tokens=a.tokens, rounds=a.rounds,
                                             autocast=mode.endswith("autocast_bf16"), prompts=prompts, n=shape["n"],
                                             temperature=shape["temperature"],
                                             settings={k: SETTINGS[k] for k in names},
                                             profile=a.profile if a.profile != "none" else None, workers=workers)
            finally:
                if workers is not None:
                    allocators[mode] = workers.allocator
                    workers.close()
            if chain is None and a.profile != "none":  # the multiplies alone, once per run
                with load.side("linear_chain"):
                    chain = linear_chain(model)
            del model
        by_shape[shape_name] = {"prompts": len(prompts), "samples_per_prompt": shape["n"], "batch": batch,
                                "new_tokens": a.tokens, "temperature": shape["temperature"], "by_dtype": by_dtype,
                                **({"allocator_by_dtype": allocators} if allocators else {})}
    result = {
        "benchmark": "sampling levers on zoo.generation.sample",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": f"python -m bench.sampling --model {a.model} --batch {a.batch} --tokens {a.tokens} "
                   f"--rounds {a.rounds} --threads {a.threads} --shapes {a.shapes} --settings {a.settings} "
                   f"--profile {a.profile} --allocator {a.allocator}",
        "settings": {"model": a.model, "peft": "lora r16 all-linear, B ~ N(0, 0.01)", "rounds": a.rounds,
                     "allocator": a.allocator,
                     "threads": a.threads, "bf16_native": native, "levers": {k: list(SETTINGS[k]) for k in names}},
        "by_shape": by_shape,
        **({"linear_chain": chain} if chain else {}),
        **trailer(load, t0, versions(), machine=machine(load_before)),
    }
    write_result(result, a.out)
    for shape_name, entry in by_shape.items():
        for dtype, res in entry["by_dtype"].items():
            print(shape_name, dtype, {k: f"{v['median_ms_per_step']:.1f}ms x{v[f'speedup_vs_{names[0]}']:.2f}"
                                      for k, v in res.items()})
            for k, v in res.items():
                if "profile" in v:
                    p = v["profile"]
                    print(f"  {k}: matmuls {p['matmul_share']:.0%} of the step, {p['matmul_ms_per_step']:.1f} ms; "
                          f"bound x{p.get('bound_speedup_vs_none', float('nan')):.2f} vs {names[0]}")
    if chain:
        for kind in ("by_rows", "packed_by_rows"):
            print(f"linear chain ({kind}):", {m: f"{v['ms_per_step']:.1f}ms {v['gflops']:.0f}GFLOP/s"
                                               for m, v in chain.get(kind, {}).items()})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
