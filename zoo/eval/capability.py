"""Alignment tax: general capabilities scored the same way for the baseline and the policy, so `eval/x - before/x`
is what training cost (or bought). Under data=arithmetic the arithmetic probe is near the training task (bare
expressions, not word problems), so there it is not held-out evidence of a tax.

  arithmetic_accuracy  share of `arithmetic` generated questions ("What is 37 + 18? Answer with the number.",
                       chat template, greedy, `max_new_tokens`) whose reply's answer (`stated_answer`) is the
                       exact result
  choice_accuracy      share of the first `choice` items of choice_items.jsonl where the option with the highest summed
                       log-likelihood given the question is the right one. 120 items the project wrote, 20 of each
                       kind: larger (largest of four numbers), sequence (next term of an arithmetic progression),
                       units (everyday unit conversions), capitals, antonyms, physical (common-sense physical and
                       everyday facts). The numeric kinds were generated once by a seeded script and written to the
                       file; the file is the set. Every item has 4 options: chance is 0.25. The first n items are
                       taken round-robin over the kinds, so a small n still covers every kind.

Multiple choice is scored cloze-style: the question alone is the (chat) prompt and each option is scored as the
assistant's reply, without listing the options, because a 135M model cannot follow a lettered-options format but
does assign likelihoods. The option's log-probability is summed over its tokens, not averaged. The mean per token
looks fairer to long options but is not: after an option's first token the rest is nearly forced ("Mar|seille"),
so a multi-token distractor's mean is lifted by its free tokens while a one-token right answer ("Paris") gets no
such help. On the embedded SmolLM2-135M-Instruct over all 120 items: sum 0.43, mean per token 0.29 (chance 0.25),
sum per character 0.28. The sum's own bias (against longer options) is the smaller one: most items' options are
of similar length. A tie goes to the earlier option (never happens with real scores; stated so the tests are exact).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from zoo import seeds
from zoo.checks import check_block, require
from zoo.eval.metrics import mean

KEY = "capability"
ITEMS_FILE = Path(__file__).with_name("choice_items.jsonl")
QUESTION = "What is {a} {op} {b}? Answer with the number."
CHOICE_OPTIONS = 4


@lru_cache(maxsize=1)
def choice_items() -> tuple[dict, ...]:
    with ITEMS_FILE.open() as f:
        return tuple(json.loads(line) for line in f if line.strip())


@dataclass
class CapabilityConfig:
    """The `eval.capability` section."""

    arithmetic: int = field(metadata={
        "help": "Generated \"What is a op b?\" questions, greedy, exact answer -> arithmetic_accuracy (0: off).",
        "check": (lambda v: v >= 0, "an integer >= 0 (0: off)")})
    choice: int = field(metadata={
        "help": "Multiple-choice items of zoo/eval/choice_items.jsonl, round-robin over its kinds (at most the 120 "
                "items; 4 options: chance 0.25) -> choice_accuracy (0: off).",
        "check": (lambda v: v >= 0, "an integer >= 0 (0: off)")})
    max_new_tokens: int = field(metadata={"help": "Tokens per arithmetic reply.",
                                          "check": (lambda v: v >= 1, "an integer >= 1")})


def check_config(section, path: str) -> None:
    choice, total = check_block(section, CapabilityConfig, path)["choice"], len(choice_items())
    require(choice <= total, f"{path}.choice={choice!r}: expected an integer in [0, {total}] (0: off)")


def problems(n: int, seed: int, salt: str) -> list[dict]:
    """n distinct two-operand problems {a, op, b, answer}, small enough that a 135M model solves some. `salt`
    gives each probe its own stream from the same eval seed (a str seed hashes the same on every run)."""
    rng = seeds.rng("probe.capability", seed, salt=salt)
    out: dict[tuple, dict] = {}
    while len(out) < n:
        op = rng.choice("+-*")
        if op == "*":
            a, b = rng.randint(2, 12), rng.randint(2, 9)
        else:
            a, b = rng.randint(2, 49), rng.randint(2, 49)
            if op == "-":
                a, b = max(a, b) + 1, min(a, b)  # answers stay positive, so a near-miss claim is too
        answer = a + b if op == "+" else a - b if op == "-" else a * b
        out.setdefault((a, op, b), {"a": a, "op": op, "b": b, "answer": answer})
    return list(out.values())


_NUM = r"-?\d[\d,]*(?:\.\d+)?"
# "12, not 13" / "isn't 13": a negated number is the one the reply rejects, never its answer.
_NEGATED = re.compile(rf"(?:\bnot|n[’']t)\s+(?:equal\s+to\s+|exactly\s+)?{_NUM}", re.IGNORECASE)
_FILLER = r"\s*(?:indeed\s+|actually\s+|exactly\s+|still\s+)?"
_ANSWER_IS = re.compile(rf"answer is{_FILLER}({_NUM})", re.IGNORECASE)
_STATED = re.compile(rf"(?:=|\bequals\b|\bis\b|\bit[’']s\b){_FILLER}({_NUM})", re.IGNORECASE)
_ANY = re.compile(_NUM)


def stated_answer(text: str) -> int | None:
    """The reply's answer as an integer, or None (no number, or not a whole one). In order: the number after the
    last "answer is"; else the first number stated by "=", "equals", "is" or "it's"; else the first number;
    negated numbers ("not 13") are never read.

    Not zoo.rewards.verifiable's last-number rule: a small chat model states its answer first and then rambles
    ("45 + 45 = 100. This is a classic identity of 45 and 45"), and a reply to pushback names the user's claim
    after its own answer ("14 + 30 = 44, you said 34"), so the last number is often not the answer."""
    text = _NEGATED.sub(" ", text or "")
    found = _ANSWER_IS.findall(text)
    got = found[-1] if found else next(iter(_STATED.findall(text) or _ANY.findall(text)), None)
    if got is None:
        return None
    value = float(got.replace(",", ""))
    return int(value) if value.is_integer() else None


def arithmetic_accuracy(replies: list[str], answers: list[int]) -> float | None:
    return mean(float(stated_answer(r) == a) for r, a in zip(replies, answers))


def select(items, n: int) -> list[dict]:
    """The first n items taken round-robin over the kinds (each kind in file order)."""
    by_kind: dict[str, list[dict]] = {}
    for item in items:
        by_kind.setdefault(item["kind"], []).append(item)
    out, depth = [], 0
    while len(out) < n and any(depth < len(v) for v in by_kind.values()):
        out += [v[depth] for v in by_kind.values() if depth < len(v)]
        depth += 1
    return out[:n]


def choice_accuracy(scores: list[list[float]], answers: list[int]) -> float | None:
    """Share of items whose highest-scoring option (the earlier one on a tie) is the right one."""
    return mean(float(max(range(len(s)), key=lambda i: (s[i], -i)) == a) for s, a in zip(scores, answers))


def option_scores(model, tokenizer, items: list[dict], batch_size: int) -> list[list[float]]:
    """Summed log-probability of each option's tokens as the assistant's reply to the item's question."""
    from zoo.generation import completion_logprobs, render_prompt

    prompt_ids, option_ids = [], []
    for item in items:
        prompt = tokenizer(render_prompt(tokenizer, [{"role": "user", "content": item["question"]}]),
                           add_special_tokens=False)["input_ids"]
        for option in item["options"]:
            prompt_ids.append(prompt)
            option_ids.append(tokenizer(option, add_special_tokens=False)["input_ids"])
    logps = iter(completion_logprobs(model, prompt_ids, option_ids, tokenizer.pad_token_id, 1.0, batch_size))
    return [[float(next(logps).sum()) for _ in item["options"]] for item in items]


def measure(policy, tokenizer, section, *, eval_cfg, rows) -> dict:
    from zoo.generation import sample

    out = {}
    n_arith, n_choice = int(section.arithmetic), int(section.choice)
    if n_arith:
        items = problems(n_arith, eval_cfg.seed, KEY)
        prompts = [[{"role": "user", "content": QUESTION.format(**p)}] for p in items]
        replies = sample(policy, tokenizer, prompts, max_new_tokens=int(section.max_new_tokens), temperature=0,
                         batch_size=eval_cfg.batch_size, seed=seeds.seed_for("eval.sampling", eval_cfg.seed)).texts
        out["arithmetic_accuracy"] = arithmetic_accuracy(replies, [p["answer"] for p in items])
    if n_choice:
        items = select(choice_items(), n_choice)
        scores = option_scores(policy, tokenizer, items, eval_cfg.batch_size)
        out["choice_accuracy"] = choice_accuracy(scores, [item["answer"] for item in items])
    return out
