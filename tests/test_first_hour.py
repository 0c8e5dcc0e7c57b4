"""A new user's first hour (issue: quiet runs, short errors, no silent fallbacks, small runs that are small).

The CLI tests run `python -m zoo.train` in a subprocess, as a user types it, in a scratch working directory, and
check what the user reads (stdout/stderr) and what is left on disk."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.algos.preference import consumable_pairs

ROOT = Path(__file__).resolve().parents[1]

# What a tiny run may still print that looks like a warning, each with its reason.
EXPECTED = (
    # The tiny test tokenizer's BPE merges tokens across the prompt/completion boundary (SmolLM2's does not).
    "The tokenized prompt is not a prefix of the tokenized prompt+completion",
)
WARNING = re.compile(r"warn|deprecat|\[INFO\]|Traceback", re.I)


def _zoo_train(tmp_path: Path, *overrides: str, cache: Path | None = None, **env_set) -> subprocess.Popen:
    """`python -m zoo.train <overrides>` started in `tmp_path` as a user's shell would start it."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "HYDRA_FULL_ERROR", "PYTHONWARNINGS")}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **env_set)
    cmd = [sys.executable, "-m", "zoo.train", *overrides, f"paths.cache_dir={cache or tmp_path / 'cache'}"]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def zoo_train(tmp_path: Path, *overrides: str, cache: Path | None = None):
    return _finished(_zoo_train(tmp_path, *overrides, cache=cache))


def _tiny(tiny_dir) -> list[str]:
    return ["model=tiny", f"model.name_or_path={tiny_dir}", "trainer.max_steps=2", "trainer.bf16=false",
            "eval.num_prompts=4", "eval.max_new_tokens=8", "data.max_rows=48", "eval.sycophancy.items=0",
            "eval.capability.arithmetic=0", "eval.capability.choice=2", "eval.diversity.prompts=2"]


def test_a_tiny_pipeline_prints_no_unexpected_warning(tmp_path, tiny_dir):
    """SFT then DPO, logged to W&B offline (the demo's logger), under Python's default warning filters."""
    out = tmp_path / "run"
    # The random tiny model's completions mostly score 0 on the sentiment gold; with the demo's 2 samples per prompt
    # its 16 prompts gave a single untied pair, and which one depended on every random draw before it. 8 samples
    # leave several pairs whatever the draws.
    done = zoo_train(tmp_path, "experiment=demo", *_tiny(tiny_dir), "algo.pairs.num_samples=8",
                     f"paths.output_dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    noise = [line for line in (done.stdout + done.stderr).splitlines()
             if WARNING.search(line) and not any(e in line for e in EXPECTED)]
    assert not noise, "\n".join(noise[:10])
    assert (out / "metrics.json").exists() and (out / ".hydra").is_dir()  # Hydra's run dir is the zoo's
    assert not (tmp_path / "outputs").exists()


MISTAKES = [  # (overrides, what the error must name)
    (["algo.args.betta=0.2"], ["algo.args.betta", "beta"]),
    (["model=tiny", "model.name_or_path=/no/such/model"], ["model.name_or_path", "/no/such/model"]),
    (["model.name_or_path=./no_such_dir"], ["model.name_or_path", "no such local directory"]),
    (["model=tiny", "algo=kto", "data=trl", "data.path={rows}", "eval.num_prompts=4"],
     ["algo=kto", "`label`", "{prompt, completion, label}"]),
]


def test_a_mistake_is_a_few_lines_and_leaves_nothing(tmp_path):
    """Each mistake in a `python -m zoo.train` of its own, all started at once (each spends its seconds importing),
    and the first again with HYDRA_FULL_ERROR=1, which keeps the traceback."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"p{i}", "completion": "c"}) + "\n" for i in range(40)))
    started = []
    for i, (overrides, names) in enumerate(MISTAKES):
        where = tmp_path / str(i)
        where.mkdir()
        started.append((where, overrides, names, _zoo_train(
            where, *[o.format(rows=rows) for o in overrides], "logger=none", f"paths.output_dir={where / 'run'}")))
    full = _zoo_train(tmp_path, "algo.args.betta=0.2", "logger=none", f"paths.output_dir={tmp_path / 'run'}",
                      HYDRA_FULL_ERROR="1")
    for where, overrides, names, proc in started:
        done = _finished(proc)
        assert done.returncode == 2, (overrides, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert 1 <= len(lines) <= 5 and "Traceback" not in done.stderr, (overrides, done.stderr)
        assert all(n in done.stderr for n in names), (overrides, done.stderr)
        assert not (where / "run").exists() and not (where / "outputs").exists(), overrides
        assert not (where / "cache" / "tiny-llama-v2").exists(), overrides  # nothing was built
    done = _finished(full)
    assert done.returncode != 0 and "Traceback" in done.stderr and "ConfigError" in done.stderr


def test_resume_over_nothing_says_so(tmp_path, tiny_dir, compose, capsys):
    from zoo.train import run

    out = tmp_path / "fresh"
    run(compose("algo=sft", "data=sentiment", "resume=true", output_dir=out))
    assert f"no earlier run in {out}" in capsys.readouterr().out


def test_pairs_are_sampled_only_for_the_steps_that_use_them(compose, tmp_path, capsys, dense_reward):
    from types import SimpleNamespace

    args = SimpleNamespace(max_steps=2, per_device_train_batch_size=8, gradient_accumulation_steps=2)
    assert consumable_pairs(args, 480) == 32
    assert consumable_pairs(SimpleNamespace(**{**vars(args), "max_steps": -1}), 480) == 480
    assert consumable_pairs(SimpleNamespace(**{**vars(args), "max_steps": 100}), 480) == 480

    from zoo.files import read_jsonl
    from zoo.train import run

    # Pairs ranked by a dense toy gold: the tiny model's random samples nearly always tie under VADER.
    run(compose("algo=dpo", "data=sentiment", "data.gold=fraction_of_e", "trainer.max_steps=1",
                "trainer.per_device_train_batch_size=4", "data.max_rows=40"))
    assert "sampling pairs for 4 of " in capsys.readouterr().out
    pairs = read_jsonl(tmp_path / "run" / "stages" / "dpo" / "pairs.jsonl")
    assert 1 <= len(pairs) <= 4
