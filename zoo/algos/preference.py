"""What the offline preference algorithms share (not an algorithm itself): the stage's pairs, ranked by the
task's gold signal or labelled by a judge, and DPO or a Bradley-Terry reward model trained on a list of pairs.

dpo, rm, rlaif, rlaif_rm and online_dpo are each a few lines over these.
"""

from __future__ import annotations


from datasets import Dataset
from trl import DPOTrainer, RewardTrainer

from zoo import dist, resume, seeds
from zoo.algos.base import Context, columns, fit, guarded, training_precision
from zoo.checks import check_block, number, require

PAIR_COLUMNS = ("prompt", "chosen", "rejected")


def check_gold_pairs(algo, path: str) -> None:
    """The `pairs:` block of pairs sampled from the policy and ranked by the task's gold signal."""
    from zoo.data.pairs_config import GoldPairsConfig

    check_block(algo.pairs, GoldPairsConfig, f"{path}.pairs")


def check_pair_rows(rows: list[dict], cfg, path: str, *, unpaired: bool = False) -> None:
    """Rows a pairwise stage can train on, checked before anything loads: {prompt, chosen, rejected} pairs, or
    prompts whose sampled completions the task's gold signal ranks (`pairs:`); `unpaired` (KTO) also takes
    {prompt, completion, label} rows."""
    from zoo.data import has_preferences
    from zoo.errors import DataError

    if not rows or has_preferences(rows):
        return
    have = set(rows[0])
    if unpaired and {"prompt", "completion", "label"} <= have:
        return
    if "prompt" in have and cfg.data.get("gold"):
        return
    shapes = ["{prompt, chosen, rejected} pairs", "{prompt} rows of a task with a gold signal (data.gold) to rank "
              "sampled pairs"]
    if unpaired:
        shapes.insert(0, "{prompt, completion, label} rows")
    missing = ("label" if unpaired and {"prompt", "completion"} <= have else
               "chosen/rejected" if "prompt" in have else "prompt")
    source = f" (data.path={cfg.data.path})" if cfg.data.get("path") else ""
    raise DataError(f"{path}={_algo_name(cfg, path)}: the rows of data.name={cfg.data.name}{source} have columns "
                    f"{sorted(have)}, no `{missing}` and no data.gold; expected " + ", or ".join(shapes))


# The module contract (zoo.algos.base) of an algorithm that trains a policy on preference pairs, given by the data or
# sampled from the policy and ranked by the task's gold signal (`pairs:`): PRODUCES, EXTRA_KEYS, check_rows,
# check_config, in that order.
POLICY_ON_PAIRS = ("policy", ("pairs",), check_pair_rows, check_gold_pairs)


def _algo_name(cfg, path: str) -> str:
    return (cfg.algo if path == "algo" else cfg.stages[path.split(".", 1)[1]]).name


def check_judge_pairs(algo, path: str) -> None:
    """The `pairs:` block of two policy samples per prompt labelled by a judge."""
    from zoo.data.pairs_config import JudgePairsConfig

    check_block(algo.pairs, JudgePairsConfig, f"{path}.pairs")


def check_eval_fraction(algo, path: str) -> None:
    number(algo, "eval_fraction", path, lambda v: 0 <= v < 1, "a share of the pairs in [0, 1) to hold out")


def check_reward_model_config(algo, path: str) -> None:
    """A reward model's blocks (rm, rm_ranked): its gold-ranked `pairs:` and the share it holds out."""
    check_gold_pairs(algo, path)
    check_eval_fraction(algo, path)


def check_dpo_args(args, path: str) -> None:
    """Cross-field rules DPOTrainer only enforces after the model has loaded."""
    require(not ("exo_pair" in args.loss_type and args.label_smoothing <= 0),
            f"{path}.label_smoothing={args.label_smoothing}: loss_type exo_pair needs label_smoothing > 0 (the EXO "
            f"paper uses 1e-3)")


def consumable_pairs(args, available: int) -> int:
    """How many prompts' pairs the stage can train on: all of them for epoch-based training, at most max_steps x
    the global batch under trainer.max_steps (each prompt gives at most one pair; a 2-step run needs 16, not 480)."""
    if args.max_steps is None or args.max_steps <= 0:
        return available
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * dist.world()
    return min(available, args.max_steps * batch)


def _cached(ctx: Context, name: str, make, empty: str) -> list[dict]:
    """The stage's pairs, made once and reused on resume (zoo.resume.made_once), from the prompts its steps consume.
    `empty`: the error when no pair came out."""
    cache = ctx.stage_dir / name
    prompts = ctx.rows[:consumable_pairs(ctx.args, len(ctx.rows))]
    if dist.is_main() and len(prompts) < len(ctx.rows) and not cache.exists():
        print(f"[zoo] {ctx.stage}: sampling pairs for {len(prompts)} of {len(ctx.rows)} prompts: trainer.max_steps="
              f"{ctx.args.max_steps} at a global batch of {len(prompts) // ctx.args.max_steps} uses no more")
    pairs = resume.made_once(cache, make, prompts, note=f"{ctx.stage}: preference pairs from {len(prompts)} prompts")
    if not pairs:
        raise ValueError(f"{ctx.stage}: {empty}")
    return pairs


def preference_pairs(ctx: Context) -> list[dict]:
    """The stage's preference pairs: given by the dataset, or sampled from the policy and ranked by gold."""
    from zoo.data import has_preferences
    from zoo.data.pairs import preference_rows

    if has_preferences(ctx.rows):
        return ctx.rows
    if ctx.gold_fn is None:
        raise ValueError(f"data.name={ctx.cfg.data.name}: the rows have no chosen/rejected pairs and the task has no "
                         f"gold signal (data.gold) to rank policy samples with")

    def make(rows):
        with training_precision(ctx):
            return preference_rows(ctx.policy.model, ctx.policy.tokenizer, rows, ctx.gold_fn, ctx.algo.pairs,
                                   seed=seeds.seed_for("pairs.samples", ctx.cfg.trainer.seed))

    return _cached(ctx, "pairs.jsonl", make, f"sampling produced no preference pairs (all samples tied); raise "
                                             f"{ctx.stage}.pairs.num_samples or temperature")


def labelled_pairs(ctx: Context) -> list[dict]:
    """The stage's AI-labelled pairs: two samples per prompt from the starting policy, labelled by its judge."""
    from zoo.data.pairs import preference_rows
    from zoo.rlaif.judging import build_judge

    def make(rows):
        judge = build_judge(ctx.algo.judge, cfg=ctx.cfg, start_path=ctx.policy.path, tokenizer=ctx.policy.tokenizer,
                            artifacts=ctx.artifacts, frozen_start=ctx.policy.model,  # not trained yet: the start
                            path=f"{ctx.config_path}.judge")
        return preference_rows(ctx.policy.model, ctx.policy.tokenizer, rows, judge, ctx.algo.pairs,
                               seed=seeds.seed_for("pairs.samples", ctx.cfg.trainer.seed), progress=f"{ctx.stage}: sampling",
                               precision=training_precision(ctx))

    return _cached(ctx, "ai_pairs.jsonl", make, "the judge labelled no pair with confidence above pairs.min_margin")


def train_dpo(ctx: Context, pairs: list[dict], *, model=None, ref_model=None, args=None):
    """DPO on `pairs`. Defaults: the stage's policy, wrapped by TRL in the stage's adapter, whose disabled
    adapter is the reference. Online DPO passes an already-wrapped model, its frozen reference and per-round args.
    Returns (trained model, stage metrics)."""
    args = args or ctx.args
    trainer = guarded(DPOTrainer)(
        model=model if model is not None else ctx.policy.model, ref_model=ref_model, args=args,
        train_dataset=Dataset.from_list(columns(pairs, PAIR_COLUMNS)), processing_class=ctx.policy.tokenizer,
        peft_config=ctx.policy.peft_config if model is None else None,
    )
    precomputed = _reference_precompute(trainer, ctx, args)
    metrics = fit(trainer, ctx)
    metrics[f"{ctx.stage}/num_pairs"] = len(pairs)
    metrics.update({f"{ctx.stage}/reference_precompute/{k}": v for k, v in precomputed.items()})
    return trainer.model, metrics


def planned_epochs(args, num_pairs: int) -> float:
    """How many passes over `num_pairs` the trainer will make: max_steps of the global batch, else its epochs."""
    if args.max_steps and args.max_steps > 0:
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
        return args.max_steps * batch / max(num_pairs, 1)
    return float(args.num_train_epochs)


def _reference_precompute(trainer, ctx: Context, args) -> dict:
    """trainer.zoo.reference_precompute: the zoo's pass over the pairs (zoo.algos.reference) in batches of
    `algo.args.precompute_ref_batch_size`, else the harness's scoring batch (`eval.batch_size`); `auto`: when the
    trainer makes at least one pass over them (conf/trainer/cpu.yaml has the measured break-even). Nothing when it
    is off, or when TRL's own `precompute_ref_log_probs` already ran while the trainer was built."""
    from zoo.algos.reference import precompute
    from zoo.levers import lever

    epochs = planned_epochs(args, len(trainer.train_dataset))
    if not lever(ctx.cfg.trainer, "reference_precompute", auto=epochs >= 1.0) or args.precompute_ref_log_probs:
        return {}
    done = precompute(trainer, args.precompute_ref_batch_size or int(ctx.cfg.eval.batch_size))
    trainer.zoo_reference_precompute = done  # read by bench.levers beside the step times
    return {**done, "planned_epochs": epochs}


def split_pairs(pairs: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    shuffled = pairs[:]
    seeds.rng("pairs.held_out", seed).shuffle(shuffled)
    n_eval = max(1, round(len(shuffled) * fraction)) if len(shuffled) > 1 else 0
    return shuffled[n_eval:], shuffled[:n_eval]


def train_reward_model(ctx: Context, pairs: list[dict]):
    """Bradley-Terry reward model on the policy's backbone, a share (`eval_fraction`) of `pairs` held out: its
    pairwise accuracy says whether the model learned the preference at all."""
    from zoo.models import load_reward_model

    train_pairs, eval_pairs = split_pairs(pairs, ctx.algo.eval_fraction, ctx.cfg.data.seed)
    bundle = load_reward_model(ctx.cfg, ctx.policy.path)
    trainer = guarded(RewardTrainer)(
        model=bundle.model,
        args=ctx.args,
        train_dataset=Dataset.from_list(columns(train_pairs, PAIR_COLUMNS)),
        eval_dataset=Dataset.from_list(columns(eval_pairs, PAIR_COLUMNS)) if eval_pairs else None,
        processing_class=bundle.tokenizer,
        peft_config=bundle.peft_config,
    )
    metrics = fit(trainer, ctx)
    held_out = trainer.evaluate() if eval_pairs else {}  # too few pairs to hold any out: reported as null
    metrics[f"{ctx.stage}/accuracy"] = held_out.get("eval_accuracy")
    metrics[f"{ctx.stage}/eval_loss"] = held_out.get("eval_loss")
    metrics[f"{ctx.stage}/num_pairs"] = len(pairs)
    return trainer.model, metrics
