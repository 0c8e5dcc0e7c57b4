"""Preference pairs made by sampling from the policy and ranking with a reward function.

This is how the DPO paper built its sentiment pairs: several samples per prompt, the best and the worst by
the gold scorer become chosen and rejected. Prompts whose samples tie are dropped (they carry no preference).
The same routine labels pairs with any reward-protocol function, a judge included.
"""

from __future__ import annotations

from zoo.data import task_columns
from zoo.generation import sample


def sample_pairs(model, tokenizer, rows: list[dict], reward_fn, pairs_cfg, seed: int) -> list[dict]:
    k = pairs_cfg.num_samples
    if k < 2:
        raise ValueError(f"pairs.num_samples={k}: need at least 2 samples per prompt to make a pair")
    prompts = [r["prompt"] for r in rows]
    samples = sample(model, tokenizer, prompts, max_new_tokens=pairs_cfg.max_new_tokens,
                     temperature=pairs_cfg.temperature, top_p=pairs_cfg.get("top_p", 1.0), num_return_sequences=k,
                     batch_size=pairs_cfg.get("batch_size", 16), seed=seed, progress="sampling preference pairs")
    scores = reward_fn(samples.prompts, samples.completions, **task_columns(rows, repeat=k))
    out = []
    for i, row in enumerate(rows):
        group = [(s, c) for s, c in zip(scores[i * k:(i + 1) * k], samples.completions[i * k:(i + 1) * k])
                 if s is not None]
        if len(group) < 2:
            continue
        best, worst = max(group, key=lambda g: g[0]), min(group, key=lambda g: g[0])
        if best[0] - worst[0] <= pairs_cfg.min_margin:
            continue
        out.append({**row, "chosen": best[1], "rejected": worst[1],
                    "score_chosen": best[0], "score_rejected": worst[0]})
    return out
