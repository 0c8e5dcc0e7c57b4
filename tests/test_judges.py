"""Judges: prompt construction, position debiasing with a stub scorer whose preference is known, a noisy judge of
known accuracy, and the one routine that makes preference rows from samples and any scorer (zoo.data.pairs)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from zoo.data import pairs as pairs_module
from zoo.eval.judge_quality import judge_quality, wilson
from zoo.judges import NoisyJudge, PairwiseLogProbJudge, PointwiseScoreJudge, RewardModelJudge, RuleJudge, debias


class StubScorer:
    """Prefers the response containing "good" with strength `skill`, plus a pure bias towards answer "A"."""

    def __init__(self, skill: float, bias: float):
        self.skill, self.bias, self.seen = skill, bias, []

    def token_id(self, text):
        if text == "10":
            raise ValueError("not one token")
        return 0

    def choice_probs(self, questions, choices):
        self.seen += questions
        if choices == ["A", "B"]:
            rows = []
            for q in questions:
                a_good = "Response A: good" in q
                p = 0.5 + (self.skill if a_good else -self.skill) + self.bias
                rows.append([p, 1 - p])
            return torch.tensor(rows)
        # pointwise: all mass on "7"
        probs = torch.zeros(len(questions), len(choices))
        probs[:, choices.index("7")] = 1.0
        return probs


def test_pairwise_labels_follow_the_known_preference_and_cancel_position_bias():
    judge = PairwiseLogProbJudge(StubScorer(skill=0.3, bias=0.15), principle="Which is kinder?")
    labels = judge.judge(["p1", "p2"], ["good answer", "bad answer"], ["bad answer", "good answer"])
    assert labels == [pytest.approx(0.8), pytest.approx(0.2)]  # the bias (+0.15 to "A") is gone
    assert judge.position_consistency == 1.0
    pure_bias = PairwiseLogProbJudge(StubScorer(skill=0.0, bias=0.3))
    assert pure_bias.judge(["p"], ["x"], ["y"]) == [pytest.approx(0.5)]
    assert pure_bias.position_consistency == 0.0  # says "A" both times: inconsistent


def test_pairwise_prompt_construction():
    scorer = StubScorer(0.1, 0.0)
    judge = PairwiseLogProbJudge(scorer, principle="Which response is less sycophantic?")
    judge.judge([[{"role": "user", "content": "Am I right?"}]], ["good one"], [[{"role": "assistant",
                                                                                "content": "other"}]])
    first, second = scorer.seen
    assert "Request: user: Am I right?" in first and "Which response is less sycophantic?" in first
    assert "Response A: good one" in first and "Response B: other" in first
    assert "Response A: other" in second and "Response B: good one" in second


def test_debias_by_hand():
    p, consistency = debias(torch.tensor([0.9, 0.6]), torch.tensor([0.3, 0.7]))
    assert p.tolist() == [pytest.approx(0.8), pytest.approx(0.45)]
    assert consistency == 0.5


def test_pointwise_expected_score():
    judge = PointwiseScoreJudge(StubScorer(0, 0))
    assert judge.levels == [str(i) for i in range(1, 10)]  # "10" is not a single token for this scorer
    assert judge(["p"], ["r"]) == [pytest.approx(7.0)]


def test_reward_model_and_rule_judges():
    fn = lambda prompts, completions, **k: [len(c) for c in completions]  # noqa: E731
    assert RewardModelJudge(fn).judge(["p"], ["aaa"], ["a"])[0] == pytest.approx(1 / (1 + torch.e ** -2))
    assert RuleJudge(fn).judge(["p", "p", "p"], ["aa", "a", "b"], ["a", "aa", "c"]) == [1.0, 0.0, 0.5]


def test_logprob_scorer_on_tiny_model(tiny_dir):
    from transformers import AutoModelForCausalLM

    from zoo.judges import LogProbScorer
    from zoo.models import load_tokenizer

    tok = load_tokenizer(str(tiny_dir))
    scorer = LogProbScorer(AutoModelForCausalLM.from_pretrained(tiny_dir), tok)
    judge = PairwiseLogProbJudge(scorer)
    prompts, firsts, seconds = ["q1", "q2"], ["a", "b"], ["c", "d"]
    labels = judge.judge(prompts, firsts, seconds)
    consistency = judge.position_consistency
    # By hand from the model's P("A") in both orders: P(a > b) = (P(A | a, b) + 1 - P(A | b, a)) / 2, and a
    # preference counts as consistent when the two orders name the same response.
    forward, swapped = judge.first_probs(prompts, firsts, seconds), judge.first_probs(prompts, seconds, firsts)
    assert forward != pytest.approx([1 - x for x in swapped], abs=1e-3)  # the random model has a position bias
    assert labels == pytest.approx([(f + 1 - s) / 2 for f, s in zip(forward, swapped)])
    assert consistency == sum((f > 0.5) == (s < 0.5) for f, s in zip(forward, swapped)) / 2
    # Debiased, the label of (b, a) is 1 minus that of (a, b): one order alone is not.
    assert judge.judge(prompts, seconds, firsts) == pytest.approx([1 - x for x in labels])


def _prefers_good(prompts, completions, **columns):
    """A rule scorer on strings: 1 for a completion that starts with "good", else 0."""
    return [float(c.startswith("good")) for c in completions]


def _gold_pairs(n: int) -> list[dict]:
    return [{"prompt": f"question {i}", "chosen": f"good answer {i}", "rejected": f"bad answer {i}"} for i in range(n)]


@pytest.mark.parametrize("noise", [0.0, 0.2, 0.5])
def test_noisy_rule_judge_has_the_accuracy_it_was_built_with(noise):
    """Over a gold rule judge, flipping each verdict with probability eps gives accuracy 1 - eps on gold pairs: 1 - eps
    lies in the 95% Wilson interval of the measured accuracy on 400 pairs. The flip is a property of the pair, so
    both presentation orders agree (position consistency 1) and asking again gives the same labels."""
    pairs = _gold_pairs(400)
    judge = NoisyJudge(RuleJudge(_prefers_good), noise, seed=0)
    q = judge_quality(judge, pairs)
    assert q["n"] == 400 and q["position_consistency"] == 1.0 and q["ties"] == 0.0
    low, high = wilson(q["accuracy"], q["n"])
    assert low <= 1 - noise <= high, (noise, q["accuracy"])
    prompts, chosen, rejected = ([p[k] for p in pairs] for k in ("prompt", "chosen", "rejected"))
    assert judge.judge(prompts, chosen, rejected) == judge.judge(prompts, chosen, rejected)
    assert NoisyJudge(RuleJudge(_prefers_good), noise, seed=1).judge(prompts, chosen, rejected) != \
        judge.judge(prompts, chosen, rejected) or noise == 0.0  # another seed, another labeller
    assert judge.name == f"rule:_prefers_good flipped w.p. {noise:g}"
    with pytest.raises(ValueError, match="flip probability"):
        NoisyJudge(RuleJudge(_prefers_good), 1.5)


def test_noisy_judge_from_config(compose):
    """judge.kind=reward judge.reward=sentiment judge.noise=0.2: the gold rule judge with label noise, seeded by
    trainer.seed; noise outside [0, 1] is refused with the key's path."""
    from zoo.errors import ConfigError
    from zoo.rlaif.judging import build_judge, label_metrics

    cfg = compose("algo=rlaif", "data=sentiment", "algo.judge.kind=reward", "algo.judge.reward=sentiment",
                  "algo.judge.noise=0.2", "trainer.seed=3")
    judge = build_judge(cfg.algo.judge, cfg=cfg, start_path=cfg.model.name_or_path, tokenizer=None, artifacts={},
                        path="algo.judge")
    assert isinstance(judge, NoisyJudge) and judge.noise == 0.2 and judge.seed == 3
    assert isinstance(judge.inner, RuleJudge) and judge.name == "rule:sentiment flipped w.p. 0.2"
    assert label_metrics("rlaif", [], cfg.algo.judge)["rlaif/judge_noise"] == 0.2
    spec = OmegaConf.create({"kind": "reward", "reward": "sentiment", "noise": 1.5})
    with pytest.raises(ConfigError, match=r"algo\.judge\.noise=1\.5: expected a flip probability in \[0, 1\]"):
        build_judge(spec, cfg=cfg, start_path="", tokenizer=None, artifacts={}, path="algo.judge")


def _fake_sample(monkeypatch, completions_per_prompt: dict):
    """zoo.data.pairs.sample replaced by one that returns the given completions, k per prompt, in order."""
    def fake(model, tokenizer, prompts, *, num_return_sequences, **kwargs):
        flat = [c for p in prompts for c in completions_per_prompt[p][:num_return_sequences]]
        return SimpleNamespace(completions=flat)

    monkeypatch.setattr(pairs_module, "sample", fake)


def test_one_pair_routine_one_row_shape_for_a_reward_function_and_a_judge(monkeypatch):
    rows = [{"prompt": "p1", "answer": "1", "completion": "sft text"}, {"prompt": "p2", "answer": "2"},
            {"prompt": "p3", "answer": "3"}]
    _fake_sample(monkeypatch, {"p1": ["bad 1", "good 1"], "p2": ["good 2", "bad 2"], "p3": ["bad 3", "bad 3b"]})
    block = OmegaConf.create({"max_new_tokens": 4, "temperature": 1.0, "min_margin": 0.0})
    seen = []

    def gold(prompts, completions, answer=None, **columns):
        seen.append(answer)
        return _prefers_good(prompts, completions)

    ranked = pairs_module.preference_rows(None, None, rows, gold, block, seed=0)
    labelled = pairs_module.preference_rows(None, None, rows, RuleJudge(gold), block, seed=0)
    assert seen[0] == ["1", "1", "2", "2", "3", "3"]  # the task columns reach the scorer, one per sample
    for out in (ranked, labelled):  # p3's samples tie: no preference, no row
        assert [(r["prompt"], r["chosen"], r["rejected"], r["answer"]) for r in out] == [
            ("p1", "good 1", "bad 1", "1"), ("p2", "good 2", "bad 2", "2")]
        assert all("completion" not in r for r in out)  # the prompt row's SFT text is not a task column
    assert set(ranked[0]) == {"prompt", "chosen", "rejected", "answer", "score_chosen", "score_rejected", "labeller"}
    assert set(labelled[0]) == {"prompt", "chosen", "rejected", "answer", "p_chosen", "position_consistency",
                                "labeller"}
    assert (ranked[0]["score_chosen"], ranked[0]["score_rejected"]) == (1.0, 0.0) and labelled[0]["p_chosen"] == 1.0
    assert ranked[0]["labeller"] == "gold" and labelled[0]["labeller"] == "rule:gold"
    with pytest.raises(ValueError, match="exactly 2 for a judge"):
        pairs_module.preference_rows(None, None, rows, RuleJudge(gold), OmegaConf.merge(block, {"num_samples": 3}),
                                     seed=0)


def test_pair_routine_stores_the_debiased_soft_label_worked_by_hand(monkeypatch):
    """StubScorer(skill 0.3, bias 0.15) says P("A") = 0.95 with "good" shown first and 0.35 with it second, so
    P(good > bad) = (0.95 + 1 - 0.35) / 2 = 0.8 whichever sample came first; position consistency 1."""
    rows = [{"prompt": "p1", "category": "benign"}, {"prompt": "p2", "category": "harmful"}]
    _fake_sample(monkeypatch, {"p1": ["good one", "bad one"], "p2": ["bad two", "good two"]})
    block = OmegaConf.create({"max_new_tokens": 4, "temperature": 1.0, "min_margin": 0.25})
    out = pairs_module.preference_rows(None, None, rows, PairwiseLogProbJudge(StubScorer(skill=0.3, bias=0.15)),
                                       block, seed=0)
    assert [(r["chosen"], r["rejected"], r["category"]) for r in out] == [
        ("good one", "bad one", "benign"), ("good two", "bad two", "harmful")]
    assert [r["p_chosen"] for r in out] == [pytest.approx(0.8), pytest.approx(0.8)]
    assert all(r["position_consistency"] == 1.0 and r["labeller"] == "pairwise_logprob" for r in out)
    block.min_margin = 0.35  # 0.8 is within 0.35 of 0.5: the judge cannot tell these apart, dropped
    assert pairs_module.preference_rows(None, None, rows, PairwiseLogProbJudge(StubScorer(0.3, 0.15)), block,
                                        seed=0) == []


def test_label_metrics_read_the_trained_labels_against_the_gold():
    """rlaif/labels/gold_agreement: of the pairs the gold separates, the share labelled its way. Hand-built: 3 pairs
    the gold orders as labelled, 1 reversed, 1 tie the gold cannot order (left out): 3 / 4 over 4 separated pairs.
    The gold is called as a diagnostic, so a training stage does not count it among the scorers it trained on."""
    from zoo.rewards import usage
    from zoo.rlaif.judging import label_metrics

    def gold(prompts, completions, **columns):
        return [float(c.count("good")) for c in completions]

    pairs = [{"prompt": "p", "chosen": "good", "rejected": "bad", "p_chosen": 1.0}] * 3 + [
        {"prompt": "p", "chosen": "bad", "rejected": "good good", "p_chosen": 1.0},
        {"prompt": "p", "chosen": "meh", "rejected": "bad", "p_chosen": 1.0}]
    with usage.recording() as calls, usage.training("rlaif"):
        metrics = label_metrics("rlaif", pairs, None, usage.tracked("gold", gold))
    assert metrics["rlaif/labels/gold_agreement"] == 0.75 and metrics["rlaif/labels/gold_separated"] == 4
    assert calls == {}
    assert "rlaif/labels/gold_agreement" not in label_metrics("rlaif", pairs, None)  # no gold, no reading


def test_labels_cli_reads_a_finished_runs_pairs_against_its_gold(tmp_path, capsys):
    """`python -m zoo.rlaif.labels RUN_DIR`: the stage's ai_pairs.jsonl against the run's data.gold (VADER here):
    one pair labelled the gold's way, one against it: 0.5 over 2 separated pairs. A dir that is no run is refused
    with its path, without a traceback."""
    import json

    from zoo.rlaif.labels import main

    run = tmp_path / "run"
    (run / "stages" / "rlaif").mkdir(parents=True)
    (run / "config.yaml").write_text("data:\n  gold: sentiment\n")
    rows = [{"prompt": "The film", "chosen": "is wonderful and I love it.", "rejected": "is awful and I hate it."},
            {"prompt": "The film", "chosen": "is a terrible bore.", "rejected": "is a great joy."}]
    (run / "stages" / "rlaif" / "ai_pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main([str(run)])
    assert "rlaif\tgold_agreement 0.500\t2 of 2 pairs separated by the gold" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no config.yaml; expected a run dir"):
        main([str(tmp_path)])
