"""Arithmetic word problems with an exact integer answer: a verifiable-reward task that runs offline."""

from __future__ import annotations

import random

from zoo import seeds

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena"]
ITEMS = ["apples", "books", "coins", "marbles", "pencils", "stickers", "shells", "cards"]


def _problem(rng: random.Random) -> tuple[str, str, int]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(2, 40), rng.randint(2, 20), rng.randint(2, 9)
    kind = rng.randrange(3)
    if kind == 0:
        q = f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?"
        return q, f"{a} + {b} = {a + b}.", a + b
    if kind == 1:
        a = a + b  # keep the answer positive
        q = f"{name} has {a} {item} and gives away {b}. How many {item} are left?"
        return q, f"{a} - {b} = {a - b}.", a - b
    q = f"{name} has {c} boxes with {b} {item} in each and {a} loose {item}. How many {item} in total?"
    return q, f"{c} * {b} = {c * b}, and {c * b} + {a} = {c * b + a}.", c * b + a


def rows(n: int, seed: int) -> list[dict]:
    """Conversational prompt, worked completion and the exact `answer` column, n distinct questions."""
    rng = seeds.rng("task.rows", seed)
    out: dict[str, dict] = {}
    for _ in range(50 * n):
        if len(out) >= n:
            break
        q, work, ans = _problem(rng)
        out.setdefault(q, {
            "prompt": [{"role": "user", "content": q}],
            "completion": [{"role": "assistant", "content": f"{work} The answer is {ans}."}],
            "answer": str(ans),
        })
    if len(out) < n:
        raise ValueError(f"the arithmetic task could only make {len(out)} distinct problems; asked for {n}")
    return list(out.values())


def sft_rows(n: int, seed: int) -> list[dict]:
    """Flat text rows, used to train the tiny test tokenizer."""
    return [{"prompt": r["prompt"][0]["content"] + "\n", "completion": r["completion"][0]["content"]}
            for r in rows(n, seed)]


def preference_rows(n: int, seed: int) -> list[dict]:
    """Correct worked answer (chosen) against the same work with an off-by-k final number (rejected)."""
    rng = seeds.rng("task.wrong_answers", seed)
    out = []
    for r in rows(n, seed):
        right = r["completion"][0]["content"]
        wrong_ans = int(r["answer"]) + rng.choice([-3, -2, -1, 1, 2, 3])
        wrong = right.rsplit("The answer is", 1)[0] + f"The answer is {wrong_ans}."
        out.append({"prompt": r["prompt"], "chosen": r["completion"],
                    "rejected": [{"role": "assistant", "content": wrong}], "answer": r["answer"]})
    return out
