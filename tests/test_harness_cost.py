"""What the harness computes once: the frozen baseline's forward over a policy's samples serves both fluency
(temperature 1) and the KL's reference (the sampling temperature), and the accuracy column reuses the gold when
the gold is the exact-answer accuracy. Each metric is checked against the separate calls the harness used to make
(fp32, tiny model, the same batches, so equal exactly)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from zoo.eval import harness
from zoo.eval.metrics import mean, sequence_kl
from zoo.generation import as_text, completion_logprobs, completion_logprobs_at, sample


@pytest.fixture(scope="module")
def models(tiny_dir):
    from transformers import AutoModelForCausalLM

    from zoo.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_dir))
    baseline = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    policy = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a policy that differs from its baseline, so the KL is not 0
        for p in policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return baseline, policy, tokenizer


def _eval_cfg(temperature: float = 0.7):
    return OmegaConf.create({"num_prompts": 6, "max_new_tokens": 6, "temperature": temperature, "top_p": 1.0,
                             "batch_size": 4, "seed": 3, "baseline": "start"})


def _rows():
    from zoo.data.tasks import arithmetic

    return arithmetic.rows(6, seed=0)


def test_several_temperatures_equal_one_call_each(models):
    baseline, policy, tokenizer = models
    done = sample(policy, tokenizer, [r["prompt"] for r in _rows()], max_new_tokens=6, temperature=0.7,
                  batch_size=4, seed=1)
    args = (done.prompt_ids, done.completion_ids, tokenizer.pad_token_id)
    together = completion_logprobs_at(baseline, *args, (1.0, 0.7), 4)
    for temperature, got in zip((1.0, 0.7), together):
        alone = completion_logprobs(baseline, *args, temperature, 4)
        assert len(got) == len(alone)
        assert all(torch.equal(a, b) for a, b in zip(got, alone))


def _counting_scorer_forwards(monkeypatch):
    """{id(model): forward passes the scoring helpers ran}; sampling (generate) is not counted."""
    import zoo.generation as generation

    calls: dict[int, int] = {}
    real = generation.logits_at

    def counted(model, *args, **kwargs):
        calls[id(model)] = calls.get(id(model), 0) + 1
        return real(model, *args, **kwargs)

    monkeypatch.setattr(generation, "logits_at", counted)
    return calls


def test_frozen_baseline_runs_once_per_completion_batch(models, monkeypatch):
    baseline, policy, tokenizer = models
    calls = _counting_scorer_forwards(monkeypatch)
    harness.evaluate(policy, tokenizer, _rows(), _eval_cfg(0.7), reference=baseline)
    batches = 2  # 6 completions in batches of 4
    assert calls[id(baseline)] == batches  # fluency at T=1 and the KL's reference at T=0.7: one forward
    assert calls[id(policy)] == batches  # the policy's own log-probs for the KL


def test_one_pass_gives_the_metrics_of_separate_calls(models):
    """fluency and kl as the harness computed them before (a forward per temperature), from the same samples."""
    baseline, policy, tokenizer = models
    cfg = _eval_cfg(0.7)
    got = harness.evaluate(policy, tokenizer, _rows(), cfg, reference=baseline)["metrics"]
    done = sample(policy, tokenizer, [r["prompt"] for r in _rows()], max_new_tokens=cfg.max_new_tokens,
                  temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.batch_size,
                  seed=harness.seeds.seed_for("eval.sampling", cfg.seed))
    args = (done.prompt_ids, done.completion_ids, tokenizer.pad_token_id)
    fluency = mean(float(t.mean()) for t in completion_logprobs(baseline, *args, 1.0, cfg.batch_size) if len(t))
    kl = mean(sequence_kl(completion_logprobs(policy, *args, 0.7, cfg.batch_size),
                          completion_logprobs(baseline, *args, 0.7, cfg.batch_size)))
    assert got["eval/fluency"] == fluency
    assert got["eval/kl"] == kl and kl != 0.0


def test_temperature_one_and_no_reference_score_once(models, monkeypatch):
    baseline, policy, tokenizer = models
    calls = _counting_scorer_forwards(monkeypatch)
    harness.evaluate(policy, tokenizer, _rows(), _eval_cfg(1.0), reference=baseline)
    assert calls == {id(baseline): 2, id(policy): 2}
    calls.clear()
    harness.evaluate(baseline, tokenizer, _rows(), _eval_cfg(0.7))  # the before column: fluency only
    assert calls == {id(baseline): 2}


def test_accuracy_column_reuses_an_accuracy_gold(models, monkeypatch):
    from zoo import rewards
    from zoo.rewards import verifiable

    baseline, policy, tokenizer = models
    calls = []
    real = verifiable.accuracy_reward

    def counted(prompts, completions, **columns):
        calls.append(len(completions))
        return real(prompts, completions, **columns)

    monkeypatch.setattr(harness, "accuracy_reward", counted)
    monkeypatch.setitem(rewards.REWARDS, "accuracy", counted)
    gold = rewards.get("accuracy")  # tracked, as a run builds it
    monkeypatch.setattr(harness, "_is_accuracy", lambda fn: getattr(fn, "fn", None) is counted)
    got = harness.evaluate(policy, tokenizer, _rows(), _eval_cfg(0.7), gold_fn=gold)["metrics"]
    assert calls == [6]  # the gold's call; the accuracy column is the same numbers
    assert got["eval/accuracy"] == got["eval/gold_reward"]
    calls.clear()
    other = harness.evaluate(policy, tokenizer, _rows(), _eval_cfg(0.7),
                             gold_fn=lambda p, c, **k: [0.5] * len(c))["metrics"]
    assert calls == [6] and other["eval/accuracy"] == got["eval/accuracy"]  # another gold: accuracy scored itself


def test_answer_format_rate_counts_the_completions_that_state_an_answer(models, monkeypatch):
    baseline, policy, tokenizer = models
    seen = []

    def every_other(text):  # the tiny model never writes "The answer is": count the calls' texts instead
        seen.append(text)
        return len(seen) % 2 == 0

    monkeypatch.setattr(harness, "states_answer", every_other)
    result = harness.evaluate(policy, tokenizer, _rows(), _eval_cfg(0.7))
    assert result["metrics"]["eval/answer_format_rate"] == 0.5  # 3 of the 6 completions
    assert seen == [as_text(r["completion"]) for r in result["records"]]


def test_is_accuracy_recognises_the_registered_gold():
    from zoo import rewards

    assert harness._is_accuracy(rewards.get("accuracy"))
    assert not harness._is_accuracy(rewards.get("sentiment")) and not harness._is_accuracy(None)
