"""KTO (Kahneman-Tversky optimisation) with TRL's KTOTrainer: learns from unpaired thumbs-up / thumbs-down
labels, no pairs needed.

Rows: unpaired `{prompt, completion, label}` rows from the data (e.g. data=trl data.path=labels.jsonl), or
preference pairs (from the data, or sampled and ranked by the gold signal exactly as for DPO) split into one
desirable and one undesirable row each. `unpaired_fraction` keeps only one side of that share of the pairs, so
"KTO on fewer, unpaired labels" can be compared against DPO on the same prompts. Under LoRA the reference is the
policy with its adapter disabled, as for DPO.
"""

from __future__ import annotations

from datasets import Dataset
from trl import KTOConfig, KTOTrainer

from zoo.algos.base import Context, columns, fit, guarded
from zoo.algos.preference import check_gold_pairs, check_pair_rows, preference_pairs
from zoo.checks import number, require

CONFIG_CLASS = KTOConfig
PRODUCES = "policy"
EXTRA_KEYS = ("pairs", "unpaired_fraction")
KTO_COLUMNS = ("prompt", "completion", "label")


def check_config(algo, path: str) -> None:
    check_gold_pairs(algo, path)
    number(algo, "unpaired_fraction", path, lambda v: 0 <= v <= 1,
           "a share of the pairs in [0, 1] that keep only one side (1: every prompt labelled once)")


def check_rows(rows: list[dict], cfg, path: str) -> None:
    check_pair_rows(rows, cfg, path, unpaired=True)


def check_args(args, path: str) -> None:
    """KTOTrainer's own rules for its KL estimate, which it checks only after the model has loaded."""
    if args.loss_type == "kto":
        require(args.train_sampling_strategy == "sequential",
                f"{path}.train_sampling_strategy={args.train_sampling_strategy!r}: loss_type kto pairs each "
                f"completion with its neighbour's prompt for the KL term, which needs 'sequential' (the zoo shuffles "
                f"the rows itself)")
        require(args.per_device_train_batch_size > 1,
                f"{path}.per_device_train_batch_size={args.per_device_train_batch_size}: loss_type kto estimates "
                f"its KL term from the other rows of a batch, so it needs a batch of at least 2 (set "
                f"trainer.per_device_train_batch_size)")


def kto_rows(ctx: Context) -> list[dict]:
    """The stage's unpaired rows: as given, or made from its preference pairs."""
    from zoo.data.pairs import unpaired_rows

    if ctx.rows and "label" in ctx.rows[0]:
        require(ctx.algo.unpaired_fraction == 0,
                f"{ctx.config_path}.unpaired_fraction={ctx.algo.unpaired_fraction}: the data is already unpaired "
                f"(rows with `label`); there are no pairs to unpair")
        return ctx.rows
    return unpaired_rows(preference_pairs(ctx), ctx.algo.unpaired_fraction, ctx.cfg.data.seed)


def train(ctx: Context):
    rows = kto_rows(ctx)
    desirable = sum(bool(r["label"]) for r in rows)
    require(0 < desirable < len(rows), f"{ctx.stage}: KTO needs both desirable and undesirable rows; got "
                                       f"{desirable} desirable of {len(rows)}")
    trainer = guarded(KTOTrainer)(
        model=ctx.policy.model, args=ctx.args, train_dataset=Dataset.from_list(columns(rows, KTO_COLUMNS)),
        processing_class=ctx.policy.tokenizer, peft_config=ctx.policy.peft_config,
    )
    metrics = fit(trainer, ctx)
    metrics.update({f"{ctx.stage}/num_rows": len(rows), f"{ctx.stage}/num_desirable": desirable,
                    f"{ctx.stage}/num_undesirable": len(rows) - desirable})
    return trainer.model, metrics
