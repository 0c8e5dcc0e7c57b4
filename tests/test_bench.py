"""The benchmark drivers' arithmetic (the benches themselves run with `make bench`, not in the test suite)."""

from __future__ import annotations

import pytest

from bench.dpo import alternating
from bench.grpo import per_token_s


def test_sides_alternate_order_between_repeats():
    assert list(alternating(("zoo", "trl"), 3)) == [(0, "zoo"), (0, "trl"), (1, "trl"), (1, "zoo"),
                                                     (2, "zoo"), (2, "trl")]


def test_time_per_generated_token():
    # 8 sequences of mean length 20 in 4 s -> 4 / 160 s per token; an iteration with no tokens is skipped.
    assert per_token_s([4.0, 2.0, 1.0], [20.0, 10.0, 0.0], batch=8) == pytest.approx([0.025, 0.025])


def test_paired_ratio_per_iteration_index():
    from bench.grpo import WARMUP, paired_ratios

    pad = [99.0] * WARMUP  # warm-up iterations are dropped
    zoo = [{"interval_s": pad + [2.0, 4.0]}, {"interval_s": pad + [4.0, 4.0]}]
    trl = [{"interval_s": pad + [3.0, 2.0]}, {"interval_s": pad + [3.0, 6.0]}]
    assert paired_ratios(zoo, trl) == pytest.approx([1.0, 1.0])  # (2+4)/2 / 3 and (4+4)/2 / 4
