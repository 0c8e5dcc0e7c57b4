"""Preference rows from a policy's samples and any scorer, in one place (the one home DESIGN.md names for it).

    preference_rows(model, tokenizer, rows, scorer, pairs_cfg, seed=...)

samples `pairs.num_samples` completions per prompt (2 when the block has no such key) and ranks them with
`scorer`, which is either
* a reward function of the shared protocol, `fn(prompts, completions, **columns) -> scores` (the task's gold,
  a trained reward model, RBR): the best and the worst sample become chosen and rejected, as the DPO paper built
  its sentiment pairs. Prompts whose samples tie, or differ by no more than `min_margin`, are dropped (they carry
  no preference); the row keeps both scores, `score_chosen` and `score_rejected`;
* or a judge, `judge(prompts, completions_a, completions_b, **columns) -> P(a is better)` (zoo.judges), on two
  samples per prompt: chosen is the one it prefers, pairs whose P is within `min_margin` of 0.5 are dropped, and
  the row keeps the soft label `p_chosen` and the judge's `position_consistency`.

The scorer is passed in (a judge is one kind of scorer; this module imports none). Every row has one shape
(`pair_row`): {prompt, chosen, rejected, <the prompt row's task columns>, <scores or soft label>, labeller}, where
`labeller` names the scorer that ranked it.
"""

from __future__ import annotations

from contextlib import nullcontext

from zoo import seeds
from zoo.data import NOT_TASK_COLUMNS, task_columns
from zoo.generation import sample


def scorer_name(scorer) -> str:
    """Who labelled a pair: a judge's `name`, a tracked reward function's registry name, else its __name__."""
    return getattr(scorer, "name", None) or getattr(scorer, "__name__", None) or type(scorer).__name__


def pair_row(row: dict, chosen, rejected, labeller: str, **label) -> dict:
    """The preference row of prompt row `row`: its prompt and task columns, the pair, the label, who gave it."""
    task = {k: v for k, v in row.items() if k not in NOT_TASK_COLUMNS}
    return {"prompt": row["prompt"], "chosen": chosen, "rejected": rejected, **task, **label, "labeller": labeller}


def preference_rows(model, tokenizer, rows: list[dict], scorer, pairs_cfg, *, seed: int,
                    progress: str = "sampling preference pairs", precision=None, ranked: bool = False) -> list[dict]:
    """Sample from `model` and rank with `scorer` (see the module's docstring). `pairs_cfg`: a `pairs:` block
    (max_new_tokens, temperature, min_margin; optional num_samples, top_p, batch_size); `precision`: a context the
    sampling (not the scoring) runs in, e.g. the stage's autocast. `ranked` (a reward function only): one ranked
    row per prompt with all its samples (`ranked_row`) instead of a best-vs-worst pair."""
    k = pairs_cfg.get("num_samples", 2)
    is_judge = hasattr(scorer, "judge")
    if k < 2 or (is_judge and k != 2):
        raise ValueError(f"pairs.num_samples={k}: need at least 2 samples per prompt to make a pair"
                         + (", and exactly 2 for a judge, which compares two" if is_judge else ""))
    with precision if precision is not None else nullcontext():
        samples = sample(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=pairs_cfg.max_new_tokens,
                         temperature=pairs_cfg.temperature, top_p=pairs_cfg.get("top_p", 1.0),
                         num_return_sequences=k, batch_size=pairs_cfg.get("batch_size", 16), seed=seed,
                         progress=progress)
    completions = samples.completions
    if is_judge:
        if ranked:
            raise ValueError("ranked rows need a reward function to score every sample; a judge compares two")
        return label_pairs(scorer, rows, completions[0::2], completions[1::2], pairs_cfg.min_margin)
    return rank_samples(scorer, rows, [completions[i * k:(i + 1) * k] for i in range(len(rows))],
                        pairs_cfg.min_margin, ranked=ranked)


def ranked_row(row: dict, completions: list, scores: list[float], labeller: str) -> dict:
    """The ranked row of prompt row `row` (InstructGPT's K-wise comparisons): {prompt, completions, ranking, scores,
    <task columns>, labeller}, `ranking[i]` the rank of completions[i] (0 = best; equal scores share a rank)."""
    levels = sorted(set(scores), reverse=True)
    task = {k: v for k, v in row.items() if k not in NOT_TASK_COLUMNS}
    return {"prompt": row["prompt"], "completions": list(completions), "ranking": [levels.index(s) for s in scores],
            "scores": list(scores), **task, "labeller": labeller}


def rank_samples(reward_fn, rows: list[dict], groups: list[list], min_margin: float, ranked: bool = False) -> list[dict]:
    """One row per prompt row from its `groups[i]` completions: chosen = the best by `reward_fn`, rejected = the
    worst (a None score, "does not apply", leaves the sample out); dropped when they differ by <= min_margin.
    `ranked`: the row ranks every scored completion instead (`ranked_row`)."""
    k = len(groups[0]) if groups else 0
    flat = [c for group in groups for c in group]
    scores = reward_fn([r["prompt"] for r in rows for _ in range(k)], flat, **task_columns(rows, repeat=k))
    labeller, out = scorer_name(reward_fn), []
    for i, row in enumerate(rows):
        scored = [(s, c) for s, c in zip(scores[i * k:(i + 1) * k], groups[i]) if s is not None]
        if len(scored) < 2:
            continue
        best, worst = max(scored, key=lambda g: g[0]), min(scored, key=lambda g: g[0])
        if best[0] - worst[0] <= min_margin:
            continue
        if ranked:
            out.append(ranked_row(row, [c for _, c in scored], [s for s, _ in scored], labeller))
        else:
            out.append(pair_row(row, best[1], worst[1], labeller, score_chosen=best[0], score_rejected=worst[0]))
    return out


def label_pairs(judge, rows: list[dict], firsts: list, seconds: list, min_margin: float) -> list[dict]:
    """One row per prompt row from two completions: chosen = the one `judge` prefers, `p_chosen` its P(chosen is
    better). Items whose P(a > b) is within `min_margin` of 0.5 are dropped (the judge cannot tell them apart)."""
    probs = judge.judge([r["prompt"] for r in rows], firsts, seconds, **task_columns(rows))
    consistency, labeller = getattr(judge, "position_consistency", None), scorer_name(judge)
    out = []
    for row, a, b, pa in zip(rows, firsts, seconds, probs):
        if abs(pa - 0.5) <= min_margin:
            continue
        chosen, rejected = (a, b) if pa > 0.5 else (b, a)
        out.append(pair_row(row, chosen, rejected, labeller, p_chosen=max(pa, 1 - pa),
                            position_consistency=consistency))
    return out


def unpaired_rows(pairs: list[dict], unpaired_fraction: float, seed: int) -> list[dict]:
    """KTO's rows from preference pairs: each pair becomes a desirable row (its chosen completion, label true) and
    an undesirable one (rejected, false), TRL's convention. For a share `unpaired_fraction` of the pairs (drawn
    with `seed`), only one side is kept: the labels a thumbs-up/down interface would collect, fewer of them and
    never both for one prompt. Half of those pairs keep their desirable side and half their undesirable one (which
    pairs at random; an odd one out either way), so a few pairs never leave KTO with one kind of label only. The rows
    come back shuffled, so TRL's KL estimate (each completion scored against its neighbour's prompt in a sequential
    batch) never pairs a completion with its own prompt's other side."""
    rng = seeds.rng("pairs.unpaired", seed)
    one_sided = rng.sample(range(len(pairs)), round(len(pairs) * unpaired_fraction))  # in random order
    half, odd = divmod(len(one_sided), 2)
    desirable = half + int(odd == 1 and rng.random() < 0.5)
    keep = {i: (0 if n < desirable else 1) for n, i in enumerate(one_sided)}  # 0: the chosen side, 1: the rejected
    out = []
    for i, pair in enumerate(pairs):
        base = {k: v for k, v in pair.items() if k not in NOT_TASK_COLUMNS or k == "prompt"}
        sides = [(pair["chosen"], True), (pair["rejected"], False)]
        if i in keep:
            sides = [sides[keep[i]]]
        out += [{**base, "completion": completion, "label": label} for completion, label in sides]
    rng.shuffle(out)
    return out
