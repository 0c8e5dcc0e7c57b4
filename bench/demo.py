"""`make demo` end to end against a plain TRL script doing the same SFT -> DPO pipeline with the obvious settings.

    python -m bench.demo                     # part of `make bench`; writes results/bench/demo.json
    python -m bench.demo --model tiny --repeats 1 --out /tmp/d.json     # smoke test (numbers mean nothing)

Both sides, each a fresh process, sides alternating per repeat, start from the same cached model directory:

  zoo    `zoo.train.run(cfg)` for `experiment=demo` as composed (trainer=cpu: the zoo's defaults and levers):
         SFT, pairs sampled from the SFT policy and ranked by VADER, DPO, then the harness (before/after columns:
         gold, KL, win rate, length, distinct-n on the held-out prompts).
  plain  the script a careful TRL user would write for the same pipeline, never importing the zoo: the same
         rows (the demo's SFT share, DPO prompts and held-out prompts, read from the zoo's composed config by the
         driver), LoRA values, learning rates, epochs, batch size, max_length, beta and seed; bf16 where the CPU
         has it natively, no gradient checkpointing; `model.generate` for the pairs (2 samples per prompt,
         temperature 1, 32 new tokens, batch 32) ranked by VADER, ties dropped; and for the evaluation, samples
         from the starting model and the trained one on the held-out prompts (temperature 0.7) scored by VADER.
         It computes less than the zoo's harness (no KL, win rate or diversity), so it is timed doing less; the
         zoo's probes (sycophancy, capability, self-BLEU) are turned off for the bench.

Reported per side: whole-process seconds (imports and model loading included: what a user waits for) with the
spread over repeats, the phases the worker timed, and the gold reward before and after (speed must not cost
quality: the two sides' numbers should agree within sampling noise). `speedup` = plain / zoo (> 1: zoo faster).
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

from bench.common import machine, parse_args, run_worker, start_load_log, trailer, versions, write_result
from bench.dpo import alternating

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "results" / "bench" / "demo.json"
SIDES = ("plain", "zoo")


# ----------------------------------------------------------------------------------------------- driver


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from zoo.config import normalize_overrides

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=normalize_overrides(overrides))


def _spec(model: str, scratch: Path) -> dict:
    """The demo's rows and settings, from the zoo's composed config, for both sides."""
    from omegaconf import OmegaConf

    from zoo.config import bf16_supported, training_arguments
    from zoo.data import load_task, partition, sft_rows
    from zoo.models import resolve_model_path

    # The probes (sycophancy, capability, diversity) evaluate what the plain script does not: off, so the zoo side
    # is timed doing the harness it was timed with before them (still more than the plain script's evaluation).
    overrides = ["experiment=demo", f"model={model}", "logger=none", "trainer.save_strategy=no",
                 "eval.diversity.prompts=0", "eval.sycophancy.items=0", "eval.capability.arithmetic=0",
                 "eval.capability.choice=0"]
    cfg = _compose([*overrides, f"paths.output_dir={scratch / 'compose'}"])
    task = load_task(cfg)
    shares = partition(task.train, ["sft", "dpo"])

    def args(section) -> dict:
        merged = {**training_arguments(cfg), **OmegaConf.to_container(section.args, resolve=True)}
        keep = ("learning_rate", "max_length", "num_train_epochs", "per_device_train_batch_size", "seed", "beta",
                "loss_type", "completion_only_loss", "gradient_accumulation_steps", "lr_scheduler_type")
        return {k: merged[k] for k in keep if k in merged}

    peft = OmegaConf.to_container(cfg.peft, resolve=True)
    return {
        "overrides": overrides, "model_dir": resolve_model_path(cfg.model, cfg.paths.cache_dir),
        "sft_rows": sft_rows(shares["sft"], "demo"), "dpo_prompts": [r["prompt"] for r in shares["dpo"]],
        "eval_prompts": [r["prompt"] for r in task.eval], "sft_args": args(cfg.stages.sft), "dpo_args": args(cfg.algo),
        "pairs": OmegaConf.to_container(cfg.algo.pairs, resolve=True),
        "eval": OmegaConf.to_container(cfg.eval, resolve=True), "native_bf16": bf16_supported(use_cpu=True),
        "lora": {k: peft[k] for k in ("r", "lora_alpha", "lora_dropout", "target_modules")},
    }


def drive(model: str, repeats: int, threads: int, out: Path, load) -> dict:
    t_start, load_before = time.perf_counter(), os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="zoo-bench-demo-"))
    spec = _spec(model, scratch)
    spec_path = scratch / "spec.json"
    spec_path.write_text(json.dumps(spec))
    runs = []
    for repeat, side in alternating(SIDES, repeats):
        tag = f"{side}-{repeat}"
        print(f"[bench] {tag} ...", flush=True)
        res = run_worker("bench.demo", side, spec_path, scratch, tag, threads, extra_env={"TQDM_DISABLE": "1"},
                         timeout=3600, load=load)
        res.update(side=side, repeat=repeat)
        runs.append(res)
        print(f"[bench] {tag}: {res['process_s']:.0f} s, gold {res['gold_before']:.3f} -> {res['gold_after']:.3f}",
              flush=True)
    summary = {}
    for side in SIDES:
        rs = [r for r in runs if r["side"] == side]
        summary[side] = {key: {"median": statistics.median(r[key] for r in rs), "min": min(r[key] for r in rs),
                               "max": max(r[key] for r in rs), "values": [r[key] for r in rs]}
                         for key in ("process_s", "eval_s", "gold_before", "gold_after", "num_pairs")}
    per_repeat = [p["process_s"] / z["process_s"] for p, z in
                  zip([r for r in runs if r["side"] == "plain"], [r for r in runs if r["side"] == "zoo"])]
    result = {
        "benchmark": "make demo (zoo, trainer=cpu) vs a plain TRL SFT -> DPO script with obvious settings",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": f"python -m bench.demo --model {model} --repeats {repeats} --threads {threads}",
        "settings": {k: spec[k] for k in ("overrides", "sft_args", "dpo_args", "pairs", "lora", "native_bf16")}
        | {"sft_rows": len(spec["sft_rows"]), "dpo_prompts": len(spec["dpo_prompts"]),
           "eval_prompts": len(spec["eval_prompts"]), "repeats": repeats, "threads": threads},
        "summary": summary,
        "speedup": {"process_median": summary["plain"]["process_s"]["median"] / summary["zoo"]["process_s"]["median"],
                    "per_repeat": per_repeat},
        "runs": runs, **trailer(load, t_start, versions(), machine=machine(load_before)),
    }
    write_result(result, out)
    print(f"[bench] zoo {summary['zoo']['process_s']['median']:.0f} s vs plain "
          f"{summary['plain']['process_s']['median']:.0f} s: speedup {result['speedup']['process_median']:.2f} "
          f"(per repeat {[round(x, 2) for x in per_repeat]}); wrote {out}")
    return result


# ----------------------------------------------------------------------------------------------- workers


def _zoo_worker(spec: dict, workdir: Path) -> dict:
    from zoo.train import run

    cfg = _compose([*spec["overrides"], f"paths.output_dir={workdir / 'run'}"])
    metrics = run(cfg)
    phases = {k: v for k, v in metrics.items() if k.endswith("train_runtime")}
    # The harness's own time (every column, probes included: run/eval_seconds), beside the plain script's eval_s
    phases["eval_s"] = metrics["run/eval_seconds"]
    return {"gold_before": metrics["before/gold_reward"], "gold_after": metrics["eval/gold_reward"],
            "num_pairs": metrics["dpo/num_pairs"], "eval_s": phases["eval_s"], "phases": phases}


def _generate(model, tokenizer, prompts: list[str], n: int, temperature: float, max_new_tokens: int,
              batch_size: int) -> list[str]:
    """n samples per prompt, as a plain script would draw them: left-padded batches through model.generate."""
    import torch

    tokenizer.padding_side = "left"
    flat = [p for p in prompts for _ in range(n)]
    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(flat), batch_size):
            enc = tokenizer(flat[i: i + batch_size], return_tensors="pt", padding=True)
            gen = model.generate(**enc, do_sample=True, temperature=temperature, top_p=1.0, top_k=0,
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
            out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def _plain_worker(spec: dict, workdir: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    phases, t = {}, time.perf_counter()
    common = dict(use_cpu=True, bf16=spec["native_bf16"], gradient_checkpointing=False, save_strategy="no",
                  report_to=[], logging_steps=10)
    lora = LoraConfig(**spec["lora"], bias="none", task_type="CAUSAL_LM")
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    set_seed(spec["sft_args"]["seed"])
    sft = SFTTrainer(model=model, args=SFTConfig(output_dir=str(workdir / "sft"), **common, **spec["sft_args"]),
                     train_dataset=Dataset.from_list(spec["sft_rows"]), processing_class=tokenizer, peft_config=lora)
    sft.train()
    policy = sft.model.merge_and_unload()
    phases["sft_s"] = time.perf_counter() - t

    t = time.perf_counter()
    p, k = spec["pairs"], spec["pairs"]["num_samples"]
    samples = _generate(policy, tokenizer, spec["dpo_prompts"], k, p["temperature"], p["max_new_tokens"],
                        p["batch_size"])
    pairs = []
    for i, prompt in enumerate(spec["dpo_prompts"]):
        group = sorted(((vader.polarity_scores(c)["compound"], c) for c in samples[i * k:(i + 1) * k]),
                       key=lambda g: g[0])
        if group[-1][0] - group[0][0] > p["min_margin"]:
            pairs.append({"prompt": prompt, "chosen": group[-1][1], "rejected": group[0][1]})
    phases["pairs_s"] = time.perf_counter() - t

    t = time.perf_counter()
    set_seed(spec["dpo_args"]["seed"])
    dpo = DPOTrainer(model=policy, args=DPOConfig(output_dir=str(workdir / "dpo"), **common, **spec["dpo_args"]),
                     train_dataset=Dataset.from_list(pairs), processing_class=tokenizer, peft_config=lora)
    dpo.train()
    trained = dpo.model.merge_and_unload()
    phases["dpo_s"] = time.perf_counter() - t

    t = time.perf_counter()
    e = spec["eval"]
    start = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    gold = {}
    for name, m in (("before", start), ("after", trained)):
        torch.manual_seed(e["seed"])
        texts = _generate(m, tokenizer, spec["eval_prompts"], 1, e["temperature"], e["max_new_tokens"],
                          e["batch_size"])
        gold[name] = statistics.fmean(vader.polarity_scores(x)["compound"] for x in texts)
    phases["eval_s"] = time.perf_counter() - t
    return {"gold_before": gold["before"], "gold_after": gold["after"], "num_pairs": len(pairs),
            "eval_s": phases["eval_s"], "phases": phases}


def _worker(a) -> None:
    spec = json.loads(a.spec.read_text())
    res = _zoo_worker(spec, a.workdir) if a.worker == "zoo" else _plain_worker(spec, a.workdir)
    a.out.write_text(json.dumps(res))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", type=Path, default=RESULT)
    a = parse_args(ap, argv, SIDES, _worker)
    if a is None:
        return
    drive(a.model, a.repeats, a.threads, a.out, start_load_log("demo", a.require_quiet))


if __name__ == "__main__":
    main()
