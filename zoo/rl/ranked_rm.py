"""K-wise reward modelling (InstructGPT, Ouyang et al. 2022): labellers rank K completions of a prompt, which gives
K(K-1)/2 comparisons; all of one prompt's comparisons are trained together as one batch element, the paper's fix
for over-fitting when correlated pairs of one prompt are shuffled into separate steps as if independent.

    loss = mean over prompts of  -1 / |pairs(x)| * sum over (i above j) in pairs(x) of log sigmoid(r(x, y_i) - r(x, y_j))

Rows are ranked rows (zoo.data.pairs.ranked_row): {prompt, completions: [...], ranking: [rank per completion, 0 =
best, equal ranks tie]}; a tie is no comparison. The reward model is the zoo's scalar-head sequence classifier, fed
the text a RewardModelReward scores (zoo.rewards.reward_model.scored_text), so PPO later reads it the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Trainer

from zoo.rewards.reward_model import scored_text


def kwise_loss(scores: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """scores, ranks: [B, K] (rank -1: no completion in that slot). Each prompt's mean over its ranked pairs of
    -log sigmoid(r_above - r_below), averaged over the prompts that have at least one pair."""
    present = ranks >= 0
    above = (ranks[:, :, None] < ranks[:, None, :]) & present[:, :, None] & present[:, None, :]
    margins = scores[:, :, None] - scores[:, None, :]  # [B, K, K]: r_i - r_j
    counts = above.sum((1, 2))
    per_prompt = -(F.logsigmoid(margins) * above).sum((1, 2)) / counts.clamp(min=1)
    return per_prompt[counts > 0].mean()


def pair_accuracy(scores: torch.Tensor, ranks: torch.Tensor) -> tuple[float, int]:
    """(share of ranked pairs the scores order correctly, ties in score counting half; number of pairs)."""
    present = ranks >= 0
    above = (ranks[:, :, None] < ranks[:, None, :]) & present[:, :, None] & present[:, None, :]
    margins = (scores[:, :, None] - scores[:, None, :])[above]
    n = int(above.sum())
    return (float(((margins > 0).float() + 0.5 * (margins == 0).float()).sum()) / n if n else float("nan")), n


class RankedCollator:
    """Ranked rows -> the B x K texts of a batch, tokenized right-padded, and their ranks padded with -1."""

    def __init__(self, tokenizer, max_length: int | None = None):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, rows: list[dict]) -> dict:
        k = max(len(r["completions"]) for r in rows)
        texts, ranks = [], torch.full((len(rows), k), -1, dtype=torch.long)
        for b, row in enumerate(rows):
            for i in range(k):
                have = i < len(row["completions"])
                texts.append(scored_text(self.tokenizer, row["prompt"], row["completions"][i] if have else ""))
                if have:
                    ranks[b, i] = int(row["ranking"][i])
        enc = self.tokenizer(texts, add_special_tokens=False, padding=True, padding_side="right", truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "ranks": ranks}


class RankedRewardTrainer(Trainer):
    """transformers.Trainer with the K-wise loss; every batch element is one prompt with all its completions."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ranks = inputs.pop("ranks")
        scores = model(**inputs).logits[:, 0].float().view(ranks.shape)
        loss = kwise_loss(scores, ranks.to(scores.device))
        return (loss, {"scores": scores}) if return_outputs else loss

    @torch.no_grad()
    def held_out_accuracy(self, rows: list[dict], batch_size: int = 8) -> tuple[float, int]:
        """Pairwise accuracy of the model on ranked `rows` (every ranked pair of every prompt)."""
        model, collate = self.model.eval(), self.data_collator
        k = max(len(r["completions"]) for r in rows)  # every batch padded to it, so the batches concatenate
        all_scores, all_ranks = [], []
        for start in range(0, len(rows), batch_size):
            batch = collate(rows[start: start + batch_size])
            ranks = batch.pop("ranks")
            batch = {k: v.to(self.args.device) for k, v in batch.items()}
            scores = model(**batch).logits[:, 0].float().view(ranks.shape).cpu()
            all_scores.append(F.pad(scores, (0, k - scores.shape[1]), value=0.0))
            all_ranks.append(F.pad(ranks, (0, k - ranks.shape[1]), value=-1))
        return pair_accuracy(torch.cat(all_scores), torch.cat(all_ranks))
