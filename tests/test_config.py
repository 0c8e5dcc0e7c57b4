"""Config validation: bad keys and values fail before any model loads, naming the key path."""

from __future__ import annotations

import pytest

from zoo import config
from zoo.config import ConfigError, normalize_overrides


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a model was loaded before validation failed")

    monkeypatch.setattr("zoo.models.load_policy", boom)
    monkeypatch.setattr("zoo.models.resolve_model_path", boom)


def _run_expecting(compose, *overrides) -> str:
    from zoo.train import run

    with pytest.raises(ConfigError) as err:
        run(compose(*overrides))
    return str(err.value)


def test_unknown_trl_key_names_path_and_suggests(compose):
    msg = _run_expecting(compose, "algo.args.betta=0.2")
    assert "algo.args.betta" in msg and "did you mean beta?" in msg


def test_wrong_type(compose):
    msg = _run_expecting(compose, "algo.args.beta=abc")
    assert "algo.args.beta" in msg and "number" in msg


@pytest.mark.parametrize("override,key", [
    ("algo.args.learning_rate=-1e-4", "algo.args.learning_rate"),
    ("algo.args.beta=0", "algo.args.beta"),
    ("algo.args.beta=-0.5", "algo.args.beta"),
    ("trainer.max_steps=0", "trainer.max_steps"),
    ("trainer.per_device_train_batch_size=0", "trainer.per_device_train_batch_size"),
])
def test_bad_values(compose, override, key):
    assert key in _run_expecting(compose, override)


def test_unknown_loss_type_lists_allowed(compose):
    msg = _run_expecting(compose, "algo.args.loss_type=sigmoidd")
    assert "algo.args.loss_type" in msg and "'sigmoid'" in msg and "'ipo'" in msg


def test_every_dpo_loss_type_accepted(compose):
    from trl import DPOConfig

    allowed = config._choices(
        {f.name: f for f in __import__("dataclasses").fields(DPOConfig)}["loss_type"], list[str])
    assert {"sigmoid", "ipo", "hinge", "robust", "apo_zero", "sigmoid_norm"} <= set(allowed)
    for loss in allowed:
        cfg = compose(f"algo.args.loss_type={loss}")
        args = config.trl_args(DPOConfig, [("trainer", cfg.trainer), ("algo.args", cfg.algo.args)],
                               output_dir="/tmp/x")
        assert args.loss_type == [loss]


def test_cross_field_rule_before_load(compose):
    msg = _run_expecting(compose, "algo.args.loss_type=exo_pair")
    assert "algo.args.label_smoothing" in msg


def test_grpo_loss_type_and_group_size_checked(compose):
    msg = _run_expecting(compose, "algo=grpo", "algo.args.loss_type=ppo")
    assert "algo.args.loss_type" in msg and "dr_grpo" in msg
    assert "num_generations" in _run_expecting(compose, "algo=grpo", "algo.args.num_generations=3")


def test_beta_zero_is_fine_for_grpo_not_dpo(compose):
    from trl import GRPOConfig

    cfg = compose("algo=grpo", "algo.args.beta=0")
    assert config.trl_args(GRPOConfig, [("trainer", cfg.trainer), ("algo.args", cfg.algo.args)],
                           output_dir="/tmp/x").beta == 0.0
    assert "beta > 0" in _run_expecting(compose, "algo=dpo", "algo.args.beta=0")


def test_missing_data_file(compose, tmp_path):
    msg = _run_expecting(compose, "data=hh_rlhf", f"data.path={tmp_path}/nope.jsonl")
    assert "data.path" in msg and "nope.jsonl" in msg


def test_unknown_stage_key(compose):
    msg = _run_expecting(compose, "+algo.pairz=1")
    assert "algo" in msg and "pairz" in msg


def test_zoo_managed_key_rejected(compose):
    assert "trainer.output_dir" in _run_expecting(compose, "trainer.output_dir=/tmp/elsewhere")


def test_stage_args_validated(compose):
    msg = _run_expecting(compose, "experiment=demo", "stages.sft.args.learning_rate=-1")
    assert "stages.sft.args.learning_rate" in msg


def test_normalize_overrides():
    assert normalize_overrides(["algo.args.beta=0.2", "trainer.seed=3", "stages.sft.args.x=1", "data=x",
                                "+algo.args.y=1", "stages.sft.name=sft", "algo.pairs.num_sample=4", "model.dtype=x",
                                "algo@stages.rm=rm_ranked"]) == [
        "++algo.args.beta=0.2", "++trainer.seed=3", "++stages.sft.args.x=1", "data=x", "+algo.args.y=1",
        "++stages.sft.name=sft", "++algo.pairs.num_sample=4", "model.dtype=x", "algo@stages.rm=rm_ranked"]


def test_a_key_a_sweep_file_sweeps_stays_as_written():
    """r1_arithmetic sweeps `trainer.seed`: the command line's `trainer.seed=0,1,2` must replace it, not sweep beside
    it as `++trainer.seed` (9 jobs, each seed 3 times); other keys still get `++`."""
    assert normalize_overrides(["+sweeps=r1_arithmetic", "trainer.seed=0,1,2", "trainer.bf16=false"]) == [
        "+sweeps=r1_arithmetic", "trainer.seed=0,1,2", "++trainer.bf16=false"]
    assert normalize_overrides(["+sweeps=[sentiment_algos,joblib]", "trainer.seed=1"]) == [
        "+sweeps=[sentiment_algos,joblib]", "trainer.seed=1"]
    assert normalize_overrides(["+sweeps=no_such_file", "trainer.seed=1"]) == ["+sweeps=no_such_file",
                                                                               "++trainer.seed=1"]
    # ppo_kl writes its key as `++algo.args.kl_coef` (ppo.yaml does not set it): the command line's takes that form
    assert normalize_overrides(["+sweeps=ppo_kl", "algo.args.kl_coef=0.1"]) == ["+sweeps=ppo_kl",
                                                                                "++algo.args.kl_coef=0.1"]


def test_a_misspelt_block_key_on_the_command_line_gets_a_did_you_mean(compose):
    """Reaches the zoo's check (not Hydra's "not in struct"), which names the key and the closest one."""
    with pytest.raises(ConfigError, match=r"algo\.pairs\.num_sample: unknown key; did you mean num_samples\?"):
        from zoo.config import validate

        validate(compose("algo=dpo", "algo.pairs.num_sample=4"))


def test_trl_config_gets_cpu_defaults(compose):
    from trl import DPOConfig

    cfg = compose("trainer.bf16=auto")  # the fixture pins false; trainer=cpu's own default is auto
    args = config.trl_args(DPOConfig, [("trainer", cfg.trainer), ("algo.args", cfg.algo.args)], output_dir="/tmp/x")
    assert args.use_cpu is True and args.bf16 is config.bf16_supported(True) and args.gradient_checkpointing is False
    assert args.beta == 0.1 and args.learning_rate == 5e-4 and args.max_steps == 2
