"""zoo.generation's batching: which rows share a `generate` call and how much left padding that costs (no model
here; tests/test_levers.py samples with trainer.zoo.length_buckets on and off)."""

from __future__ import annotations

from zoo.generation import plan_batches, prompt_padding


def test_batches_in_the_callers_order_by_default():
    assert plan_batches([5, 1, 4, 2, 3], 2) == [[0, 1], [2, 3], [4]]


def test_length_buckets_sort_by_prompt_length_keeping_repeats_together():
    lengths = [9, 9, 2, 2, 5, 5, 1, 1]  # 4 prompts x 2 samples each, in the caller's order
    plan = plan_batches(lengths, 3, by_length=True)
    assert plan == [[6, 7, 2], [3, 4, 5], [0, 1]]  # stable: each prompt's samples stay in their order
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))  # every row once


def test_prompt_padding_counts_left_pad_positions_per_batch():
    lengths = [10, 1, 10, 1]
    assert prompt_padding(lengths, plan_batches(lengths, 2)) == 9 + 9
    assert prompt_padding(lengths, plan_batches(lengths, 2, by_length=True)) == 0
    assert prompt_padding(lengths, plan_batches(lengths, 4)) == 18  # one batch: bucketing cannot help
