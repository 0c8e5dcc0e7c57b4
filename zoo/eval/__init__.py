"""The evaluation harness: the same held-out prompts, decoding and metrics for every algorithm."""

from zoo.eval.harness import HARNESS_KEYS, check_eval_config, evaluate, evaluate_columns, format_table

__all__ = ["HARNESS_KEYS", "check_eval_config", "evaluate", "evaluate_columns", "format_table"]
