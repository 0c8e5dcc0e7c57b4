"""Countdown: reach a target with the given numbers, each used once, with + - * / and parentheses.

The verifier parses the expression (no eval): only the listed numbers, each at most as often as given,
exact rational arithmetic, and the value must equal the target.
"""

from __future__ import annotations

import ast
import random
from fractions import Fraction

from zoo.generation import as_text

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
    rng = random.Random(seed)
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


def evaluate_expression(expression: str, numbers: list[int]) -> Fraction | None:
    """Value of `expression` if it is well formed and uses only `numbers` (each at most once), else None."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        return None
    available = list(numbers)

    def value(node):
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            if node.value not in available:
                raise ValueError("number not available")
            available.remove(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            a, b = value(node.left), value(node.right)
            if isinstance(node.op, ast.Div):
                if b == 0:
                    raise ValueError("division by zero")
                return a / b
            return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}[type(node.op)]
        raise ValueError(f"not allowed: {type(node).__name__}")

    try:
        return value(tree)
    except (ValueError, RecursionError):
        return None


def countdown_reward(prompts, completions, numbers=None, target=None, **columns) -> list[float | None]:
    """1.0 when the <answer> expression uses only the given numbers and equals the target, else 0.0."""
    from zoo.rewards.reasoning import answer_text

    if numbers is None or target is None:
        return [None] * len(completions)
    out = []
    for completion, nums, goal in zip(completions, numbers, target):
        got = evaluate_expression(answer_text(as_text(completion) or ""), list(nums))
        out.append(1.0 if got is not None and got == goal else 0.0)
    return out
