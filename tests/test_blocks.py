"""The zoo's own config blocks (pairs, judge, judge_check, CAI generation, the probes) and the plain ones (data, eval,
trainer.zoo, a stage's keys, reward parameters): a misspelt key fails with a did-you-mean naming its key path, a bad
value names the expected range, the shared blocks compose from their groups (conf/pairs, conf/judge,
conf/judge_check) at `algo.*` and at `stages.<name>.*`, and docs/configs.md documents every field."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from zoo import config
from zoo.algos.cai import CAIGenerationConfig
from zoo.checks import check_block, known_keys
from zoo.data.pairs_config import GoldPairsConfig, JudgePairsConfig
from zoo.errors import ConfigError, MAX_LINES
from zoo.eval.capability import CapabilityConfig
from zoo.eval.passk import PassAtKConfig
from zoo.eval.diversity import DiversityConfig
from zoo.eval.sycophancy import SycophancyConfig
from zoo.rlaif.judge_config import JudgeCheckConfig, JudgeConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# (title in docs/configs.md, dataclass, the file and key path of its defaults)
BLOCKS = [
    ("`pairs:` ranked by gold", GoldPairsConfig, "pairs/gold.yaml", ""),
    ("`pairs:` labelled by a judge", JudgePairsConfig, "pairs/judge.yaml", ""),
    ("`judge:`", JudgeConfig, "judge/default.yaml", ""),
    ("`judge_check:`", JudgeCheckConfig, "judge_check/default.yaml", ""),
    ("`generation:` (cai)", CAIGenerationConfig, "algo/cai.yaml", "generation"),
    ("`eval.diversity`", DiversityConfig, "eval/default.yaml", "diversity"),
    ("`eval.sycophancy`", SycophancyConfig, "eval/default.yaml", "sycophancy"),
    ("`eval.capability`", CapabilityConfig, "eval/default.yaml", "capability"),
    ("`eval.pass_at_k`", PassAtKConfig, "eval/default.yaml", "pass_at_k"),
]


def _defaults(file: str, key: str) -> dict:
    block = OmegaConf.load(CONF / file)
    return OmegaConf.to_container(OmegaConf.select(block, key) if key else block)


def _validate(compose, *overrides) -> str:
    with pytest.raises(ConfigError) as err:
        config.validate(compose(*overrides))
    message = str(err.value)
    assert len(message.splitlines()) <= MAX_LINES, message
    return message


MISSPELT = [
    # (overrides, the key path named, the key suggested)
    (("algo=dpo", "+algo.pairs.num_sample=4"), "algo.pairs.num_sample", "num_samples"),
    (("algo=kto", "+algo.pairs.batchsize=4"), "algo.pairs.batchsize", "batch_size"),
    (("algo=rlaif", "+algo.pairs.min_margn=0.1"), "algo.pairs.min_margn", "min_margin"),
    (("algo=online_dpo", "+algo.pairs.temprature=1"), "algo.pairs.temprature", "temperature"),
    (("algo=rlaif", "+algo.judge.principel=x"), "algo.judge.principel", "principle"),
    (("algo=online_dpo", "+algo.judge_check.pair=3"), "algo.judge_check.pair", "pairs"),
    (("algo=cai", "+algo.generation.temprature=0.3"), "algo.generation.temprature", "temperature"),
    (("+eval.diversity.prompt=3",), "eval.diversity.prompt", "prompts"),
    (("+eval.sycophancy.item=3",), "eval.sycophancy.item", "items"),
    (("+eval.capability.choices=3",), "eval.capability.choices", "choice"),
    (("+data.max_row=3",), "data.max_row", "max_rows"),
    (("+eval.num_prompt=3",), "eval.num_prompt", "num_prompts"),
    (("+trainer.zoo.eager_atention=true",), "trainer.zoo.eager_atention", "eager_attention"),
    (("+algo.pairz=1",), "algo.pairz", "pairs"),
    (("experiment=instructgpt", "+stages.rm.pairs.num_sample=4"), "stages.rm.pairs.num_sample", "num_samples"),
    (("experiment=rlaif_rm", "+stages.ai_rm.judge.principel=x"), "stages.ai_rm.judge.principel", "principle"),
    (("experiment=cai", "+stages.cai.generation.max_new_token=8"), "stages.cai.generation.max_new_token",
     "max_new_tokens"),
    (("reward=rbr", "+reward.functions.rbr.gradr=llm"), "reward.functions.rbr.gradr", "grader"),
]


@pytest.mark.parametrize("overrides,path,suggested", MISSPELT, ids=[" ".join(c[0]) for c in MISSPELT])
def test_a_misspelt_key_gets_a_did_you_mean(compose, overrides, path, suggested):
    message = _validate(compose, *overrides)
    assert message.startswith(f"{path}: ") and f"did you mean {suggested}?" in message, message
    assert "allowed: " in message and suggested in message.split("allowed: ", 1)[1], message


BAD_VALUES = [
    # (overrides, the start of the message: key path, value and the expected range)
    (("algo=dpo", "algo.pairs.temperature=0"), "algo.pairs.temperature=0: expected a sampling temperature > 0"),
    (("algo=dpo", "algo.pairs.num_samples=abc"), "algo.pairs.num_samples='abc': expected an integer; allowed: an "
                                                 "integer >= 2"),
    (("algo=dpo", "algo.pairs.top_p=1.5"), "algo.pairs.top_p=1.5: expected a value in (0, 1]"),
    (("algo=rlaif", "algo.pairs.min_margin=0.5"), "algo.pairs.min_margin=0.5: expected a margin in [0, 0.5)"),
    (("algo=online_dpo", "algo.judge_check.pairs=-1"), "algo.judge_check.pairs=-1: expected an integer >= 0"),
    (("algo=online_dpo", "algo.judge_check.at_chance=stpo"), "algo.judge_check.at_chance='stpo': unknown value; "
                                                             "did you mean stop?"),
    (("algo=rlaif", "algo.judge.kind=pointwse"), "algo.judge.kind='pointwse': unknown value; did you mean pointwise?"),
    (("algo=cai", "algo.generation.temperature=-1"), "algo.generation.temperature=-1: expected a temperature >= 0"),
    (("eval.diversity.samples_per_prompt=1",), "eval.diversity.samples_per_prompt=1: expected an integer >= 2"),
    (("eval.capability.choice=500",), "eval.capability.choice=500: expected an integer in [0, 120]"),
    (("eval.sycophancy.items=-1",), "eval.sycophancy.items=-1: expected an integer >= 0"),
    (("experiment=instructgpt", "stages.rm.pairs.num_samples=1"), "stages.rm.pairs.num_samples=1: expected an "
                                                                  "integer >= 2"),
    (("algo=dpo", "~algo.pairs.num_samples"), "algo.pairs.num_samples: required"),
]


@pytest.mark.parametrize("overrides,start", BAD_VALUES, ids=[" ".join(c[0]) for c in BAD_VALUES])
def test_a_bad_value_names_the_expected_range(compose, overrides, start):
    message = _validate(compose, *overrides)
    assert message.startswith(start), message


def test_check_block_fills_defaults_and_coerces():
    values = check_block({"num_samples": 4, "max_new_tokens": 8, "temperature": 1, "min_margin": 0},
                         GoldPairsConfig, "algo.pairs")
    assert values == {"num_samples": 4, "max_new_tokens": 8, "temperature": 1.0, "min_margin": 0.0, "top_p": 1.0,
                      "batch_size": 16}
    assert check_block(None, JudgeCheckConfig, "algo.judge_check") == dataclasses.asdict(JudgeCheckConfig())


def test_a_key_nothing_resembles_gets_the_allowed_keys_only():
    with pytest.raises(ConfigError) as err:
        known_keys({"zzz": 1}, ("num_prompts", "seed"), "eval")
    assert str(err.value) == "eval.zzz: unknown key\n  allowed: num_prompts, seed"


@pytest.mark.parametrize("title,schema,file,key", BLOCKS, ids=[b[1].__name__ for b in BLOCKS])
def test_every_field_has_help_and_the_defaults_pass(title, schema, file, key):
    fields = dataclasses.fields(schema)
    assert all(f.metadata.get("help") for f in fields), [f.name for f in fields if not f.metadata.get("help")]
    defaults = _defaults(file, key)
    assert set(defaults) == {f.name for f in fields}, f"conf/{file} and {schema.__name__} list different keys"
    check_block(defaults, schema, title)


def _table(schema, defaults: dict) -> str:
    def show(value):
        return value if isinstance(value, str) else json.dumps(value)

    rows = [f"| `{f.name}` | `{show(defaults[f.name])}` | {' '.join(f.metadata['help'].split())} |"
            for f in dataclasses.fields(schema)]
    return "\n".join(["| key | default | meaning |", "|---|---|---|", *rows])


@pytest.mark.parametrize("title,schema,file,key", BLOCKS, ids=[b[1].__name__ for b in BLOCKS])
def test_docs_document_every_field(title, schema, file, key):
    """docs/configs.md carries each block's table as generated here from the help text and the group's defaults
    (print(_table(...)) regenerates one)."""
    page = (ROOT / "docs" / "configs.md").read_text()
    assert f"**{title}**" in page
    assert _table(schema, _defaults(file, key)) in page, f"docs/configs.md: the table of {schema.__name__} is stale"


PAIRS_GROUP = {"dpo": "gold", "rm": "gold", "kto": "gold", "orpo": "gold", "simpo": "gold", "cpo": "gold",
               "rlaif": "judge", "rlaif_rm": "judge", "online_dpo": "judge", "online_dpo_gold": "judge"}


@pytest.mark.parametrize("algo", sorted(PAIRS_GROUP))
def test_algo_files_pull_the_shared_blocks_from_their_groups(compose, algo):
    raw = OmegaConf.load(CONF / "algo" / f"{algo}.yaml")
    assert "pairs" not in raw and "judge_check" not in raw, f"conf/algo/{algo}.yaml copies a shared block"
    cfg = compose(f"algo={algo}")
    assert OmegaConf.to_container(cfg.algo.pairs) == _defaults(f"pairs/{PAIRS_GROUP[algo]}.yaml", "")
    if PAIRS_GROUP[algo] == "judge":
        assert OmegaConf.to_container(cfg.algo.judge_check) == _defaults("judge_check/default.yaml", "")


def test_online_dpo_overrides_the_judge_group_after_it(compose):
    judge = compose("algo=online_dpo").algo.judge
    assert judge.principle.startswith("Which response") and judge.kind == "logprob"
    gold = compose("algo=online_dpo_gold").algo.judge
    assert gold.kind == "reward" and gold.reward == "sentiment"


def test_a_pipeline_stage_composes_its_blocks_from_the_groups(compose):
    """`- /algo@stages.rm: rm` puts the algo file's own defaults (relative packages) at stages.rm.*, not algo.*."""
    cfg = compose("experiment=instructgpt", "stages.rm.pairs.num_samples=4")
    assert OmegaConf.to_container(cfg.stages.rm.pairs) == {**_defaults("pairs/gold.yaml", ""), "num_samples": 4}
    assert "pairs" not in cfg.algo and "pairs" not in cfg.stages.sft  # ppo and sft take none
    cfg = compose("experiment=rlaif_rm")
    assert OmegaConf.to_container(cfg.stages.ai_rm.pairs) == _defaults("pairs/judge.yaml", "")
    assert OmegaConf.to_container(cfg.stages.ai_rm.judge) == _defaults("judge/default.yaml", "")
    assert OmegaConf.to_container(cfg.stages.ai_rm.judge_check) == _defaults("judge_check/default.yaml", "")
    cfg = compose("experiment=cai")  # rlaif as the final stage, cai (no shared block) before it
    assert OmegaConf.to_container(cfg.algo.pairs) == _defaults("pairs/judge.yaml", "")
    assert set(cfg.stages.cai) == {"name", "constitution", "rounds", "generation", "args"}
