"""SL-CAI's data step: sample a response, then for N rounds critique it under a sampled principle and revise it,
all with the same model (or a helper model). Every row keeps its provenance."""

from __future__ import annotations

from zoo import seeds
from zoo.data.pairs import pair_row
from zoo.generation import as_text, completion_text, sample
from zoo.rlaif.constitution import Constitution, critique_messages, revision_messages


def critique_and_revise(model, tokenizer, prompts: list, constitution: Constitution, *, rounds: int,
                        max_new_tokens: int, temperature: float, seed: int, helper=None) -> list[dict]:
    """One row per prompt and round: {prompt, original, critique, revision, principle, round}.

    `helper` (model, tokenizer) writes the critiques and revisions when given; the policy always writes the
    original response.
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least one critique -> revision round")
    h_model, h_tok = helper or (model, tokenizer)
    kw = dict(max_new_tokens=max_new_tokens, temperature=temperature)
    originals = sample(model, tokenizer, prompts, seed=seeds.seed_for("cai.responses", seed), progress="cai: responses", **kw).completions
    rng = seeds.rng("cai.responses", seed)
    current, rows = originals, []
    for r in range(rounds):
        principles = [rng.choice(constitution.principles) for _ in prompts]
        crit_prompts = [critique_messages(constitution, p, c, pr) for p, c, pr in zip(prompts, current, principles)]
        critiques = sample(h_model, h_tok, crit_prompts, seed=seeds.seed_for("cai.critiques", seed, round=r), progress="cai: critiques",
                           **kw).texts
        rev_prompts = [revision_messages(constitution, p, c, pr, cr)
                       for p, c, pr, cr in zip(prompts, current, principles, critiques)]
        revisions = sample(h_model, h_tok, rev_prompts, seed=seeds.seed_for("cai.revisions", seed, round=r), progress="cai: revisions",
                           **kw).texts
        current = [completion_text(p, text) for p, text in zip(prompts, revisions)]
        rows += [{"prompt": p, "original": o, "critique": cr, "revision": rev, "principle": pr.name, "round": r + 1}
                 for p, o, cr, rev, pr in zip(prompts, originals, critiques, current, principles)]
    return rows


def final_rows(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """SFT rows (prompt -> last revision) and preference rows (chosen = last revision, rejected = original, in
    zoo.data.pairs' row shape, labeller `cai_revision`)."""
    last = {}
    for r in rows:
        last[str(r["prompt"])] = r  # rounds are in order, so the last one wins
    finals = list(last.values())
    sft = [{"prompt": r["prompt"], "completion": r["revision"]} for r in finals]
    prefs = [pair_row({"prompt": r["prompt"]}, r["revision"], r["original"], "cai_revision") for r in finals
             if as_text(r["revision"]).strip() and as_text(r["revision"]) != as_text(r["original"])]
    return sft, prefs
