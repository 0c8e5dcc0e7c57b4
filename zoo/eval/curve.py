"""The harness along training (`eval.every_steps`, `eval.at_steps`): reward-vs-KL frontiers and over-optimisation
curves are drawn from these points.

At the chosen global steps of each policy stage, the live policy is evaluated on the held-out prompts exactly as
the harness evaluates the final one (same prompts, decoding and sampling seed; KL and win rate against the run's
baseline) and one line goes to `<run>/curve.jsonl`: {"stage", "step", gold_reward, proxy_reward, kl, win_rate,
length, eos_rate, distinct_1, distinct_2, accuracy}. Measuring must not change training: the random number
generators are saved before and restored after, and sampling never touches the weights (tests compare the trained
weights with the curve on and off). A resumed stage drops the points it logged after its last checkpoint, which
the resumed process measures again.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from zoo import dist
from zoo.eval.harness import evaluate
from zoo.files import read_complete_jsonl, write_jsonl
from zoo.rewards import usage


def steps_due(eval_cfg, step: int) -> bool:
    every = eval_cfg.get("every_steps") or 0
    return bool(every and step % every == 0) or step in (eval_cfg.get("at_steps") or [])


class Curve:
    """One run's curve: the held-out rows, the harness settings and scorers, and the baseline to compare with."""

    def __init__(self, path: Path, rows: list[dict], eval_cfg, tokenizer, *, gold_fn=None, proxy_fn=None,
                 independent_fn=None, baseline_loader=None, baseline_results: dict | None = None,
                 baseline_key=None):
        """`baseline_results`: a dict shared by the run's curves, so the baseline's own harness pass is made once
        per (`baseline_key`: baseline weights and scorers) rather than once per stage."""
        self.path, self.rows, self.eval_cfg, self.tokenizer = Path(path), rows, eval_cfg, tokenizer
        self.scorers = dict(gold_fn=gold_fn, proxy_fn=proxy_fn, independent_fn=independent_fn)
        self._load_baseline = baseline_loader
        self._results, self._key = (baseline_results if baseline_results is not None else {}), baseline_key
        self._baseline = None

    def due(self, step: int) -> bool:
        return steps_due(self.eval_cfg, step)

    def begin_stage(self, stage: str, step: int, segment: str = "checkpoints") -> None:
        """Keep only what a (re)started trainer has not yet measured again: its own points up to `step` (a stage's
        other trainers, e.g. earlier online-DPO rounds, are kept)."""
        if not dist.is_main():  # under zoo.launch every rank measures the same point; the main one writes
            return
        kept = [p for p in read_complete_jsonl(self.path)
                if p["stage"] != stage or p.get("segment", "checkpoints") != segment or p["step"] <= step]
        write_jsonl(self.path, kept)

    def _reference(self):
        if self._baseline is None and self._load_baseline is not None:
            self._baseline = self._load_baseline()
        if self._baseline is not None and self._key not in self._results:
            self._results[self._key] = evaluate(self._baseline, self.tokenizer, self.rows, self.eval_cfg,
                                                **self.scorers, prefix="before")
        return self._baseline, self._results.get(self._key)

    def measure(self, model, stage: str, step: int, segment: str = "checkpoints") -> dict:
        # Scoring a curve point is measuring, not training on the scorers (zoo.rewards.usage).
        with torch.no_grad(), usage.measuring():  # sampling draws from a stream of its own (zoo.seeds)
            reference, reference_result = self._reference()
            result = evaluate(model, self.tokenizer, self.rows, self.eval_cfg, **self.scorers,
                              reference=reference, reference_result=reference_result, prefix="curve")
        point = {"stage": stage, "segment": segment, "step": step,
                 **{k.split("/", 1)[1]: v for k, v in result["metrics"].items()}}
        if dist.is_main():
            with open(self.path, "a") as f:
                f.write(json.dumps(point) + "\n")
        return point

    def close(self) -> None:
        self._baseline = None
