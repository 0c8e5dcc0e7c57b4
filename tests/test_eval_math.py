"""The harness's math checked by hand, and the generation/log-prob plumbing with pad == eos."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.eval.metrics import distinct_n, mean, sequence_kl, win_rate
from zoo.generation import completion_logprobs, sample, truncate_at_eos


def test_sequence_kl_by_hand():
    p = [torch.tensor([math.log(0.5), math.log(0.25)]), torch.tensor([math.log(0.9)])]
    q = [torch.tensor([math.log(0.25), math.log(0.25)]), torch.tensor([math.log(0.3)])]
    got = sequence_kl(p, q)
    assert got[0] == pytest.approx(math.log(2))
    assert got[1] == pytest.approx(math.log(3))


def test_distinct_n_by_hand():
    toks = [[1, 2, 3, 1], [1, 2]]
    assert distinct_n(toks, 1) == pytest.approx(3 / 6)
    assert distinct_n(toks, 2) == pytest.approx(3 / 4)  # (1,2) (2,3) (3,1) | (1,2)
    assert distinct_n([[]], 2) == 0.0


def test_win_rate_and_mean():
    assert win_rate([1.0, 0.0, 0.5, None], [0.0, 1.0, 0.5, 2.0]) == pytest.approx(0.5)
    assert win_rate([None], [None]) is None
    assert mean([1, None, 2]) == 1.5 and mean([None]) is None


def test_truncate_at_eos_keeps_eos():
    assert truncate_at_eos([5, 6, 2, 2, 2], {2}) == ([5, 6, 2], True)
    assert truncate_at_eos([5, 6], {2}) == ([5, 6], False)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    from zoo.models import load_tokenizer
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(str(tiny_dir))
    assert tok.pad_token_id == tok.eos_token_id  # the corner case these tests exist for
    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval(), tok


def test_batched_greedy_matches_single(tiny):
    model, tok = tiny
    prompts = ["The plot of Ember", "A much longer prompt about the acting in Night Train and its"]
    batched = sample(model, tok, prompts, max_new_tokens=6, temperature=0, batch_size=2)
    for i, p in enumerate(prompts):
        single = sample(model, tok, [p], max_new_tokens=6, temperature=0, batch_size=1)
        assert single.completion_ids[0] == batched.completion_ids[i]


def test_completion_logprobs_by_hand(tiny):
    model, tok = tiny
    prompt, completion = [5, 6, 7], [8, tok.eos_token_id]
    got = completion_logprobs(model, [prompt, [9]], [completion, [10, 11, 12]], tok.pad_token_id, temperature=2.0)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0] / 2.0
    logp = torch.log_softmax(logits, -1)
    expected = torch.stack([logp[2, 8], logp[3, tok.eos_token_id]])
    assert torch.allclose(got[0], expected, atol=1e-5)
    assert got[1].shape == (3,)  # a shorter, right-padded neighbour in the batch does not shift anything


def test_conversational_prompt_uses_chat_template(tiny):
    model, tok = tiny
    s = sample(model, tok, [[{"role": "user", "content": "hi"}]], max_new_tokens=3, temperature=0)
    assert tok.decode(s.prompt_ids[0]).endswith("<|im_start|>assistant\n")
    assert isinstance(s.completions[0], list) and s.completions[0][0]["role"] == "assistant"
