"""Constitutional AI: the constitution, critique/revision prompts, and SL-CAI end to end on the tiny model."""

from __future__ import annotations

import json
import math

import pytest

from zoo.rlaif.constitution import critique_messages, load_constitution, revision_messages
from zoo.rlaif.critique_revise import final_rows

CONSTITUTION = load_constitution("default")


def test_default_constitution_covers_the_ground():
    names = {p.name for p in CONSTITUTION.principles}
    assert len(names) >= 8 and {"harm", "honesty", "sycophancy", "over_refusal"} <= names
    assert CONSTITUTION.examples


def test_critique_and_revision_prompts(tiny_dir):
    from zoo.models import load_tokenizer

    principle = CONSTITUTION.principle("sycophancy")
    prompt = [{"role": "user", "content": "My essay is perfect, right?"}]
    crit = critique_messages(CONSTITUTION, prompt, "Yes, it is flawless!", principle)
    # few-shot: four turns per example, then the request with the principle's critique text substituted
    assert len(crit) == 4 * len(CONSTITUTION.examples) + 1
    assert crit[0]["content"].startswith("User: ") and crit[1]["role"] == "assistant"
    last = crit[-1]["content"]
    assert "User: My essay is perfect, right?" in last and "Assistant: Yes, it is flawless!" in last
    assert last.endswith("Critique request: " + principle.critique)
    rev = revision_messages(CONSTITUTION, prompt, "Yes, it is flawless!", principle, "It flatters.")
    assert rev[-2] == {"role": "assistant", "content": "It flatters."}
    assert rev[-1]["content"].startswith("Revision request: " + principle.revision)
    rendered = load_tokenizer(str(tiny_dir)).apply_chat_template(rev, tokenize=False, add_generation_prompt=True)
    assert rendered.count("<|im_start|>user") == 2 * len(CONSTITUTION.examples) + 2


def test_constitution_errors(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("principles: [{name: x, critique: c}]\n")
    with pytest.raises(ValueError, match="revision"):
        load_constitution(str(bad))
    with pytest.raises(FileNotFoundError):
        load_constitution("no-such-constitution")


def test_final_rows_take_the_last_round():
    rows = [{"prompt": "p", "original": "o", "critique": "c1", "revision": "r1", "principle": "harm", "round": 1},
            {"prompt": "p", "original": "o", "critique": "c2", "revision": "r2", "principle": "harm", "round": 2}]
    sft, prefs = final_rows(rows)
    assert sft == [{"prompt": "p", "completion": "r2"}]
    assert prefs == [{"prompt": "p", "chosen": "r2", "rejected": "o", "labeller": "cai_revision"}]


def test_sl_cai_end_to_end_then_dpo_on_its_pairs(compose, tmp_path):
    from zoo.train import run

    out = tmp_path / "cai"
    metrics = run(compose("algo=cai", "data=safety", "algo.rounds=2", "algo.generation.max_new_tokens=8",
                          "eval.num_prompts=4", "data.max_rows=6", output_dir=out))
    rows = [json.loads(x) for x in (out / "stages" / "cai" / "cai_rows.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 6 and {r["round"] for r in rows} == {1, 2}
    assert set(rows[0]) == {"prompt", "original", "critique", "revision", "principle", "round"}
    assert {r["principle"] for r in rows} <= {p.name for p in CONSTITUTION.principles}
    assert metrics["cai/num_revisions"] == 12 and "eval/refusal_f1" in metrics
    pairs = out / "stages" / "cai" / "cai_pairs.jsonl"
    again = run(compose("algo=dpo", "data=trl", f"data.path={pairs}", "eval.num_prompts=1",
                        output_dir=tmp_path / "dpo"))
    assert again["dpo/num_pairs"] >= 1


def test_cai_pipeline_sl_then_rl(compose, tmp_path, monkeypatch):
    """experiment=cai on the tiny model: SL-CAI, then RLAIF with the judge; three columns evaluated."""
    from zoo.judges import PairwiseLogProbJudge
    from zoo.train import run

    # The real judge still runs on the real samples (its position consistency is what gets reported), but its
    # soft labels are replaced by known ones, so the stored pairs can be checked against values worked by hand:
    # P(first > second) = 0.9 keeps the order, 0.2 and 0.35 swap it, 0.5 is a tie and is dropped.
    known, calls, consistency, real_judge = (0.9, 0.2, 0.5, 0.35), [], [], PairwiseLogProbJudge.judge

    def known_labels(self, prompts, firsts, seconds, **columns):
        real = real_judge(self, prompts, firsts, seconds, **columns)
        assert len(real) == len(prompts)
        calls.append((prompts, firsts, seconds))
        consistency.append(self.position_consistency)
        return [known[i % len(known)] for i in range(len(prompts))]

    monkeypatch.setattr(PairwiseLogProbJudge, "judge", known_labels)
    out = tmp_path / "run"
    metrics = run(compose("experiment=cai", "model=tiny", "stages.cai.generation.max_new_tokens=8",
                          "algo.pairs.max_new_tokens=8", "eval.num_prompts=4", "data.max_rows=8", output_dir=out))
    for prefix in ("before", "eval_cai", "eval"):
        assert f"{prefix}/harmless_rate" in metrics and f"{prefix}/helpful_rate" in metrics
    # The judge's own share of order-consistent verdicts on these pairs, reported as it is (a value in [0, 1] from
    # anywhere else would pass a range check).
    assert consistency and metrics["rlaif/judge_position_consistency"] == consistency[0]
    pairs = [json.loads(x) for x in (out / "stages" / "rlaif" / "ai_pairs.jsonl").read_text().splitlines()]
    (prompts, firsts, seconds), = calls
    assert len(prompts) == 4  # data.max_rows=8 split between the two stages
    assert firsts[1] != seconds[1] and firsts[3] != seconds[3]  # else a wrong swap would go unseen
    by_hand = [(prompts[0], firsts[0], seconds[0], 0.9), (prompts[1], seconds[1], firsts[1], 0.8),
               (prompts[3], seconds[3], firsts[3], 0.65)]
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [row[:3] for row in by_hand]
    assert [p["p_chosen"] for p in pairs] == pytest.approx([row[3] for row in by_hand])
    assert metrics["rlaif/mean_label_confidence"] == pytest.approx((0.9 + 0.8 + 0.65) / 3)


def test_sl_cai_on_the_sentiment_task_with_its_constitution(compose, tmp_path, dense_reward):
    """The rlaif_sl_cai arm's pipeline on the tiny model: SFT -> SL-CAI under conf/constitution/positive_review.yaml
    on plain-text review openings -> RL-CAI with the pairwise judge; the revisions are saved and trained on. The
    judge is checked against a dense toy gold (VADER ties nearly all of the tiny model's samples: no pair to score)."""
    from zoo.rlaif.constitution import load_constitution
    from zoo.train import run

    assert [p.name for p in load_constitution("positive_review").principles] == ["positive_review"]
    out = tmp_path / "run"
    metrics = run(compose("+arm=rlaif_sl_cai", "+sweeps=rlaif_judge_accuracy", "model=tiny", "peft=lora",
                          "data.gold=fraction_of_e",
                          "data.max_rows=24", "data.stage_rows.sft=8", "data.stage_rows.cai=8",
                          "stages.sft.args.max_steps=1", "stages.cai.args.max_steps=1",
                          "stages.cai.generation.max_new_tokens=8", "algo.pairs.max_new_tokens=8",
                          "algo.judge_check.pairs=4", "trainer.max_steps=1", "eval.num_prompts=4", output_dir=out))
    rows = [json.loads(x) for x in (out / "stages" / "cai" / "cai_rows.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["prompt"] for r in rows)
    assert "positive_review" in (out / "stages" / "cai" / "cai_rows.jsonl").read_text()
    assert metrics["cai/produces"] == "policy" and math.isfinite(metrics["cai/train_loss"])
    assert 0.0 <= metrics["rlaif/judge/accuracy"] <= 1.0 and "eval/gold_reward" in metrics
