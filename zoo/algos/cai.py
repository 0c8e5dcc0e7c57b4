"""SL-CAI (Bai et al. 2022): critique -> revise the policy's own answers under a constitution, then SFT on the
revisions. The generated dataset is saved with provenance in the stage dir (cai_rows.jsonl), with SFT rows
(cai_sft.jsonl) and preference rows (cai_pairs.jsonl: chosen = revision, rejected = original) reusable via
`data=trl data.path=...`, e.g. to run DPO on the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from zoo import resume
from zoo.algos.base import Context, fit, guarded
from zoo.checks import check_block, number
from zoo.rlaif.constitution import load_constitution
from zoo.rlaif.critique_revise import critique_and_revise, final_rows

CONFIG_CLASS = SFTConfig
PRODUCES = "policy"
EXTRA_KEYS = ("constitution", "rounds", "generation")


@dataclass
class CAIGenerationConfig:
    """The `generation:` block: how the policy's responses, critiques and revisions are sampled."""

    max_new_tokens: int = field(metadata={
        "help": "Tokens sampled per response, critique and revision.", "check": (lambda v: v >= 1, "an integer >= 1")})
    temperature: float = field(metadata={
        "help": "Sampling temperature of all three (0: greedy).", "check": (lambda v: v >= 0, "a temperature >= 0")})


def check_config(algo, path: str) -> None:
    from zoo.rlaif.constitution import check_constitution

    check_constitution(algo.constitution, f"{path}.constitution")
    number(algo, "rounds", path, lambda v: v >= 1, "an integer >= 1 (critique -> revision rounds)", integer=True)
    check_block(algo.generation, CAIGenerationConfig, f"{path}.generation")


def _dataset(ctx: Context) -> list[dict]:
    """The critiques and revisions (cai_rows.jsonl, with cai_sft.jsonl and cai_pairs.jsonl derived from them),
    made once and reused on resume."""
    g = ctx.algo.generation

    def make(share):
        return critique_and_revise(ctx.policy.model, ctx.policy.tokenizer, [r["prompt"] for r in share],
                                   load_constitution(ctx.algo.constitution), rounds=ctx.algo.rounds,
                                   max_new_tokens=g.max_new_tokens, temperature=g.temperature, seed=ctx.cfg.trainer.seed)

    def derived(rows):
        sft, prefs = final_rows(rows)
        return {ctx.stage_dir / "cai_sft.jsonl": sft, ctx.stage_dir / "cai_pairs.jsonl": prefs}

    return resume.made_once(ctx.stage_dir / "cai_rows.jsonl", make, ctx.rows, also=derived)


def train(ctx: Context):
    rows = _dataset(ctx)
    sft, prefs = final_rows(rows)
    trainer = guarded(SFTTrainer)(
        model=ctx.policy.model, args=ctx.args, train_dataset=Dataset.from_list(sft),
        processing_class=ctx.policy.tokenizer, peft_config=ctx.policy.peft_config,
    )
    metrics = fit(trainer, ctx)
    metrics.update({f"{ctx.stage}/num_revisions": len(rows), f"{ctx.stage}/num_pairs": len(prefs)})
    return trainer.model, metrics
