"""PPOTrainer: PPO for language models on `transformers.Trainer`, in the style of TRL's online trainers.

Per iteration (one training step):
  1. rollout: sample completions for a batch of prompts from the policy (no grad), truncated at EOS;
  2. score: reward function on the completions (missing-EOS penalty, optional clipping), the policy's and
     the reference's per-token log-probs, the value model's per-token values;
  3. per-token reward = -kl_coef * KL + score on the last real token; GAE advantages and returns;
  4. `num_ppo_epochs` x `num_mini_batches` updates of the clipped surrogate + clipped value loss
     (- entropy bonus), one optimizer step per mini-batch;
  5. update the adaptive KL coefficient, log, checkpoint.
Each iteration draws its rollouts and mini-batch order from streams named by (seed, step) (zoo.seeds), so a run
resumed from a checkpoint replays exactly.

Under `zoo.launch` (several processes, data-parallel) each process rolls out its own share of a global batch of
per_device_train_batch_size x processes prompts; reward whitening, advantage whitening and every logged statistic
use the whole batch (sums gathered across processes), gradients are averaged before clipping, and the main process
writes checkpoints. On one process all of this reduces to the single-process arithmetic.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import Trainer, get_scheduler
from transformers.trainer_utils import TrainOutput

from zoo import costs, dist, resume, seeds
from zoo.data import task_columns
from zoo.files import atomic_dir, write_json
from zoo.generation import logits_at, sample
from zoo.rl import math as rlm

CHECKPOINT_FILE = "ppo_state.pt"


@dataclass
class Batch:
    """Query + response token ids packed for one forward pass, with response-token gather indices."""

    input_ids: torch.Tensor  # [B, L] right-padded
    attention_mask: torch.Tensor  # [B, L]
    index: torch.Tensor  # [B, T] position whose output predicts response token t
    targets: torch.Tensor  # [B, T] response token ids
    mask: torch.Tensor  # [B, T] 1 on real response tokens

    def select(self, rows: torch.Tensor) -> "Batch":
        return Batch(*(t[rows] for t in (self.input_ids, self.attention_mask, self.index, self.targets, self.mask)))


def pack(prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int) -> Batch:
    seqs = [p + r for p, r in zip(prompt_ids, response_ids)]
    B, L, T = len(seqs), max(len(s) for s in seqs), max(1, max(len(r) for r in response_ids))
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    attention = torch.zeros((B, L), dtype=torch.long)
    index = torch.zeros((B, T), dtype=torch.long)
    targets = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        input_ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        attention[i, : len(p) + len(r)] = 1
        n = len(r)
        index[i, :n] = torch.arange(len(p) - 1, len(p) - 1 + n)
        targets[i, :n] = torch.tensor(r, dtype=torch.long) if n else targets[i, :n]
        mask[i, :n] = 1
    return Batch(input_ids, attention, index, targets, mask)


def _gather_positions(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, L, ...] at positions index [B, T] -> [B, T, ...]."""
    if x.dim() == 2:
        return x.gather(1, index)
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def policy_forward(model, batch: Batch, temperature: float, with_entropy: bool = False,
                   completion_only: bool = True):
    """Log-probs (and entropy) of the response tokens. `completion_only` (trainer.zoo.completion_only_logits):
    the LM head at the response positions alone, not at every position (zoo.generation.logits_at)."""
    logits = logits_at(model, batch.input_ids, batch.attention_mask, batch.index, completion_only)
    logits = logits.float() / temperature
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
    entropy = rlm.entropy_from_logits(logits) if with_entropy else None
    return logprobs, entropy


def _backbone_and_head(value_model):
    """The transformer body and scalar head of a sequence classifier, PEFT-wrapped or not."""
    base = value_model.get_base_model() if hasattr(value_model, "get_base_model") else value_model
    return getattr(base, base.base_model_prefix), base.score


def value_forward(value_model, batch: Batch) -> torch.Tensor:
    """Per-token values: the classifier's head on every position (it normally pools the last one)."""
    body, head = _backbone_and_head(value_model)
    hidden = body(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    return _gather_positions(head(hidden).squeeze(-1).float(), batch.index)


class PPOTrainer(Trainer):
    """PPO with a separate value model. `model` is the policy (PEFT-wrapped under LoRA)."""

    reports_whole_run = True  # checkpoints carry every step's loss, so a resumed run's train_loss is the whole run's

    def __init__(self, model, value_model, args, processing_class, prompts: list[dict], reward_fn,
                 ref_model=None, callbacks=None, completion_only_logits: bool = True,
                 ptx_rows: list[dict] | None = None):
        super().__init__(model=model, args=args, processing_class=processing_class, callbacks=callbacks)
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            raise RuntimeError("algo=ppo (the zoo's own trainer) averages gradients across processes itself and does "
                               "not shard weights: launch it with accelerate=multi_gpu_ddp (or single_gpu)")
        self.value_model = value_model.to(self.args.device)
        self.ref_model = ref_model.to(self.args.device) if ref_model is not None else None
        self.prompts, self.reward_fn = prompts, reward_fn
        self.completion_only_logits = completion_only_logits
        if args.ptx_coef > 0 and not ptx_rows:
            raise ValueError("ptx_coef > 0 needs supervised rows (prompt, completion) for the ptx term")
        self.ptx = _tokenized(ptx_rows, processing_class) if args.ptx_coef > 0 else None
        if args.adaptive_kl:
            self.kl_ctl = rlm.AdaptiveKLController(args.kl_coef, args.target_kl, args.kl_horizon)
        else:
            self.kl_ctl = rlm.FixedKLController(args.kl_coef)

    # -- set-up ------------------------------------------------------------------------------------
    def _trainable(self, module):
        return [p for p in module.parameters() if p.requires_grad]

    def _make_optimizer(self, max_steps: int):
        a = self.args
        groups = [{"params": self._trainable(self.model), "lr": a.learning_rate},
                  {"params": self._trainable(self.value_model), "lr": a.value_learning_rate or a.learning_rate}]
        self.optimizer = torch.optim.AdamW(groups, betas=(a.adam_beta1, a.adam_beta2), eps=a.adam_epsilon,
                                           weight_decay=a.weight_decay)
        updates = max_steps * a.num_ppo_epochs * a.num_mini_batches
        self.lr_scheduler = get_scheduler(a.lr_scheduler_type, self.optimizer,
                                          num_warmup_steps=a.get_warmup_steps(updates), num_training_steps=updates)

    def _prompt_batch(self, step: int) -> list[dict]:
        """The prompts of iteration `step`: a seeded permutation per pass over the data, cycled."""
        n, b = len(self.prompts), self.args.per_device_train_batch_size
        first = step * b * dist.world() + dist.rank() * b  # this process's share of the global batch
        out = []
        for k in range(first, first + b):
            epoch, pos = divmod(k, n)
            order = torch.randperm(n, generator=seeds.generator("ppo.prompt_order", self.args.seed, epoch=epoch)).tolist()
            out.append(self.prompts[order[pos]])
        return out

    def _steps_per_epoch(self) -> int:
        return -(-len(self.prompts) // (self.args.per_device_train_batch_size * dist.world()))

    def _reference(self):
        if self.ref_model is not None:
            return nullcontext(self.ref_model)
        return _Disabled(self.model)

    def _autocast(self):
        return torch.autocast(self.args.device.type, dtype=torch.bfloat16, enabled=bool(self.args.bf16))

    # -- one iteration -----------------------------------------------------------------------------
    @torch.no_grad()
    def _rollout(self, rows: list[dict], step: int) -> dict:
        a, tok = self.args, self.processing_class
        prompts = [r["prompt"] for r in rows]
        with self._autocast():  # sampled at the precision the rollout is then scored at (bf16 where set)
            samples = sample(self.model, tok, prompts, max_new_tokens=a.max_completion_length,
                             temperature=a.temperature, top_p=a.top_p, top_k=a.top_k,
                             batch_size=len(prompts), seed=seeds.seed_for("ppo.rollout", a.seed, step=step, rank=dist.rank()))
        raw = self.reward_fn(samples.prompts, samples.completions, **task_columns(rows))
        scores = torch.tensor([0.0 if s is None else float(s) for s in raw])
        finished = torch.tensor(samples.finished)
        if a.missing_eos_penalty is not None:
            scores = scores - a.missing_eos_penalty * (~finished).float()
        if a.reward_clip is not None:
            scores = scores.clamp(-a.reward_clip, a.reward_clip)
        batch = pack(samples.prompt_ids, samples.completion_ids, tok.pad_token_id)
        batch = Batch(*(t.to(a.device) for t in vars(batch).values()))
        with self._autocast():
            logprobs, entropy = policy_forward(self.model, batch, a.temperature, with_entropy=True,
                                               completion_only=self.completion_only_logits)
            with self._reference() as ref:
                ref_logprobs, _ = policy_forward(ref, batch, a.temperature, completion_only=self.completion_only_logits)
            values = value_forward(self.value_model, batch)
        mask = batch.mask.float()
        kl = rlm.kl_per_token(logprobs, ref_logprobs, a.kl_estimator) * mask
        rewards = rlm.token_rewards(scores.to(a.device), kl, batch.mask, self.kl_ctl.value)
        if a.whiten_rewards:
            rewards = dist.masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = rlm.gae(rewards, values, mask, a.gamma, a.lam)
        if a.whiten_advantages:
            advantages = dist.masked_whiten(advantages, mask)
        seq_kl = kl.sum(1)
        rows, tokens = torch.tensor(float(len(prompts)), device=a.device), mask.sum()
        stats = dist.means({
            "objective/kl": (seq_kl.sum(), rows),
            "objective/entropy": ((entropy * mask).sum(), tokens),
            "objective/scores": (scores.sum().to(a.device), rows),
            "val/returns": ((returns * mask).sum(), tokens),
            "val/advantages": ((advantages * mask).sum(), tokens),
            "val/values": ((values * mask).sum(), tokens),
            "completions/mean_length": (tokens, rows),
            "completions/eos_rate": (finished.float().sum().to(a.device), rows),
        })
        stats["objective/non_score_reward"] = -self.kl_ctl.value * stats["objective/kl"]
        stats["objective/kl_coef"] = self.kl_ctl.value
        return {"batch": batch, "logprobs": logprobs, "values": values, "advantages": advantages, "returns": returns,
                "stats": stats}

    def _optimise(self, roll: dict, step: int) -> dict:
        a = self.args
        n = roll["batch"].input_ids.shape[0]
        size = n // a.num_mini_batches
        train_policy = step >= a.critic_warmup_steps
        totals: dict[str, list[float]] = {}
        order_rng = seeds.generator("ppo.minibatches", a.seed, step=step)  # per iteration: a resumed run replays it
        for _ in range(a.num_ppo_epochs):
            order = torch.randperm(n, generator=order_rng)
            for start in range(0, n, size):
                rows = order[start: start + size]
                mb = roll["batch"].select(rows)
                mask = mb.mask.float()
                with self._autocast():
                    logprobs, entropy = policy_forward(self.model, mb, a.temperature, with_entropy=a.entropy_coef > 0,
                                                       completion_only=self.completion_only_logits)
                    values = value_forward(self.value_model, mb)
                pg_loss, pg_stats = rlm.clipped_policy_loss(logprobs, roll["logprobs"][rows],
                                                            roll["advantages"][rows], mask, a.cliprange)
                vf_loss, vf_clipfrac = rlm.clipped_value_loss(values, roll["values"][rows], roll["returns"][rows],
                                                              mask, a.cliprange_value)
                loss = a.vf_coef * vf_loss
                if train_policy:
                    loss = loss + pg_loss
                    if entropy is not None:
                        loss = loss - a.entropy_coef * rlm.masked_mean(entropy, mask)
                    if self.ptx is not None:
                        ptx = self._ptx_loss(step, len(totals.get("loss/total", [])))
                        loss = loss + a.ptx_coef * ptx
                        totals.setdefault("loss/ptx", []).append(float(ptx.detach()))
                resume.stop_on_nonfinite(loss, step + 1, a.output_dir)  # the guard TRL's trainers go through
                loss.backward()
                params = self._trainable(self.model) + self._trainable(self.value_model)
                dist.average_gradients(params)
                if a.max_grad_norm and a.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, a.max_grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                for key, value in {"loss/policy": pg_loss, "loss/value": vf_loss, "loss/total": loss,
                                   "policy/clipfrac": pg_stats["clipfrac"], "policy/approx_kl": pg_stats["approx_kl"],
                                   "policy/ratio_mean": pg_stats["ratio_mean"],
                                   "policy/ratio_std": pg_stats["ratio_std"], "value/clipfrac": vf_clipfrac}.items():
                    totals.setdefault(key, []).append(float(value.detach()))
        # Each process's mean over its mini-batches, averaged over processes (equal counts: same batch sizes).
        out = dist.means({k: (torch.tensor(sum(v), device=a.device), torch.tensor(float(len(v)), device=a.device))
                            for k, v in totals.items()})
        out["loss"] = out["loss/total"]  # the key Trainer's callbacks and progress bars look for
        out["lr/policy"], out["lr/value"] = (g["lr"] for g in self.optimizer.param_groups)
        return out

    def _ptx_loss(self, step: int, update: int) -> torch.Tensor:
        """The supervised term of update `update` of iteration `step`: the NLL of `ptx_batch_size` rows drawn from
        the stage's supervised rows by a stream of their own (a resumed run draws the same ones)."""
        a, (prompt_ids, completion_ids) = self.args, self.ptx
        n = a.ptx_batch_size or a.per_device_train_batch_size // a.num_mini_batches
        draw = seeds.generator("ppo.ptx", a.seed, step=step, update=update, rank=dist.rank())
        rows = torch.randint(len(prompt_ids), (n,), generator=draw).tolist()
        batch = pack([prompt_ids[i] for i in rows], [completion_ids[i] for i in rows],
                     self.processing_class.pad_token_id)
        batch = Batch(*(t.to(a.device) for t in vars(batch).values()))
        with self._autocast():
            logprobs, _ = policy_forward(self.model, batch, 1.0, completion_only=self.completion_only_logits)
        return rlm.ptx_loss(logprobs, batch.mask.float())

    # -- checkpoints -------------------------------------------------------------------------------
    def _trainable_state(self):
        return {
            "policy": {n: p.detach().cpu() for n, p in self.model.named_parameters() if p.requires_grad},
            "value": {n: p.detach().cpu() for n, p in self.value_model.named_parameters() if p.requires_grad},
        }

    def _save(self, step: int):
        if dist.is_main():  # the processes hold the same weights and optimizer state
            self._write_checkpoint(step)
        dist.barrier()

    def _write_checkpoint(self, step: int):
        with atomic_dir(Path(self.args.output_dir) / f"checkpoint-{step}") as tmp:
            torch.save({**self._trainable_state(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.lr_scheduler.state_dict(), "kl_coef": self.kl_ctl.value, "step": step,
                        "losses": self._losses}, tmp / CHECKPOINT_FILE)
            write_json(tmp / "trainer_state.json", {"global_step": step, "log_history": self.state.log_history})
            costs.save_into(tmp)  # the stage's cost at this step, restored with it (zoo.costs)
        self._rotate()

    def _rotate(self):
        limit = self.args.save_total_limit
        if not limit:
            return
        ckpts = sorted((d for d in os.listdir(self.args.output_dir) if d.startswith("checkpoint-")),
                       key=lambda d: int(d.split("-")[1]))
        for old in ckpts[:-limit]:
            shutil.rmtree(os.path.join(self.args.output_dir, old), ignore_errors=True)

    def _load(self, path: str) -> int:
        state = torch.load(os.path.join(path, CHECKPOINT_FILE), map_location="cpu", weights_only=False)
        for module, key in ((self.model, "policy"), (self.value_model, "value")):
            params = dict(module.named_parameters())
            with torch.no_grad():
                for name, value in state[key].items():
                    params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["scheduler"])
        self.kl_ctl.value = state["kl_coef"]
        self._losses = list(state["losses"])
        with open(os.path.join(path, "trainer_state.json")) as f:
            self.state.log_history = json.load(f)["log_history"]
        return state["step"]

    # -- the loop ----------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, **kwargs):
        a = self.args
        if a.max_steps <= 0:
            per_epoch = self._steps_per_epoch()
            max_steps = int(per_epoch * a.num_train_epochs)
        else:
            max_steps = a.max_steps
        self._make_optimizer(max_steps)
        # Equal starting weights everywhere (a fresh adapter or value head is drawn from each process's RNG).
        dist.broadcast_(self._trainable(self.model) + self._trainable(self.value_model))
        # Dropout off for the whole run (eval mode; gradients still flow): with it on, rollout log-probs would not
        # match the first update's, so the ratio would not start at 1 and clipping would fire on noise.
        self.model.eval()
        self.value_model.eval()
        self._losses = []  # every iteration's total loss, restored on resume
        start = self._load(resume_from_checkpoint) if resume_from_checkpoint else 0
        self.state.max_steps, self.state.global_step = max_steps, start
        self.control = self.callback_handler.on_train_begin(a, self.state, self.control)
        for step in tqdm(range(start, max_steps), desc="ppo", initial=start, total=max_steps,
                         disable=a.disable_tqdm or not dist.is_main()):
            roll = self._rollout(self._prompt_batch(step), step)
            stats = {**roll["stats"], **self._optimise(roll, step)}
            self.kl_ctl.update(stats["objective/kl"], roll["batch"].input_ids.shape[0] * dist.world())
            self._losses.append(stats["loss/total"])
            self.state.global_step = step + 1
            self.state.epoch = (step + 1) / max(1, self._steps_per_epoch())
            self.control = self.callback_handler.on_step_end(a, self.state, self.control)
            if (step + 1) % max(1, int(a.logging_steps)) == 0 or step + 1 == max_steps:
                self.log(stats)
            if a.save_strategy != "no" and (step + 1) % a.save_steps == 0 and step + 1 < max_steps:
                self._save(step + 1)
        self.control = self.callback_handler.on_train_end(a, self.state, self.control)
        losses = self._losses
        metrics = {"train_loss": sum(losses) / len(losses) if losses else float("nan"),
                   "final_kl": self.state.log_history[-1].get("objective/kl") if self.state.log_history else None,
                   "final_scores": self.state.log_history[-1].get("objective/scores")
                   if self.state.log_history else None}
        return TrainOutput(self.state.global_step, metrics["train_loss"], metrics)


def _tokenized(rows: list[dict], tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt and completion token ids of supervised rows, the completion ended with EOS (as SFT trains it)."""
    from zoo.generation import as_text, render_prompt

    prompts = [tokenizer(render_prompt(tokenizer, r["prompt"]), add_special_tokens=False)["input_ids"] for r in rows]
    completions = [tokenizer(as_text(r["completion"]), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                   for r in rows]
    return prompts, completions


class _Disabled:
    """The PEFT policy with its adapter switched off: the reference policy at no extra memory."""

    def __init__(self, model):
        self.model, self._ctx = model, model.disable_adapter()

    def __enter__(self):
        self._ctx.__enter__()
        return self.model

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
