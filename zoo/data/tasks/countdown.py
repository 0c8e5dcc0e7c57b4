"""Countdown: reach a target with the given numbers, each used once, with + - * / and parentheses.

Rows carry `numbers` and `target`; the verifier (zoo.rewards.countdown) checks answers exactly.
"""

from __future__ import annotations

import random
from fractions import Fraction

from zoo import seeds

INSTRUCTION = ("Using the numbers {numbers}, each at most once, and + - * / with parentheses, write an expression "
               "equal to {target}. Think in <think> </think>, then give only the expression in <answer> </answer>.")


def _random_expression(rng: random.Random, numbers: list[int]) -> tuple[str, Fraction]:
    values = [(str(n), Fraction(n)) for n in numbers]
    while len(values) > 1:
        (ea, va), (eb, vb) = values.pop(rng.randrange(len(values))), values.pop(rng.randrange(len(values)))
        op = rng.choice("+-*" + ("/" if vb != 0 and (va / vb).denominator == 1 else ""))
        value = {"+": va + vb, "-": va - vb, "*": va * vb, "/": va / vb if vb else va}[op]
        values.append((f"({ea} {op} {eb})", value))
    return values[0]


def rows(n: int, seed: int, count: int = 3) -> list[dict]:
    rng = seeds.rng("task.rows", seed)
    out: dict[str, dict] = {}
    for _ in range(50 * n):
        if len(out) >= n:
            break
        numbers = [rng.randint(1, 25) for _ in range(count)]
        expression, value = _random_expression(rng, numbers[:])
        if value.denominator != 1 or not 0 < value <= 500:
            continue
        target = int(value)
        prompt = [{"role": "user", "content": INSTRUCTION.format(numbers=numbers, target=target)}]
        completion = [{"role": "assistant",
                       "content": f"<think>{expression[1:-1]} = {target}</think> <answer>{expression[1:-1]}</answer>"}]
        out.setdefault(str(prompt), {"prompt": prompt, "completion": completion, "numbers": numbers,
                                     "target": target})
    return list(out.values())
