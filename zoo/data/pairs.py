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


def unpaired_rows(pairs: list[dict], unpaired_fraction: float, seed: int) -> list[dict]:
    """KTO's rows from preference pairs: each pair becomes a desirable row (its chosen completion, label true) and
    an undesirable one (rejected, false), TRL's convention. For a share `unpaired_fraction` of the pairs (drawn
    with `seed`), only one side is kept, desirable or undesirable at random: the labels a thumbs-up/down interface
    would collect, fewer of them and never both for one prompt. The rows come back shuffled, so TRL's KL estimate
    (each completion scored against its neighbour's prompt in a sequential batch) never pairs a completion with
    its own prompt's other side."""
    import random

    rng = random.Random(seed)
    drop_one = set(rng.sample(range(len(pairs)), round(len(pairs) * unpaired_fraction)))
    out = []
    for i, pair in enumerate(pairs):
        base = {k: v for k, v in pair.items() if k not in ("chosen", "rejected", "score_chosen", "score_rejected")}
        sides = [(pair["chosen"], True), (pair["rejected"], False)]
        if i in drop_one:
            sides = [rng.choice(sides)]
        out += [{**base, "completion": completion, "label": label} for completion, label in sides]
    rng.shuffle(out)
    return out
