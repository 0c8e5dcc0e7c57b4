"""The Countdown verifier: the <answer> expression must reach the row's `target` with its `numbers`.

The expression is parsed, never evaluated: only the listed numbers, each at most as often as given, + - * /
and parentheses, in exact rational arithmetic.
"""

from __future__ import annotations

import ast
from fractions import Fraction

from zoo.generation import as_text
from zoo.rewards.reasoning import answer_text


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
    if numbers is None or target is None:
        return [None] * len(completions)
    out = []
    for completion, nums, goal in zip(completions, numbers, target):
        got = evaluate_expression(answer_text(as_text(completion) or ""), list(nums))
        out.append(1.0 if got is not None and got == goal else 0.0)
    return out
