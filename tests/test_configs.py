"""Every shipped config file composes and passes all of run()'s checks on the tiny model, stopping exactly where a
model would load; bad values stop earlier, with a ConfigError naming the key path.

A model load is replaced by a sentinel exception, so "validation passed" is proven by where run() stops, not by
calling the validators one by one (which would miss a check that run() skips or does after loading).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.config import ConfigError
from zoo.train import run

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
ALGOS = sorted(p.stem for p in (CONF / "algo").glob("*.yaml"))


class ModelLoadReached(Exception):
    """Raised instead of loading weights: reaching it means every pre-load check passed."""


@pytest.fixture
def model_loads(monkeypatch):
    """Turn every way of building a transformers model into ModelLoadReached; returns the attempted loads."""
    import transformers

    attempts = []

    def stopper(what):
        def stop(*args, **kwargs):
            attempts.append((what, str(args[0]) if args else None))
            raise ModelLoadReached(what, *args[:1])

        return stop

    for cls in ("AutoModelForCausalLM", "AutoModelForSequenceClassification"):
        for method in ("from_pretrained", "from_config"):
            monkeypatch.setattr(getattr(transformers, cls), method, stopper(f"{cls}.{method}"))
    # A concrete class (LlamaForCausalLM.from_pretrained) would bypass the Auto classes.
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained",
                        classmethod(lambda cls, *a, **k: stopper(f"{cls.__name__}.from_pretrained")(*a, **k)))
    return attempts


def _compose_file(compose, tiny_dir, group: str, name: str):
    # Command-line group choices win over an experiment's `override /model`, but say so explicitly, after it.
    cfg = compose(f"{group}={name}", "model=tiny", f"model.name_or_path={tiny_dir}")
    assert cfg.model.name == "tiny" and cfg.model.name_or_path == str(tiny_dir)
    return cfg


@pytest.mark.parametrize("group,name", [("experiment", n) for n in EXPERIMENTS] + [("algo", n) for n in ALGOS],
                         ids=lambda v: str(v))
def test_config_file_passes_every_check_before_load(compose, tiny_dir, model_loads, group, name):
    cfg = _compose_file(compose, tiny_dir, group, name)
    with pytest.raises(ModelLoadReached):
        run(cfg)
    # The first load is the policy, from the tiny model: nothing else was loaded (or attempted) before it.
    assert model_loads == [("AutoModelForCausalLM.from_pretrained", str(tiny_dir))]


def test_every_config_file_is_covered():
    # Guards the parametrisation itself: an empty glob (moved conf dir) would make the test above vacuous.
    assert {"demo", "instructgpt", "cai"} <= set(EXPERIMENTS) and {"sft", "dpo", "grpo", "ppo"} <= set(ALGOS)


BAD = [
    # (overrides, what the message must name: a key path, or for an unknown key its block and its name)
    (("algo=dpo", "algo.args.beta=-1"), "algo.args.beta"),
    (("algo=online_dpo", "algo.args.beta=0"), "algo.args.beta"),
    (("algo=sft", "algo.args.learning_rate=-1"), "algo.args.learning_rate"),
    (("algo=ppo", "algo.args.learning_rate=-1"), "algo.args.learning_rate"),
    (("algo=rm", "algo.args.learning_rate=-1"), "algo.args.learning_rate"),
    (("algo=dpo", "algo.args.not_a_field=1"), ("algo.args", "not_a_field")),
    (("algo=ppo", "algo.args.not_a_field=1"), ("algo.args", "not_a_field")),
    (("algo=rloo", "algo.args.not_a_field=1"), ("algo.args", "not_a_field")),
    (("algo=dpo", "algo.args.loss_type=nope"), "algo.args.loss_type"),
    (("algo=grpo", "algo.args.loss_type=nope"), "algo.args.loss_type"),
    (("algo=dapo", "algo.args.loss_type=nope"), "algo.args.loss_type"),
    (("algo=ppo", "algo.args.kl_estimator=k2"), "kl_estimator"),
    (("algo=grpo", "algo.args.num_generations=3"), "num_generations"),
    (("algo=sft", "algo.args.max_length=0"), "algo.args.max_length"),
    (("trainer.max_steps=0",), "trainer.max_steps"),
    (("trainer.per_device_train_batch_size=0",), "trainer.per_device_train_batch_size"),
    (("eval.num_prompts=0",), "eval.num_prompts"),
    (("eval.max_new_tokens=0",), "eval.max_new_tokens"),
    (("eval.temperature=-1",), "eval.temperature"),
    (("eval.baseline=sft",), "eval.baseline"),  # not a stage of a single-stage run
    (("data.max_rows=0",), "data.max_rows"),
    (("peft.method=bogus",), "peft.method"),
    (("logger.backend=tensorboard",), "logger.backend"),
    (("+reward.functions.nope=1.0",), "reward.functions.nope"),
    (("+algo.pairz=1",), ("algo", "pairz")),
    (("experiment=demo", "stages.sft.args.learning_rate=-1"), "stages.sft.args.learning_rate"),
    (("experiment=demo", "stages.sft.args.not_a_field=1"), ("stages.sft.args", "not_a_field")),
    (("experiment=instructgpt", "stages.rm.args.learning_rate=-1"), "stages.rm.args.learning_rate"),
    (("experiment=r1_arithmetic", "eval.baseline=nope"), "eval.baseline"),
    (("experiment=cai", "eval.also=[nope]"), "eval.also"),
    (("experiment=cai", "+stages.cai.judge.kind=nope"), ("stages.cai", "judge")),  # SL-CAI takes no judge block
    (("experiment=rlaif_rm", "stages.ai_rm.judge.kind=nope"), "stages.ai_rm.judge.kind"),
    (("algo=rlaif", "algo.judge.kind=nope"), "algo.judge.kind"),
    (("algo=rlaif", "algo.judge.kind=reward"), "algo.judge.reward"),  # kind=reward needs a reward name
    (("algo=rlaif", "algo.judge.kind=reward", "algo.judge.reward=nope"), "algo.judge.reward"),
    (("algo=rlaif", "algo.judge.principle=null"), "algo.judge.principle"),
    (("algo=online_dpo", "algo.judge.kind=nope"), "algo.judge.kind"),
    (("algo=rlaif", "+algo.judge.typo=1"), ("algo.judge", "typo")),
    # Accepted until the groups got their own checks (found by this test; now rejected before load).
    (("algo=dpo", "algo.pairs.num_samples=1"), "algo.pairs.num_samples"),
    (("algo=dpo", "+algo.pairs.typo=1"), ("algo.pairs", "typo")),
    (("algo=online_dpo", "algo.rounds=0"), "algo.rounds"),
    (("algo=rm", "algo.eval_fraction=1.5"), "algo.eval_fraction"),
    (("algo=cai", "algo.constitution=nope"), "algo.constitution"),
    (("algo=rlaif", "algo.judge.constitution=nope"), "algo.judge.constitution"),
    (("algo=rlaif", "algo.judge.model=/nonexistent/dir"), "algo.judge.model"),
    (("reward=rbr", "reward.functions.rbr.grader=nope"), "reward.functions.rbr.grader"),
    (("eval.batch_size=0",), "eval.batch_size"),
    (("eval.top_p=2",), "eval.top_p"),
    (("model.dtype=float64",), "model.dtype"),
    (("peft=lora", "peft.r=0"), "peft.r"),
    (("algo=grpo", "algo.args.temperature=-1"), "algo.args.temperature"),
    (("algo=ppo", "algo.args.num_ppo_epochs=0"), "algo.args.num_ppo_epochs"),
    (("data.seed=abc",), "data.seed"),
    (("algo=online_dpo", "algo.steps_per_round=0"), "algo.steps_per_round"),
    (("algo=dpo", "algo.pairs.temperature=-1"), "algo.pairs.temperature"),
    (("algo=rlaif", "algo.pairs.min_margin=0.7"), "algo.pairs.min_margin"),
    (("algo=cai", "algo.generation.max_new_tokens=0"), "algo.generation.max_new_tokens"),
    (("reward=rbr", "reward.functions.rbr.weight=abc"), "reward.functions.rbr.weight"),
    (("reward=rbr", "reward.functions.rbr.policy=nope"), "reward.functions.rbr.policy"),
    (("reward=rbr", "+reward.functions.rbr.gradr=llm"), ("reward.functions.rbr", "gradr")),
    (("peft=qlora", "peft.bnb_4bit_quant_type=nope"), "peft.bnb_4bit_quant_type"),
    (("algo=grpo", "algo.args.max_completion_length=0"), "algo.args.max_completion_length"),
    (("algo=ppo", "algo.args.temperature=0"), "algo.args.temperature"),
    (("+data.typo=1",), ("data", "typo")),
    (("+eval.typo=1",), ("eval", "typo")),
    # The rest of the offline preference family: loss types checked against TRL's own choices, cross-field rules
    # the trainers would only enforce after loading.
    (("algo=kto", "algo.args.loss_type=sigmoid"), "algo.args.loss_type"),
    (("algo=cpo", "algo.args.loss_type=kto"), "algo.args.loss_type"),
    (("algo=simpo", "algo.args.loss_type=nope"), "algo.args.loss_type"),
    (("algo=simpo", "algo.args.loss_type=sigmoid"), "algo.args.loss_type"),  # that is algo=cpo
    (("algo=orpo", "algo.args.not_a_field=1"), ("algo.args", "not_a_field")),
    (("algo=orpo", "algo.args.learning_rate=-1"), "algo.args.learning_rate"),
    (("algo=kto", "algo.unpaired_fraction=1.5"), "algo.unpaired_fraction"),
    (("algo=kto", "trainer.per_device_train_batch_size=1"), "algo.args.per_device_train_batch_size"),
    (("algo=kto", "algo.args.train_sampling_strategy=random"), "algo.args.train_sampling_strategy"),
    (("algo=simpo", "algo.pairs.num_samples=1"), "algo.pairs.num_samples"),
]


def _case_id(case) -> str:
    return " ".join(case[0])


@pytest.mark.parametrize("overrides,key", BAD, ids=[_case_id(c) for c in BAD])
def test_bad_value_fails_before_load(compose, tiny_dir, model_loads, overrides, key):
    cfg = compose(*overrides, "model=tiny", f"model.name_or_path={tiny_dir}")
    try:
        run(cfg)
    except ConfigError as e:
        message = str(e)
    except ModelLoadReached:
        pytest.fail(f"{' '.join(overrides)} was accepted: run() got as far as loading a model")
    except Exception as e:  # noqa: BLE001  (a bare KeyError/TypeError names no key path for the user)
        pytest.fail(f"{' '.join(overrides)} raised {type(e).__name__}: {e}, not a ConfigError")
    else:
        pytest.fail("run() returned although every model load raises")
    assert not model_loads, model_loads
    for part in (key,) if isinstance(key, str) else key:
        assert part in message, message
