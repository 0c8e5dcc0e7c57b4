"""The stage cost every comparison reports (zoo.costs): counted while training, in the same units for every
algorithm, never while measuring."""

from __future__ import annotations

import pytest

from zoo import costs
from zoo.train import run


def test_generated_tokens_stop_at_the_first_eos():
    from zoo.generation import generated_tokens

    # rows of new ids; 2 is EOS: [5, 2 | pad pad] -> 2 tokens, [5, 6, 7, 8] -> 4 (no EOS), [2, ...] -> 1
    assert generated_tokens([[5, 2, 0, 0], [5, 6, 7, 8], [2, 2, 2, 2]], {2}) == 2 + 4 + 1


def test_counts_only_while_metering_and_not_paused():
    costs.add("generated_tokens", 5)  # no meter: dropped
    seen = []
    with costs.metering({"generated_tokens": 3}, on_change=lambda c: seen.append(dict(c))) as counts:
        costs.add("generated_tokens", 4)
        with costs.paused():
            costs.add("generated_tokens", 100)
        costs.steps("round_0", 3)
        costs.steps("round_1", 2)
        costs.steps("round_1", 4)  # a resumed trainer replaces its count
    assert counts["generated_tokens"] == 7
    assert counts["optimizer_steps"] == 3 + 4
    assert seen[0]["generated_tokens"] == 7


@pytest.mark.parametrize("algo, samples, gold", [
    ("dpo", True, True), ("kto", True, True), ("grpo", True, True), ("ppo", True, True),
    ("online_dpo_gold", True, True), ("sft", False, False),
])
def test_each_stage_reports_its_cost(compose, algo, samples, gold):
    """Sampling algorithms report the tokens they generated and the gold-scored completions; SFT neither; the
    final harness (64 held-out completions here would be 4) is not counted."""
    m = run(compose(f"algo={algo}", "data=sentiment", "trainer.max_steps=2", "eval.every_steps=1"))
    stage = algo if algo != "online_dpo_gold" else "online_dpo"
    cost = {k: m[f"{stage}/cost/{k}"] for k in costs.KEYS}
    assert cost["optimizer_steps"] == (2 if algo != "online_dpo_gold" else m[f"{stage}/cost/optimizer_steps"])
    assert cost["optimizer_steps"] >= 2 and cost["seconds"] > 0
    assert (cost["generated_tokens"] > 0) == samples
    assert (cost["gold_scored"] > 0) == gold
    assert cost["scored_completions"] >= cost["gold_scored"]
    assert all(m[f"run/cost/{k}"] == cost[k] for k in costs.KEYS)  # one stage after the start: the run's cost


def test_curve_points_are_not_counted(compose, tmp_path):
    """Measuring along training samples from the policy too; the cost is the same with the curve on or off."""
    on = run(compose("algo=grpo", "data=sentiment", "eval.every_steps=1", output_dir=tmp_path / "on"))
    off = run(compose("algo=grpo", "data=sentiment", output_dir=tmp_path / "off"))
    assert on["grpo/cost/generated_tokens"] == off["grpo/cost/generated_tokens"] > 0


def test_run_cost_counts_the_stages_after_the_baseline(compose):
    m = run(compose("experiment=demo", "model=tiny", "eval.baseline=sft", "stages.sft.args.max_steps=2"))
    assert m["sft/cost/optimizer_steps"] == 2 and m["dpo/cost/optimizer_steps"] == 2
    assert m["run/cost/optimizer_steps"] == 2
    assert m["run/cost/generated_tokens"] == m["dpo/cost/generated_tokens"] > 0
