"""PPO (the zoo's own trainer; TRL 1.x has none): online RL from a reward function or a trained reward model.

The reward is, in order: `reward.functions` if configured, else the reward model of an earlier `rm` stage,
else the task's gold signal (zoo.algos.online.reward_to_optimise). The value model is a scalar-head sequence
classifier initialised from that reward model when there is one (InstructGPT), else from the policy's
starting weights; under LoRA it gets its own adapter. The reference policy is the policy with its adapter
disabled (or a frozen copy).
"""

from __future__ import annotations

from omegaconf import OmegaConf

from zoo import rewards
from zoo.algos.base import Context, fit, guarded
from zoo.algos.online import reward_reports, reward_to_optimise
from zoo.data import check_data_config, load_task, prompt_rows, sft_rows
from zoo.errors import DataError
from zoo.levers import lever
from zoo.models import load_reference, load_reward_model, wrap_peft
from zoo.named_yaml import load_named_yaml
from zoo.rl.ppo_config import PPOConfig
from zoo.rl.ppo_trainer import PPOTrainer

CONFIG_CLASS = PPOConfig
PRODUCES = "policy"
EXTRA_KEYS: tuple[str, ...] = ()


def check_rows(rows: list[dict], cfg, path: str) -> None:
    """PPO-ptx (`args.ptx_coef` > 0) trains its supervised term on prompt/completion rows: the stage's own, or
    the training rows of the data config `args.ptx_data` names."""
    algo = cfg.algo if path == "algo" else cfg.stages[path.split(".", 1)[1]]
    if not (algo.args.get("ptx_coef") or 0) > 0:
        return
    if algo.args.get("ptx_data"):
        _ptx_data_config(algo.args.ptx_data, f"{path}.args.ptx_data")
    elif rows and not {"completion", "chosen"} & set(rows[0]):
        raise DataError(f"{path}.args.ptx_coef={algo.args.ptx_coef}: the ptx term needs prompt/completion rows, but "
                        f"the rows of data.name={cfg.data.name} have columns {sorted(rows[0])}")


def _ptx_data_config(name: str, path: str) -> dict:
    try:
        _, data = load_named_yaml("data", str(name), path)
    except FileNotFoundError as e:
        raise DataError(str(e)) from None
    check_data_config(OmegaConf.create(data))
    return data


def ptx_rows(ctx: Context) -> list[dict] | None:
    """The ptx term's supervised rows: none for plain PPO, else the `ptx_data` config's training rows (its own
    held-out prompts left out) or the stage's own rows."""
    if not ctx.args.ptx_coef > 0:
        return None
    if not ctx.args.ptx_data:
        return sft_rows(ctx.rows, f"data.name={ctx.cfg.data.name}")
    path = f"{ctx.config_path}.args.ptx_data={ctx.args.ptx_data}"
    data = _ptx_data_config(ctx.args.ptx_data, path)
    task = load_task(OmegaConf.create({"data": data, "eval": {"num_prompts": ctx.cfg.eval.num_prompts}}))
    return sft_rows(task.train, path)


def train(ctx: Context):
    policy = wrap_peft(ctx.policy)
    value_path = ctx.args.value_model_path or ctx.artifacts.get("reward_model") or ctx.policy.path
    value = wrap_peft(load_reward_model(ctx.cfg, str(value_path)))
    ref = None if ctx.policy.peft_config is not None else load_reference(ctx.cfg, ctx.policy.path)
    reward = rewards.WeightedSum(reward_to_optimise(ctx))
    trainer = guarded(PPOTrainer)(
        model=policy, value_model=value, args=ctx.args, processing_class=ctx.policy.tokenizer,
        prompts=prompt_rows(ctx.rows), reward_fn=reward, ref_model=ref,
        completion_only_logits=lever(ctx.cfg.trainer, "completion_only_logits"),
        ptx_rows=ptx_rows(ctx),
    )
    return trainer.model, {**fit(trainer, ctx), **reward_reports([reward])}
