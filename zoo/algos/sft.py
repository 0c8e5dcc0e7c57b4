"""Supervised fine-tuning with TRL's SFTTrainer (loss on completion tokens only)."""

from __future__ import annotations

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from zoo.algos.base import Context, fit, guarded
from zoo.data import sft_rows
from zoo.data.io import DataError

CONFIG_CLASS = SFTConfig
PRODUCES = "policy"
EXTRA_KEYS: tuple[str, ...] = ()


def check_rows(rows: list[dict], cfg, path: str) -> None:
    """Every row of the stage's share has a completion (or a chosen side), before any model loads: a pipeline whose
    first stage is SFT must not be handed prompt-only rows of a later stage (data.stage_rows sizes the shares)."""
    missing = [i for i, r in enumerate(rows) if r.get("completion", r.get("chosen")) is None]
    if not missing:
        return
    hint = ""
    if cfg.data.name == "safety":
        from zoo.data.tasks.safety_demos import DEMOS

        n, stage = sum(map(len, DEMOS.values())), cfg.algo.name if path == "algo" else path.split(".", 1)[1]
        hint = (f"; the safety task's completions are its {n} demonstrations, the first training rows with "
                f"data.demos=true: set data.demos=true and data.stage_rows.{stage} to at most {n}")
    raise DataError(f"{path}=sft: {len(missing)} of this stage's {len(rows)} rows have no `completion` or `chosen` "
                    f"(the first is row {missing[0]}){hint}")


def train(ctx: Context):
    dataset = Dataset.from_list(sft_rows(ctx.rows, f"data.name={ctx.cfg.data.name}"))
    trainer = guarded(SFTTrainer)(
        model=ctx.policy.model,
        args=ctx.args,
        train_dataset=dataset,
        processing_class=ctx.policy.tokenizer,
        peft_config=ctx.policy.peft_config,
    )
    metrics = fit(trainer, ctx)
    return trainer.model, metrics
