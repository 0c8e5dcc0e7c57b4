"""Adapters and row readers on small hand-written rows in each public schema."""

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zoo.data import io as zio
from zoo.data.adapters import (
    ADAPTERS,
    adapt_gsm8k,
    adapt_hh_rlhf,
    adapt_tldr,
    adapt_trl,
    adapt_ultrafeedback,
)
from zoo.data.io import DataError, load_hub_rows, read_rows

FIXTURES = Path(__file__).parent / "fixtures"


def load(name, adapter):
    path = str(FIXTURES / name)
    return adapter(read_rows(path), path)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# --- readers -----------------------------------------------------------------------------------

def test_jsonl_rows_are_numbered_by_line_and_skip_blank_lines():
    rows = read_rows(str(FIXTURES / "hh_rlhf.jsonl"))
    assert [n for n, _ in rows] == [1, 2, 4, 5]
    assert all(isinstance(r, dict) for _, r in rows)


def test_json_list_file():
    rows = read_rows(str(FIXTURES / "gsm8k_list.json"))
    assert [n for n, _ in rows] == [1, 2]
    assert rows[1][1]["question"] == "Half of 9?"


def test_json_object_with_one_list_key(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 2, "data": [{"a": 1}, {"a": 2}]}))
    assert read_rows(str(path)) == [(1, {"a": 1}), (2, {"a": 2})]


def test_json_object_with_two_list_keys_is_an_error(tmp_path):
    path = tmp_path / "ambiguous.json"
    path.write_text(json.dumps({"train": [{"a": 1}], "test": [{"a": 2}]}))
    with pytest.raises(DataError, match="ambiguous.json.*list-valued"):
        read_rows(str(path))


def test_parquet_file(tmp_path):
    rows = [{"question": "What is 1 + 1?", "answer": "1 + 1 = <<1+1=2>>2\n#### 2"},
            {"question": "What is 2 * 3?", "answer": "2 * 3 = <<2*3=6>>6\n#### 6"}]
    path = tmp_path / "gsm8k.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    read = read_rows(str(path))
    assert read == [(1, rows[0]), (2, rows[1])]
    assert adapt_gsm8k(read, str(path))[1]["answer"] == "6"


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n\n{"question": "q", "answer": \n')
    with pytest.raises(DataError, match=r"broken\.jsonl: line 3: invalid JSON"):
        read_rows(str(path))


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "list_line.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"list_line\.jsonl: line 2: expected a JSON object"):
        read_rows(str(path))


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file"):
        read_rows(str(path))


def test_unsupported_extension_lists_supported(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("question,answer\n")
    with pytest.raises(DataError) as e:
        read_rows(str(path))
    msg = str(e.value)
    assert "rows.csv" in msg and ".csv" in msg
    assert all(ext in msg for ext in (".jsonl", ".json", ".parquet"))


# --- hh_rlhf -----------------------------------------------------------------------------------

def test_hh_rlhf_single_turn():
    out = load("hh_rlhf.jsonl", adapt_hh_rlhf)
    assert len(out) == 4
    assert out[0] == {
        "prompt": [user("What is a good name for a goldfish?")],
        "chosen": [assistant("How about Bubbles? It is short and cheerful.")],
        "rejected": [assistant("Fish don't need names.")],
    }


def test_hh_rlhf_multi_turn():
    out = load("hh_rlhf.jsonl", adapt_hh_rlhf)
    assert out[1] == {
        "prompt": [
            user("How long should I boil an egg?"),
            assistant("Do you want it soft or hard?"),
            user("Hard, please."),
        ],
        "chosen": [assistant("About ten minutes, then cool it in cold water.")],
        "rejected": [assistant("One minute is enough.")],
    }


def test_hh_rlhf_empty_final_response_is_valid():
    out = load("hh_rlhf.jsonl", adapt_hh_rlhf)
    assert out[2]["chosen"] == [assistant("")]
    assert out[2]["rejected"] == [assistant("Sure, the address is ...")]


def test_hh_rlhf_escaped_json_style():
    # The pandas-style line with \u escapes parses to the same kind of row.
    out = load("hh_rlhf.jsonl", adapt_hh_rlhf)
    assert out[3]["rejected"] == [assistant("Yes, always.\u00a0Eat as much as you like.")]


def test_hh_rlhf_missing_key(tmp_path):
    path = write_jsonl(tmp_path / "hh_bad.jsonl", [
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go"},
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello"},
    ])
    with pytest.raises(DataError, match=r"hh_bad\.jsonl: row 2: missing key 'rejected'"):
        adapt_hh_rlhf(read_rows(path), path)


def test_hh_rlhf_final_turn_must_be_assistant(tmp_path):
    path = write_jsonl(tmp_path / "hh_human_last.jsonl", [
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye",
         "rejected": "\n\nHuman: hi\n\nAssistant: go"},
    ])
    with pytest.raises(DataError, match=r"hh_human_last\.jsonl: row 1: 'chosen' ends with a Human"):
        adapt_hh_rlhf(read_rows(path), path)


def test_hh_rlhf_prompts_must_match(tmp_path):
    path = write_jsonl(tmp_path / "hh_mismatch.jsonl", [
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hey\n\nAssistant: go"},
    ])
    with pytest.raises(DataError, match=r"hh_mismatch\.jsonl: row 1: 'chosen' and 'rejected' differ"):
        adapt_hh_rlhf(read_rows(path), path)


def test_hh_rlhf_not_a_transcript(tmp_path):
    path = write_jsonl(tmp_path / "hh_plain.jsonl", [{"chosen": "hello", "rejected": "go"}])
    with pytest.raises(DataError, match=r"hh_plain\.jsonl: row 1: 'chosen' is not an Anthropic"):
        adapt_hh_rlhf(read_rows(path), path)


# --- ultrafeedback -----------------------------------------------------------------------------

def test_ultrafeedback_row():
    out = load("ultrafeedback.jsonl", adapt_ultrafeedback)
    assert len(out) == 3
    assert out[0] == {
        "prompt": [user("Name a primary colour.")],
        "chosen": [assistant("Red is a primary colour.")],
        "rejected": [assistant("Green.")],
        "score_chosen": 8.5,
        "score_rejected": 4.0,
    }
    assert isinstance(out[0]["score_rejected"], float)
    assert out[2]["score_chosen"] is None and out[2]["score_rejected"] is None


def test_ultrafeedback_missing_key(tmp_path):
    path = write_jsonl(tmp_path / "uf_bad.jsonl", [
        {"prompt": "p", "chosen": [user("p"), assistant("a")], "rejected": [user("p"), assistant("b")]},
        {"prompt": "p", "chosen": [user("p"), assistant("a")]},
    ])
    with pytest.raises(DataError, match=r"uf_bad\.jsonl: row 2: missing key 'rejected'"):
        adapt_ultrafeedback(read_rows(path), path)


def test_ultrafeedback_last_message_must_be_assistant(tmp_path):
    path = write_jsonl(tmp_path / "uf_user_last.jsonl", [
        {"chosen": [assistant("a"), user("p")], "rejected": [user("p"), assistant("b")]},
    ])
    with pytest.raises(DataError, match=r"uf_user_last\.jsonl: row 1: 'chosen' must .*final assistant"):
        adapt_ultrafeedback(read_rows(path), path)


def test_ultrafeedback_bad_message_and_prompt_mismatch(tmp_path):
    path = write_jsonl(tmp_path / "uf_msg.jsonl", [
        {"chosen": [user("p"), {"role": "assistant"}], "rejected": [user("p"), assistant("b")]},
    ])
    with pytest.raises(DataError, match=r"uf_msg\.jsonl: row 1: chosen\[1\] is not a message"):
        adapt_ultrafeedback(read_rows(path), path)
    path = write_jsonl(tmp_path / "uf_diff.jsonl", [
        {"chosen": [user("p"), assistant("a")], "rejected": [user("q"), assistant("b")]},
    ])
    with pytest.raises(DataError, match=r"uf_diff\.jsonl: row 1: 'chosen' and 'rejected' differ"):
        adapt_ultrafeedback(read_rows(path), path)


# --- tldr --------------------------------------------------------------------------------------

def test_tldr_row():
    out = load("tldr.jsonl", adapt_tldr)
    assert len(out) == 3
    assert out[0] == {
        "prompt": "SUBREDDIT: r/relationships\nTITLE: Roommate eats my food\n"
                  "POST: My roommate keeps eating my leftovers even though I label them. "
                  "I asked him twice to stop.\nTL;DR:",
        "chosen": " roommate eats my labelled food, asked twice, what next?",
        "rejected": " I like food.",
    }


def test_tldr_choice_one_picks_second_summary():
    out = load("tldr.jsonl", adapt_tldr)
    assert out[1]["chosen"] == " a year in, barre chords still buzz; looking for practice tips"
    assert out[1]["rejected"] == " guitar is hard"


def test_tldr_cnndm_article_without_subreddit_or_title():
    out = load("tldr.jsonl", adapt_tldr)
    assert out[2]["prompt"] == (
        "POST: The city council voted on Tuesday to extend the riverside park by two kilometres."
        "\nTL;DR:"
    )


def test_tldr_missing_key(tmp_path):
    good = json.loads((FIXTURES / "tldr.jsonl").read_text().splitlines()[0])
    bad = dict(good)
    del bad["choice"]
    path = write_jsonl(tmp_path / "tldr_bad.jsonl", [good, good, bad])
    with pytest.raises(DataError, match=r"tldr_bad\.jsonl: row 3: missing key 'choice'"):
        adapt_tldr(read_rows(path), path)


def test_tldr_missing_post_and_bad_choice(tmp_path):
    good = json.loads((FIXTURES / "tldr.jsonl").read_text().splitlines()[0])
    no_post = {**good, "info": {"id": "x", "title": "t", "subreddit": "s"}}
    path = write_jsonl(tmp_path / "tldr_nopost.jsonl", [no_post])
    with pytest.raises(DataError, match=r"tldr_nopost\.jsonl: row 1: missing key 'info\.post'"):
        adapt_tldr(read_rows(path), path)
    path = write_jsonl(tmp_path / "tldr_choice.jsonl", [{**good, "choice": 2}])
    with pytest.raises(DataError, match=r"tldr_choice\.jsonl: row 1: 'choice' is 2"):
        adapt_tldr(read_rows(path), path)


# --- gsm8k -------------------------------------------------------------------------------------

def test_gsm8k_row():
    out = load("gsm8k.jsonl", adapt_gsm8k)
    assert len(out) == 3
    assert out[0] == {
        "prompt": [user("Tom has 3 boxes with 4 apples each. How many apples does he have?")],
        "completion": [assistant("Tom has 3 * 4 = 12 apples.\nThe answer is 12.")],
        "answer": "12",
    }


def test_gsm8k_thousands_commas_and_negative():
    out = load("gsm8k.jsonl", adapt_gsm8k)
    assert out[1]["answer"] == "30200"
    assert out[1]["completion"][0]["content"] == (
        "In 30 days it sells 1000 * 30 = 30000 pens.\n"
        "With the extra it sells 30000 + 200 = 30200 pens.\n"
        "The answer is 30200."
    )
    assert out[2]["answer"] == "-2"


def test_gsm8k_from_json_list():
    out = load("gsm8k_list.json", adapt_gsm8k)
    assert [r["answer"] for r in out] == ["11", "4.5"]
    assert out[0]["completion"][0]["content"] == "5 + 6 = 11\nThe answer is 11."


def test_gsm8k_missing_hashes(tmp_path):
    path = write_jsonl(tmp_path / "gsm_bad.jsonl", [
        {"question": "q", "answer": "1 + 1 = 2\n#### 2"},
        {"question": "q", "answer": "1 + 1 = 2"},
    ])
    with pytest.raises(DataError, match=r"gsm_bad\.jsonl: row 2: 'answer' has no '####'"):
        adapt_gsm8k(read_rows(path), path)


def test_gsm8k_missing_key(tmp_path):
    path = write_jsonl(tmp_path / "gsm_nokey.jsonl", [{"question": "q"}])
    with pytest.raises(DataError, match=r"gsm_nokey\.jsonl: row 1: missing key 'answer'"):
        adapt_gsm8k(read_rows(path), path)


# --- shared behaviour --------------------------------------------------------------------------

def test_registry():
    assert ADAPTERS == {"hh_rlhf": adapt_hh_rlhf, "ultrafeedback": adapt_ultrafeedback,
                        "tldr": adapt_tldr, "gsm8k": adapt_gsm8k, "trl": adapt_trl}


def test_trl_passthrough(tmp_path):
    rows = [(1, {"prompt": "p", "completion": " c"}), (2, {"prompt": [{"role": "user", "content": "q"}],
                                                          "chosen": "a", "rejected": "b"})]
    assert adapt_trl(rows, "x.jsonl") == [r for _, r in rows]
    with pytest.raises(DataError, match=r"x.jsonl: row 3: expected 'completion'.*only one of chosen/rejected"):
        adapt_trl([(3, {"prompt": "p", "chosen": "a"})], "x.jsonl")
    assert adapt_trl([(5, {"prompt": "p", "answer": "4"})], "x.jsonl") == [{"prompt": "p", "answer": "4"}]
    with pytest.raises(DataError, match=r"row 4: missing key 'prompt'"):
        adapt_trl([(4, {"completion": "c"})], "x.jsonl")


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_empty_result_is_an_error(tmp_path, name):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(DataError, match=r"no usable rows in .*empty\.jsonl"):
        ADAPTERS[name](read_rows(str(path)), str(path))


def test_load_hub_rows_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(DataError) as e:
        load_hub_rows("Anthropic/hh-rlhf", "test")
    assert time.monotonic() - start < 5
    assert "Anthropic/hh-rlhf" in str(e.value) and "data.path=" in str(e.value)


def test_load_hub_rows_fails_fast_unreachable(monkeypatch):
    # A port nothing listens on stands in for an unreachable hub, without touching the network.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    assert zio.hub_reachable(timeout=1.0) is False
    with pytest.raises(DataError, match="127.0.0.1:9.*data.path="):
        load_hub_rows("trl-lib/tldr", "train")
    assert time.monotonic() - start < 5
