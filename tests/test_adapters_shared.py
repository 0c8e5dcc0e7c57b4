"""Adapters on real public rows in ../shared/data, which only the project's own machines have.

The hand-written fixtures show the adapters do what we meant; these show that what we meant
matches what the public files really contain (escapes, empty responses, tied scores, commas).
"""

import math
from pathlib import Path

import pytest

from zoo.data.adapters import adapt_gsm8k, adapt_hh_rlhf, adapt_tldr, adapt_ultrafeedback
from zoo.data.io import read_rows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not present (not in user clones)"),
]


def adapt(name, adapter):
    path = str(SHARED / name)
    rows = read_rows(path)
    out = adapter(rows, path)
    assert len(out) == len(rows)  # every row adapts; none silently dropped
    return out


def mostly_different(out):
    same = sum(r["chosen"] == r["rejected"] for r in out)
    assert same <= max(1, len(out) // 50), f"{same} of {len(out)} rows have chosen == rejected"


def test_hh_rlhf_shared():
    out = adapt("hh_rlhf.jsonl", adapt_hh_rlhf)
    assert len(out) == 200
    for r in out:
        assert r["prompt"] and r["prompt"][0]["role"] == "user" and r["prompt"][-1]["role"] == "user"
        assert all(m["content"] for m in r["prompt"])
        assert [m["role"] for m in r["chosen"] + r["rejected"]] == ["assistant", "assistant"]
    # Turn counts from the README: 1 turn in 52 rows, 2 in 68, 3 in 43, 4 in 26, 5 in 10, 6 in 1.
    turns = sorted(sum(m["role"] == "user" for m in r["prompt"]) for r in out)
    assert [turns.count(k) for k in range(1, 7)] == [52, 68, 43, 26, 10, 1]
    mostly_different(out)


@pytest.mark.parametrize("name, count", [
    ("ultrafeedback_binarized.jsonl", 16),
    ("ultrafeedback_binarized_rebuilt.jsonl", 100),
])
def test_ultrafeedback_shared(name, count):
    out = adapt(name, adapt_ultrafeedback)
    assert len(out) == count
    for r in out:
        assert [m["role"] for m in r["prompt"]] == ["user"] and r["prompt"][0]["content"]
        assert isinstance(r["score_chosen"], float) and isinstance(r["score_rejected"], float)
        assert r["score_chosen"] >= r["score_rejected"]
    mostly_different(out)


def test_gsm8k_shared():
    out = adapt("gsm8k.jsonl", adapt_gsm8k)
    assert len(out) == 200
    assert out[0]["answer"] == "18"
    for r in out:
        content = r["completion"][0]["content"]
        assert r["prompt"][0]["content"]
        assert "<<" not in content and ">>" not in content and "####" not in content
        assert content.endswith(f"\nThe answer is {r['answer']}.")
        assert "," not in r["answer"] and math.isfinite(float(r["answer"]))


def test_tldr_shared():
    (r,) = adapt("tldr_comparisons.readme_example.jsonl", adapt_tldr)
    assert r["prompt"].startswith(
        "SUBREDDIT: r/legaladvice\n"
        "TITLE: Anybody with knowledge of the Dutch law around ? car accident questions.\n"
        "POST: I had a car accident on friday,"
    )
    assert r["prompt"].endswith("help would be appeciated on this :)\nTL;DR:")
    assert r["chosen"].startswith(" we suspect other party")  # choice 1
    assert r["rejected"].startswith(" car accident caused me")
