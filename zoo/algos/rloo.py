"""RLOO with TRL's RLOOTrainer: each sample's baseline is the mean reward of the other samples of its prompt."""

from __future__ import annotations

from trl import RLOOConfig, RLOOTrainer

from zoo.algos.base import Context, fit, guarded
from zoo.algos.online import prompt_dataset, reward_functions, reward_reports, with_weights

CONFIG_CLASS = RLOOConfig
DATA = "prompts"
PRODUCES = "policy"
EXTRA_KEYS: tuple[str, ...] = ()


def check_args(args, path: str) -> None:
    from zoo.config import ConfigError

    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
    if args.num_generations and (args.num_generations < 2 or batch % args.num_generations):
        raise ConfigError(f"{path}.num_generations={args.num_generations}: RLOO needs >= 2 samples per prompt, "
                          f"dividing the generation batch ({batch})")


def train(ctx: Context):
    fns, weights = reward_functions(ctx)
    trainer = guarded(RLOOTrainer)(
        model=ctx.policy.model,
        reward_funcs=fns,
        args=with_weights(ctx.args, weights),
        train_dataset=prompt_dataset(ctx),
        processing_class=ctx.policy.tokenizer,
        peft_config=ctx.policy.peft_config,
    )
    return trainer.model, {**fit(trainer, ctx), **reward_reports(fns)}
