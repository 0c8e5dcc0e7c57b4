"""The reference policy's log-probs of every pair, computed once before DPO-family training
(`trainer.zoo.reference_precompute`; not an algorithm). Each step then skips its reference forward.

TRL's own `precompute_ref_log_probs` pass runs while the trainer is built, outside the zoo's `fit`, so its LM head
projects every position, prompt included (the 49k-vocabulary head the step only applies at the completion tokens:
zoo.levers.completion_only_logits), in batches of the training batch, and hashes the model's weights for a cache
file. This pass makes the same per-batch call the step's reference forward makes (TRL's `compute_ref_log_probs`:
adapter disabled or the frozen reference, the Trainer's autocast, no gradients), with the head applied only at the
completion positions (their hidden states gathered first, the log-softmax over those rows alone), in larger batches
of pairs sorted by length, so a batch is padded to a near length. The values are the step's own up to the rounding
of differently padded batches (tests/test_levers.py). Whether the pass costs less per pair than the reference
forward inside a step is for `python -m bench.levers --variants zoo_defaults,reference_precompute` to say.
"""

from __future__ import annotations

import time

import torch

from zoo.levers import active, completion_only_logits
from zoo.logprob_head import cpu_logprob_head


def precompute(trainer, batch_size: int) -> dict:
    """Add `ref_chosen_logps` / `ref_rejected_logps` to `trainer.train_dataset` (a DPOTrainer's tokenised pairs) and
    make its steps read them. Returns {"seconds", "pairs", "batch_size"} of the pass."""
    t0 = time.perf_counter()
    dataset = trainer.train_dataset
    rows = [dataset[i] for i in range(len(dataset))]
    chosen, rejected = [0.0] * len(rows), [0.0] * len(rows)
    model = trainer.ref_model or trainer.model
    was_training = trainer.model.training
    trainer.model.eval()
    try:
        # torch.no_grad, not inference_mode: a tensor a module caches under inference_mode cannot later be saved
        # for the training steps' backward.
        with torch.no_grad(), completion_only_logits(True), cpu_logprob_head(active("cpu_logprob_head")):
            for batch in batches(rows, batch_size):
                inputs = trainer.data_collator([rows[i] for i in batch])
                inputs = {k: v.to(trainer.accelerator.device) for k, v in inputs.items()}
                c, r = trainer.compute_ref_log_probs(model, inputs)  # the Trainer's autocast, adapter disabled
                for i, vc, vr in zip(batch, c.float().tolist(), r.float().tolist()):
                    chosen[i], rejected[i] = vc, vr
    finally:
        trainer.model.train(was_training)
    trainer.train_dataset = dataset.add_column("ref_chosen_logps", chosen).add_column("ref_rejected_logps", rejected)
    trainer.precompute_ref_logps = True  # TRL's _compute_loss then reads the columns instead of a reference forward
    return {"seconds": time.perf_counter() - t0, "pairs": len(rows), "batch_size": batch_size}


def batches(rows: list[dict], batch_size: int) -> list[list[int]]:
    """Row indices cut into batches after sorting by the longer side of each pair (stable): each batch is padded
    to a near length. The values do not depend on which batch a pair lands in (up to rounding)."""
    def length(i):
        row = rows[i]
        return len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"]))

    order = sorted(range(len(rows)), key=length)
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
