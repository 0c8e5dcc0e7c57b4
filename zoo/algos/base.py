"""What every algorithm module shares: its context, TRL trainers guarded by the NaN check (zoo.resume) and
resumable fitting.

An algorithm module exposes:
  CONFIG_CLASS  the TRL (or zoo) config dataclass that `algo.args.*` fills
  PRODUCES      "policy" (the next stage starts from it) or "reward_model" (later stages score with it)
  EXTRA_KEYS    zoo-level keys its YAML may carry besides `name` and `args`
  train(ctx) -> (trained model, metrics dict)
  check_args(args, path)  optional: cross-field rules on the built config, raising zoo.errors.ConfigError
  check_config(algo, path)  optional: the zoo-level blocks (EXTRA_KEYS) of its YAML, before anything loads
Modules that are not algorithms (shared by several) live beside them: online.py, preference.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from transformers import TrainerCallback

from zoo import costs, resume
from zoo.files import read_complete_jsonl, write_jsonl
from zoo.levers import completion_only_logits, lever
from zoo.logprob_head import cpu_logprob_head
from zoo.sampling_levers import fast_generate, model_autocast
from zoo.sparse_dropout import sparse_dropouts


@dataclass
class Context:
    cfg: DictConfig  # the whole run config
    stage: str  # stage name (the algorithm's name for the final stage)
    config_path: str  # where its config sits, for error messages: "algo" or "stages.<name>"
    algo: DictConfig  # this stage's algorithm config
    args: Any  # the TRL config built from trainer.* + algo.args.*
    policy: Any  # zoo.models.PolicyBundle the stage starts from
    rows: list[dict]  # this stage's disjoint share of the training rows
    gold_fn: Any  # the task's gold reward function, or None
    stage_dir: Path
    resume: bool
    artifacts: dict = field(default_factory=dict)  # earlier stages' outputs, e.g. {"reward_model": path}
    # The run's reward as (name, weight, fn), built once by the entry point (zoo.rewards.for_run) and shared with
    # the harness's proxy column; empty when neither reward.functions nor a reward model is configured.
    rewards: list = field(default_factory=list)
    # zoo.eval.curve.Curve when eval.every_steps / eval.at_steps ask for the harness along training, else None
    curve: Any = None
    # Optimizer steps the stage's earlier trainers took (online-DPO rounds, each a trainer whose steps restart at 0),
    # so eval.every_steps / eval.at_steps count the stage's steps, not a round's.
    steps_before: int = 0


def guarded(trainer_cls):
    """`trainer_cls` that stops on a NaN/inf loss before the optimizer step, so no bad checkpoint is written."""

    class Guarded(trainer_cls):
        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            resume.stop_on_nonfinite(loss, self.state.global_step + 1, self.args.output_dir)
            return loss

    Guarded.__name__ = Guarded.__qualname__ = f"Zoo{trainer_cls.__name__}"
    return Guarded


class _WholeRun(TrainerCallback):
    """Make a resumed run report what an uninterrupted one does.

    transformers' `train_loss` averages only the steps run in this process, and TRL's token counter restarts at
    zero; the log history, though, is restored from the checkpoint. So: log at every checkpoint and at the final
    step (the history then covers every step, interrupted or not), and on resume restore TRL's counter from the
    last logged value.
    """

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        logged = [h["num_tokens"] for h in state.log_history if "num_tokens" in h]
        if state.global_step > 0 and logged and hasattr(self.trainer, "_total_train_tokens"):
            self.trainer._total_train_tokens = int(logged[-1])

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps or control.should_save:
            control.should_log = True


class _CostAtCheckpoints(TrainerCallback):
    """The stage's cost so far (zoo.costs) saved into each checkpoint, so a stage resumed from it restarts the count
    from there: work redone after the checkpoint (rollouts, scoring) is counted once, as in an uninterrupted run."""

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            costs.save_into(checkpoint)


class _History(TrainerCallback):
    """`stages/<name>/history.jsonl`: every log entry (loss, rewards/margins, KL, lr, ...) with its global step,
    appended as it is logged, so a killed run keeps what it logged. Entries carry their `segment` (the trainer's
    output dir name: one per trainer, e.g. each online-DPO round). A (re)started trainer first drops its own
    segment's entries logged after the step it starts from (a resumed process logs those steps again): no
    duplicates, and other segments are kept."""

    def __init__(self, path: Path, segment: str):
        self.path, self.segment = path, segment

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:  # under zoo.launch the main process writes the run dir
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mine = lambda e: e.get("segment", "checkpoints") == self.segment  # noqa: E731
        write_jsonl(self.path, [e for e in read_complete_jsonl(self.path)
                                if not mine(e) or e.get("step", 0) <= state.global_step])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        entry = {"segment": self.segment, "step": state.global_step, "epoch": state.epoch, **(logs or {})}
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, default=float) + "\n")


class _CurvePoints(TrainerCallback):
    """The harness on the live policy at the steps `eval.every_steps` / `eval.at_steps` name (zoo.eval.curve)."""

    def __init__(self, trainer, ctx: Context):
        self.trainer, self.ctx = trainer, ctx

    def on_train_begin(self, args, state, control, **kwargs):
        self.ctx.curve.begin_stage(self.ctx.stage, state.global_step, _segment(self.trainer))

    def on_step_end(self, args, state, control, **kwargs):
        if self.ctx.curve.due(self.ctx.steps_before + state.global_step):
            point = self.ctx.curve.measure(self.trainer.model, self.ctx.stage, state.global_step,
                                           _segment(self.trainer))
            _log_to_wandb({f"curve/{k}": v for k, v in point.items() if isinstance(v, (int, float))},
                          state.global_step)


def _segment(trainer) -> str:
    """Which trainer of the stage logged an entry: its output dir's name ("checkpoints", or "round_<r>" for an
    online-DPO round, whose steps restart at 0)."""
    return Path(trainer.args.output_dir).name


def _log_to_wandb(values: dict, step: int) -> None:
    """Curve points beside the trainer's own W&B charts, against the same global-step axis."""
    import sys

    wandb = sys.modules.get("wandb")  # imported only when the run logs to W&B
    if wandb is not None and wandb.run is not None:
        wandb.log({**values, "train/global_step": step})


def history_train_loss(log_history: list[dict]) -> float | None:
    """Mean training loss over every optimizer step, from the logged interval means (each `loss` entry averages
    the steps since the previous one)."""
    total, last_step = 0.0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry and entry["step"] > last_step:
            total += float(entry["loss"]) * (entry["step"] - last_step)
            last_step = entry["step"]
    return total / last_step if last_step else None


def _mixed_precision(args):
    """The autocast dtype a transformers Trainer runs its forward passes under (bf16 / fp16), else None."""
    if getattr(args, "bf16", False):
        return torch.bfloat16
    if getattr(args, "fp16", False):
        return torch.float16
    return None


def training_precision(ctx: Context, model=None):
    """A context to sample training data in (preference pairs, pairs for a judge to label): the stage's mixed
    precision, bf16 autocast where trainer.bf16 is on, as PPO's rollouts and TRL's GRPO sample (trainer.zoo.
    training_precision_sampling). The same distribution up to the rounding of the logits; the harness keeps
    sampling in the model's own precision, so evaluations compare across machines."""
    dtype = _mixed_precision(ctx.args) if lever(ctx.cfg.trainer, "training_precision_sampling") else None
    return model_autocast(model if model is not None else ctx.policy.model, dtype)


def fit(trainer, ctx: Context) -> dict:
    """Train, continuing from the stage's last checkpoint under resume=true. Returns the stage's training
    metrics, prefixed with the stage name; the same whether or not the run was interrupted and resumed
    (except wall-clock timings, which cover the process that finished the stage)."""
    last = resume.checkpoint_to_resume(trainer.args.output_dir, ctx.resume)
    whole_run = getattr(trainer, "reports_whole_run", False)  # the zoo's own trainers keep their totals
    if not whole_run:  # the zoo's own trainers keep their totals and cost in their checkpoints themselves
        trainer.add_callback(_WholeRun(trainer))
        trainer.add_callback(_CostAtCheckpoints())
    trainer.add_callback(_History(ctx.stage_dir / "history.jsonl", _segment(trainer)))
    if last:
        costs.restore_from(last)
    if ctx.curve is not None:
        trainer.add_callback(_CurvePoints(trainer, ctx))
    models = (trainer.model, getattr(trainer, "ref_model", None), getattr(trainer, "value_model", None))
    with completion_only_logits(lever(ctx.cfg.trainer, "completion_only_logits")), \
            cpu_logprob_head(lever(ctx.cfg.trainer, "cpu_logprob_head")), \
            sparse_dropouts(*models, enabled=lever(ctx.cfg.trainer, "sparse_dropout")), \
            fast_generate(trainer.model, autocast_dtype=_mixed_precision(trainer.args)):
        result = trainer.train(resume_from_checkpoint=last)
    metrics = dict(result.metrics)
    costs.steps(_segment(trainer), trainer.state.global_step)  # this trainer's whole count, resumed or not
    if not whole_run:
        history = trainer.state.log_history
        loss = history_train_loss(history)
        if loss is not None and math.isfinite(loss):
            metrics["train_loss"] = loss
        tokens = [h["num_tokens"] for h in history if "num_tokens" in h]
        if tokens:
            metrics["num_tokens"] = tokens[-1]
    return {f"{ctx.stage}/{k}": v for k, v in metrics.items()}


def columns(rows: list[dict], keep: tuple[str, ...]) -> list[dict]:
    return [{k: r[k] for k in keep} for r in rows]
