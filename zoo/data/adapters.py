"""Map public dataset schemas onto the dataset formats TRL trainers read.

Users bring the public files as they are (HH-RLHF transcripts, UltraFeedback message lists, TL;DR
comparisons, GSM8K answers). Each adapter checks every row and stops at the first bad one with
"<source>: row <n>: ..." naming the key and what was expected, because a half-converted dataset
fails later, inside a trainer, with no hint of which file or row caused it.
"""

from __future__ import annotations

import re
from numbers import Real
from typing import Callable

from zoo.data.io import DataError, Row


class _RowError(Exception):
    """Raised inside a row check; the adapter loop adds the source and row number."""


def _adapt(rows: list[Row], source: str, one: Callable[[dict], dict]) -> list[dict]:
    out = []
    for n, row in rows:
        try:
            if not isinstance(row, dict):
                raise _RowError(f"expected an object, got {type(row).__name__}")
            out.append(one(row))
        except _RowError as e:
            raise DataError(f"{source}: row {n}: {e}") from None
    if not out:
        raise DataError(f"no usable rows in {source}")
    return out


def _get(row: dict, key: str, kind: type, expected: str):
    if key not in row or row[key] is None:
        raise _RowError(f"missing key {key!r} (expected {expected})")
    value = row[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _RowError(f"{key!r} is {type(value).__name__}, expected {expected}")
    return value


# --- HH-RLHF -------------------------------------------------------------------------------

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


def _hh_turns(text: str, key: str) -> list[dict]:
    # Some re-exports strip the leading "\n\n"; put it back so the first turn splits like the rest.
    parts = _HH_TURN.split("\n\n" + text.lstrip())
    if parts[0].strip() or len(parts) < 3:
        raise _RowError(f"{key!r} is not an Anthropic transcript (expected text made of "
                        "'\\n\\nHuman: ...' and '\\n\\nAssistant: ...' turns)")
    return [{"role": _HH_ROLE[parts[i]], "content": parts[i + 1].strip()}
            for i in range(1, len(parts), 2)]


def _hh_row(row: dict) -> dict:
    sides = {}
    for key in ("chosen", "rejected"):
        turns = _hh_turns(_get(row, key, str, "an Anthropic transcript string"), key)
        if turns[-1]["role"] != "assistant":
            raise _RowError(f"{key!r} ends with a Human turn, expected a final Assistant turn")
        if len(turns) < 2:
            raise _RowError(f"{key!r} has no Human turn before the final Assistant turn")
        sides[key] = turns
    prompt, other = sides["chosen"][:-1], sides["rejected"][:-1]
    if prompt != other:
        diff = next((i for i, (a, b) in enumerate(zip(prompt, other)) if a != b),
                    min(len(prompt), len(other)))
        raise _RowError("'chosen' and 'rejected' differ before their final Assistant turn "
                        f"(first at turn {diff + 1}); expected the same conversation")
    return {"prompt": prompt, "chosen": sides["chosen"][-1:], "rejected": sides["rejected"][-1:]}


def adapt_hh_rlhf(rows: list[Row], source: str) -> list[dict]:
    """Anthropic HH-RLHF transcripts -> conversational preference rows (shared prompt turns)."""
    return _adapt(rows, source, _hh_row)


# --- UltraFeedback (HuggingFaceH4/ultrafeedback_binarized) ----------------------------------

def _messages(row: dict, key: str) -> list[dict]:
    value = _get(row, key, list, "a list of {role, content} messages")
    out = []
    for i, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise _RowError(
                f"{key}[{i}] is not a message (expected {{'role': str, 'content': str}})")
        out.append({"role": m["role"], "content": m["content"]})
    if len(out) < 2 or out[-1]["role"] != "assistant":
        raise _RowError(f"{key!r} must hold the prompt messages then a final assistant message")
    return out


def _score(row: dict, key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise _RowError(f"{key!r} is {type(value).__name__}, expected a number or null")
    return float(value)


def _ultrafeedback_row(row: dict) -> dict:
    chosen, rejected = _messages(row, "chosen"), _messages(row, "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise _RowError("'chosen' and 'rejected' differ before their final assistant message; "
                        "expected the same prompt messages")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:],
            "score_chosen": _score(row, "score_chosen"),
            "score_rejected": _score(row, "score_rejected")}


def adapt_ultrafeedback(rows: list[Row], source: str) -> list[dict]:
    """UltraFeedback binarized message lists -> conversational preference rows with scores."""
    return _adapt(rows, source, _ultrafeedback_row)


# --- TL;DR (openai/summarize-from-feedback comparisons) -------------------------------------

def _tldr_row(row: dict) -> dict:
    info = _get(row, "info", dict, "an object with post, title, subreddit")
    post = info.get("post") or info.get("article")  # CNN/DM comparisons carry 'article' instead
    if not isinstance(post, str) or not post.strip():
        raise _RowError("missing key 'info.post' (expected the post text, or 'info.article')")
    summaries = _get(row, "summaries", list, "a list of 2 summaries")
    if len(summaries) != 2:
        raise _RowError(f"'summaries' has {len(summaries)} items, expected 2")
    texts = []
    for i, s in enumerate(summaries):
        text = s.get("text") if isinstance(s, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise _RowError(f"summaries[{i}] has no 'text' (expected a non-empty summary string)")
        texts.append(" " + text.strip())
    choice = _get(row, "choice", int, "0 or 1")
    if choice not in (0, 1):
        raise _RowError(f"'choice' is {choice}, expected 0 or 1")
    lines = []
    if info.get("subreddit"):
        lines.append(f"SUBREDDIT: r/{info['subreddit']}")
    if info.get("title"):
        lines.append(f"TITLE: {info['title']}")
    lines += [f"POST: {post.strip()}", "TL;DR:"]
    return {"prompt": "\n".join(lines), "chosen": texts[choice], "rejected": texts[1 - choice]}


def adapt_tldr(rows: list[Row], source: str) -> list[dict]:
    """Summarize-from-feedback comparisons -> plain-text preference rows ending in 'TL;DR:'."""
    return _adapt(rows, source, _tldr_row)


# --- GSM8K -----------------------------------------------------------------------------------

_CALC = re.compile(r"<<[^<>]*>>")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _gsm8k_row(row: dict) -> dict:
    question = _get(row, "question", str, "the problem text")
    answer = _get(row, "answer", str, "reasoning ending in '#### <number>'")
    if "####" not in answer:
        raise _RowError("'answer' has no '####' (expected reasoning ending in '#### <number>')")
    reasoning, final = answer.rsplit("####", 1)
    number = final.strip().replace(",", "")
    if not _NUMBER.fullmatch(number):
        raise _RowError(
            f"'answer' ends with '#### {final.strip()}', expected a number after '####'")
    reasoning = _CALC.sub("", reasoning).strip()
    content = f"{reasoning}\nThe answer is {number}." if reasoning else f"The answer is {number}."
    return {"prompt": [{"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": content}],
            "answer": number}


def adapt_gsm8k(rows: list[Row], source: str) -> list[dict]:
    """GSM8K question/answer -> conversational prompt-completion rows plus the bare answer."""
    return _adapt(rows, source, _gsm8k_row)


# --- TRL's own formats --------------------------------------------------------------------------


def _trl_row(row: dict) -> dict:
    if row.get("prompt") in (None, "", []):
        raise _RowError("missing key 'prompt' (expected a string or a list of messages)")
    if ("chosen" in row) != ("rejected" in row):
        raise _RowError("expected 'completion' (SFT), 'chosen' and 'rejected' (preferences), or the prompt alone "
                        "(online algorithms); got only one of chosen/rejected")
    if "label" in row:  # unpaired preference rows (KTO): a completion marked desirable or not
        if "completion" not in row:
            raise _RowError("a row with 'label' (unpaired preferences, KTO) needs a 'completion'")
        if not isinstance(row["label"], bool):
            raise _RowError(f"'label' must be true (desirable) or false (undesirable), got {row['label']!r}")
    return dict(row)


def adapt_trl(rows: list[Row], source: str) -> list[dict]:
    """Rows already in a TRL format (e.g. the zoo's own cai_sft.jsonl / cai_pairs.jsonl), checked and passed on: a
    prompt with a completion, with chosen and rejected, with a completion and a boolean label (unpaired, KTO), or
    alone (prompt-only rows for PPO, GRPO, RLOO, online DPO; an algorithm that needs more says so)."""
    return _adapt(rows, source, _trl_row)


ADAPTERS: dict[str, Callable[[list[Row], str], list[dict]]] = {
    "trl": adapt_trl,
    "hh_rlhf": adapt_hh_rlhf,
    "ultrafeedback": adapt_ultrafeedback,
    "tldr": adapt_tldr,
    "gsm8k": adapt_gsm8k,
}
