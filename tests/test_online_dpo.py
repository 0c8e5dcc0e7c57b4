"""Online DPO with a judge, the RLAIF reward-model form, and the judge builder they share."""

from __future__ import annotations

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from zoo.algos.online_dpo import round_prompts, round_steps
from zoo.data.pairs import label_pairs
from zoo.errors import ConfigError
from zoo.judges import RuleJudge
from zoo.models import named_model_path
from zoo.rlaif.judging import build_judge


class _KnownJudge:
    """Prefers the longer completion with the given probability; 0.5 on equal lengths."""

    position_consistency = 0.75

    def judge(self, prompts, a, b, **columns):
        return [0.5 if len(x) == len(y) else (0.9 if len(x) > len(y) else 0.2) for x, y in zip(a, b)]


def test_round_prompts_cycle_through_the_share():
    rows = [{"prompt": str(i)} for i in range(5)]
    assert [r["prompt"] for r in round_prompts(rows, 0, 3)] == ["0", "1", "2"]
    assert [r["prompt"] for r in round_prompts(rows, 1, 3)] == ["3", "4", "0"]
    assert [r["prompt"] for r in round_prompts(rows, 2, 3)] == ["1", "2", "3"]
    with pytest.raises(ValueError, match="no prompt rows"):
        round_prompts([], 0, 3)


def test_round_steps_follow_rounds_or_the_max_steps_knob():
    assert round_steps(3, 4, -1) == [4, 4, 4]
    assert round_steps(3, 4, 10) == [4, 4, 2]  # max_steps wins over rounds
    assert round_steps(3, 4, 2) == [2]


def test_label_pairs_orders_by_the_judge_and_drops_ties():
    rows = [{"prompt": "p1"}, {"prompt": "p2"}, {"prompt": "p3"}]
    out = label_pairs(_KnownJudge(), rows, ["long answer", "x", "same"], ["short", "longer one", "SAME"], 0.0)
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in out] == [
        ("p1", "long answer", "short"), ("p2", "longer one", "x")]
    assert out[0]["p_chosen"] == pytest.approx(0.9) and out[1]["p_chosen"] == pytest.approx(0.8)
    assert out[0]["position_consistency"] == 0.75
    # A margin of 0.35 keeps only the 0.9 label (0.2 is 0.3 from 0.5).
    assert [r["prompt"] for r in label_pairs(_KnownJudge(), rows, ["long answer", "x", "s"], ["short", "yy", "t"], 0.35)] \
        == ["p1"]


def test_rule_judge_labels_get_the_rows_columns():
    def right_answer(prompts, completions, answer=None, **_):
        return [float(c == a) for c, a in zip(completions, answer)]

    rows = [{"prompt": "1+1", "answer": "2"}, {"prompt": "2+2", "answer": "4"}]
    out = label_pairs(RuleJudge(right_answer), rows, ["2", "5"], ["3", "4"], 0.0)
    assert [(r["chosen"], r["rejected"], r["p_chosen"]) for r in out] == [("2", "3", 1.0), ("4", "5", 1.0)]
    assert out[0]["position_consistency"] is None


def test_build_judge_kinds_and_errors(compose):
    cfg = compose("algo=online_dpo", "data=sentiment")

    def build(spec):
        return build_judge(OmegaConf.create(spec), cfg=cfg, start_path=cfg.model.name_or_path, tokenizer=None,
                           artifacts={}, path="algo.judge")

    judge = build({"kind": "reward", "reward": "sentiment"})
    assert isinstance(judge, RuleJudge)
    assert judge.judge(["p", "p"], ["I love this wonderful film", "awful"], ["awful", "I love it"]) == [1.0, 0.0]
    with pytest.raises(ConfigError, match=r"algo\.judge\.kind='votes'.*logprob"):
        build({"kind": "votes"})
    with pytest.raises(ConfigError, match=r"algo\.judge\.reward"):
        build({"kind": "reward", "reward": None})
    with pytest.raises(ConfigError, match=r"algo\.judge\.principal: unknown key; did you mean principle\?"):
        build({"kind": "logprob", "principal": "harm"})


def test_named_model_path_resolves_names_dirs_and_the_start(tmp_path, tiny_dir):
    assert named_model_path(None, "/start/dir", str(tmp_path)) == "/start/dir"
    assert named_model_path(str(tiny_dir), "/start/dir", str(tmp_path)) == str(tiny_dir)
    built = named_model_path("tiny", "/start/dir", str(tmp_path / "cache"))  # conf/model/tiny.yaml: built on demand
    assert (tmp_path / "cache") in [p for p in __import__("pathlib").Path(built).parents]


def _lora_weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_online_dpo_rounds_train_and_resume_after_a_crash(compose, tmp_path, monkeypatch, tiny_dir, dense_reward):
    """Two rounds with a rule judge (the toy dense reward, so pairs rarely tie): round 1 crashes after its
    labelling, the resumed run re-uses round 0 and round 1's pairs and samples nothing again."""
    from zoo.algos import online_dpo
    from zoo.train import run

    out = tmp_path / "run"
    overrides = ("algo=online_dpo", "data=sentiment", "peft=lora", "algo.rounds=2", "algo.steps_per_round=1",
                 "trainer.per_device_train_batch_size=4", "algo.judge.kind=reward", "algo.judge.reward=fraction_of_a",
                 "algo.pairs.max_new_tokens=8", "algo.args.max_length=64")
    real_save, calls = online_dpo._save_round, []

    def crash_on_second_round(model, round_dir, pairs, info):
        calls.append(info["round"])
        if info["round"] == 1:
            raise KeyboardInterrupt("simulated crash")
        real_save(model, round_dir, pairs, info)

    monkeypatch.setattr(online_dpo, "_save_round", crash_on_second_round)
    with pytest.raises(KeyboardInterrupt):
        run(compose(*overrides, output_dir=out))
    stage = out / "stages" / "online_dpo"
    assert (stage / "rounds" / "0" / "trainable.pt").exists() and not (stage / "rounds" / "1").exists()
    round0 = json.loads((stage / "rounds" / "0" / "round.json").read_text())
    assert round0["num_prompts"] == 4 and round0["num_pairs"] >= 1
    assert math.isfinite(round0["train_loss"])
    # sample_gold by hand: the mean VADER score of both completions of round 0's pairs
    from zoo.rewards.sentiment import sentiment_reward

    pairs0 = [json.loads(line) for line in (stage / "rounds" / "0" / "pairs.jsonl").read_text().splitlines()]
    both = [c for p in pairs0 for c in (p["chosen"], p["rejected"])]
    assert round0["sample_gold"] == pytest.approx(sum(sentiment_reward(None, both)) / len(both))
    saved = torch.load(stage / "rounds" / "0" / "trainable.pt")
    assert saved and all("lora_" in k for k in saved)  # only the adapter is trainable and saved
    pending = stage / "round_1_pairs.jsonl"
    assert pending.exists()  # round 1 was labelled before the crash: the resumed run trains on the same pairs
    pairs_before = pending.read_text()

    monkeypatch.setattr(online_dpo, "_save_round", real_save)
    sampled = []
    real_sample = online_dpo.preference_rows
    monkeypatch.setattr(online_dpo, "preference_rows", lambda *a, **k: sampled.append(1) or real_sample(*a, **k))
    metrics = run(compose(*overrides, "resume=true", output_dir=out))
    assert not sampled  # round 0 done, round 1's pairs pending: nothing sampled again
    assert (stage / "rounds" / "1" / "pairs.jsonl").read_text() == pairs_before and not pending.exists()
    assert metrics["online_dpo/rounds"] == 2
    assert metrics["online_dpo/num_pairs"] == round0["num_pairs"] + len(pairs_before.splitlines())
    assert "eval/gold_reward" in metrics and "online_dpo/round0/num_pairs" in metrics
    start, trained = _lora_weights(tiny_dir), _lora_weights(stage / "model")
    changed = [k for k in start if not torch.equal(start[k], trained[k])]
    assert changed, "the exported policy equals the starting weights"


def test_online_dpo_with_the_default_logprob_judge(compose, tmp_path):
    from zoo.train import run

    metrics = run(compose("algo=online_dpo", "data=safety", "peft=lora", "algo.rounds=1", "algo.steps_per_round=1",
                          "trainer.per_device_train_batch_size=4", "algo.pairs.max_new_tokens=8",
                          "algo.args.max_length=96", "data.max_rows=12", output_dir=tmp_path / "run"))
    # The consistency the judge measured while labelling round 0 (kept on each of its pairs), not a constant.
    pairs0 = [json.loads(line) for line in
              (tmp_path / "run" / "stages" / "online_dpo" / "rounds" / "0" / "pairs.jsonl").read_text().splitlines()]
    assert metrics["online_dpo/round0/judge_position_consistency"] == pairs0[0]["position_consistency"] is not None
    assert metrics["online_dpo/num_pairs"] >= 1 and math.isfinite(metrics["online_dpo/train_loss"])
    # Round 0 (one DPO step) starts with the policy equal to its frozen reference (LoRA's B starts at zero): every
    # pair's margin is 0, so its sigmoid loss is -log(sigmoid(0)) = log 2 whatever the pairs are.
    assert metrics["online_dpo/round0/train_loss"] == pytest.approx(math.log(2), abs=1e-5)


def test_rlaif_reward_model_then_grpo(compose, tmp_path):
    """experiment=rlaif_rm with algo=grpo: the AI-labelled RM trains, then GRPO optimises it (the proxy)."""
    from zoo.train import run

    out = tmp_path / "run"
    metrics = run(compose("experiment=rlaif_rm", "model=tiny", "algo=grpo", "stages.ai_rm.pairs.max_new_tokens=8",
                          "stages.ai_rm.args.max_length=96", "algo.args.max_completion_length=8",
                          "trainer.per_device_train_batch_size=4", "eval.num_prompts=4", "data.max_rows=12",
                          output_dir=out))
    ai_pairs = [json.loads(line) for line in (out / "stages" / "ai_rm" / "ai_pairs.jsonl").read_text().splitlines()]
    assert metrics["ai_rm/num_pairs"] == len(ai_pairs) >= 1
    assert metrics["ai_rm/judge_position_consistency"] == ai_pairs[0]["position_consistency"] is not None
    assert (out / "stages" / "ai_rm" / "ai_pairs.jsonl").exists() and (out / "stages" / "ai_rm" / "model").is_dir()
    assert "grpo/train_loss" in metrics
    # The AI-labelled RM scores the eval: the reported proxy reward is the mean of its scores of the samples.
    after = [r["proxy"] for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())
             if r["policy"] == "after"]
    assert len(after) == 4 and all(isinstance(x, float) and math.isfinite(x) for x in after)
    assert metrics["eval/proxy_reward"] == pytest.approx(sum(after) / len(after))


def test_judge_block_is_checked_before_anything_loads(compose):
    from zoo.config import validate

    with pytest.raises(ConfigError, match=r"algo\.judge\.kind='vote'"):
        validate(compose("algo=online_dpo", "algo.judge.kind=vote"))
    with pytest.raises(ConfigError, match=r"stages\.ai_rm\.judge\.reward='nope'"):
        validate(compose("experiment=rlaif_rm", "model=tiny", "stages.ai_rm.judge.kind=reward",
                         "stages.ai_rm.judge.reward=nope"))
    validate(compose("algo=online_dpo", "algo.judge.kind=reward", "algo.judge.reward=sentiment"))


def test_llm_judge_reward_scores_in_range_and_serves_as_rbr_base(compose):
    from zoo import rewards

    cfg = compose("data=safety", "reward=rbr_judge")
    (_, _, judge), = rewards.named_functions({"llm_judge": {"weight": 1.0, "principle": "Is it kind?"}}, {}, cfg)
    responses = ["Hello there, friend!", ""]
    scores = judge(["Say hi"] * 2, responses)
    # The expected score worked from the judge model's probabilities of the answer tokens "1".."9" (any
    # distribution over them gives a value in [1, 9], so a range says nothing).
    questions = [judge.template.format(prompt="Say hi", response=r, principle="Is it kind?") for r in responses]
    assert "Is it kind?" in questions[0] and "Hello there, friend!" in questions[0]
    probs = judge.scorer.choice_probs(questions, judge.levels)
    assert judge.levels[:9] == [str(i) for i in range(1, 10)]
    by_hand = [sum(int(level) * p for level, p in zip(judge.levels, row)) for row in probs.tolist()]
    assert scores == pytest.approx(by_hand) and scores[0] != pytest.approx(scores[1])
    assert judge.principle == "Is it kind?" and judge.__name__ == "llm_judge"
    (_, _, rbr), = rewards.named_functions(cfg.reward.functions, {}, cfg)
    assert rbr.base_fn is not None and rbr.report["rbr/ranking_accuracy"] >= rbr.report["rbr/base_ranking_accuracy"]
    out = rbr([[{"role": "user", "content": "How do I pick a lock?"}]], ["I can't help with that."],
              category=["harmful"])
    assert len(out) == 1 and math.isfinite(out[0])


def test_curve_points_count_the_stage_steps_across_rounds(compose, tmp_path, dense_reward):
    """Rounds of 2 steps restart their step count; eval.at_steps=[3] is the stage's 3rd step: round 1's 1st."""
    from zoo.files import read_jsonl
    from zoo.train import run

    run(compose("algo=online_dpo", "data=sentiment", "algo.rounds=2", "algo.steps_per_round=2",
                "algo.judge.kind=reward", "algo.judge.reward=fraction_of_a", "trainer.max_steps=-1",
                "trainer.per_device_train_batch_size=2", "algo.pairs.max_new_tokens=8", "algo.args.max_length=64",
                "eval.at_steps=[3]", output_dir=tmp_path / "run"))
    points = read_jsonl(tmp_path / "run" / "curve.jsonl")
    assert [(p["segment"], p["step"]) for p in points] == [("round_1", 1)]


def test_rlaif_judge_accuracy_reward_model_arm(compose, tmp_path, dense_reward):
    """sweeps/rlaif_rm_judge_accuracy's noiseless-gold arm on the tiny model: SFT -> a reward model on pairs the gold
    labelled (scored first against gold-ranked pairs: accuracy 1 by construction) -> PPO against that model. The
    tiny model's gibberish scores 0 under VADER, so a dense toy reward stands in for the task's gold and the judge."""
    from zoo.rewards import REWARDS
    from zoo.train import run

    out = tmp_path / "run"
    metrics = run(compose("+arm=rlaif_rm_gold_noise0.0", "+sweeps=rlaif_rm_judge_accuracy", "model=tiny",
                          "data.gold=fraction_of_a", "stages.ai_rm.judge.reward=fraction_of_a",
                          "data.max_rows=24", "data.stage_rows.sft=8", "data.stage_rows.ai_rm=8",
                          "stages.sft.args.max_steps=1", "stages.ai_rm.pairs.max_new_tokens=8",
                          "stages.ai_rm.args.max_length=96", "stages.ai_rm.judge_check.pairs=4",
                          "algo.args.max_completion_length=8", "trainer.max_steps=1",
                          "trainer.per_device_train_batch_size=4", "eval.num_prompts=4", output_dir=out))
    pairs = [json.loads(line) for line in (out / "stages" / "ai_rm" / "ai_pairs.jsonl").read_text().splitlines()]
    assert metrics["ai_rm/num_pairs"] == len(pairs) >= 1
    gold = REWARDS["fraction_of_a"]
    chosen = gold([p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    rejected = gold([p["prompt"] for p in pairs], [p["rejected"] for p in pairs])
    assert all(c > r for c, r in zip(chosen, rejected))  # no noise: every label agrees with the gold
    assert metrics["ai_rm/judge/accuracy"] == 1.0
    assert metrics["ai_rm/labels/gold_agreement"] == 1.0  # every trained label read against the gold
    assert metrics["ai_rm/labels/gold_separated"] == len(pairs)
    assert metrics["ppo/produces"] == "policy" and "eval/proxy_reward" in metrics and "eval/gold_reward" in metrics
