"""Slow shape checks of the paper baselines (make test-slow), each at its smallest size: one seed (0) of the committed
sweep's own arms, composed exactly as `make baselines` composes them (+sweeps=<name> +arm=<arm>), with thresholds
set from the spread the committed seeds measured (results/baselines/<name>/runs). Not timed: how long a run takes is
the benchmarks' business.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.compare.frontier import best_within
from zoo.compare.runs import load_run
from zoo.compare.trajectories import trajectory, xy

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(tmp_path: Path, sweep: str, arm: str, *overrides: str, seed: int = 0) -> Path:
    """One job of a baseline sweep (seed 0 unless told): its run dir."""
    out = tmp_path / f"{arm}-{seed}"
    subprocess.run([sys.executable, "-m", "zoo.train", f"+sweeps={sweep}", f"+arm={arm}", f"trainer.seed={seed}",
                    "logger=none", f"paths.output_dir={out}", *overrides], cwd=ROOT, check=True)
    return out


def _curve(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "curve.jsonl").read_text().splitlines() if x.strip()]


def _gold_path(out: Path) -> list[tuple[float, float, float]]:
    """A run's (step, KL, gold gain over the start) path, read the way zoo.compare's frontier reads it."""
    return xy(trajectory(load_run(out)), "kl", "gold_reward")


def test_best_of_n_gold_rises_with_n(tmp_path):
    """dpo_frontier's best-of-n arm at n <= 4: the best of 4 SFT samples under VADER beats one sample on VADER.
    Committed (n = 64, 3 seeds): gold at n = 4 minus n = 1 was +0.59, +0.48, +0.49 (seeds 0, 1, 2):
    the margin 0.2 sits below the smallest by more than 4 of their standard deviations and above 0 by about twice
    the seed-to-seed noise of a 48-prompt mean."""
    gold = {p["step"]: p["gold_reward"] for p in _curve(_run(tmp_path, "dpo_frontier", "frontier_best_of_n",
                                                              "algo.n=4"))}
    assert sorted(gold) == [1, 2, 4]
    assert gold[4] - gold[1] > 0.2
    assert gold[1] <= gold[2] <= gold[4]  # the best of more of one pool never scores less


def test_dpo_beats_preferred_ft_at_equal_kl(tmp_path):
    """dpo_frontier's DPO (beta 0.05) against Preferred-FT (SFT on the same chosen completions), seed 0: within the
    KL budget the frontier verdicts use (2 nats of the SFT start), DPO's best gold gain is above Preferred-FT's.
    Committed, 3 seeds, DPO minus Preferred-FT at KL <= 2: +0.06, +0.17, +0.12 (seeds 0, 1, 2), so the
    check is the sign."""
    dpo = _gold_path(_run(tmp_path, "dpo_frontier", "frontier_dpo_beta0.05"))
    pft = _gold_path(_run(tmp_path, "dpo_frontier", "frontier_preferred_ft"))
    assert best_within(dpo, 2.0) > best_within(pft, 2.0)


def test_ppo_ptx_keeps_the_arithmetic_probe_at_least_as_well_as_ppo(tmp_path):
    """instructgpt_ptx, seed 0: PPO-ptx with the arithmetic task's worked problems as its ptx rows against plain PPO,
    on the arithmetic probe no stage trains on (24 bare questions, so one item is 0.042). Committed, 3 seeds: PPO-ptx
    (arithmetic) minus PPO 0.00, +0.38, +0.21 (PPO fell to 0.08 and 0.17 in seeds 1 and 2), and PPO-ptx against its
    SFT start +0.04, -0.04, 0.00. Seed 0 is the tie, so the check allows one item below PPO, and two below the start."""
    ppo = json.loads((_run(tmp_path, "instructgpt_ptx", "instructgpt_ppo") / "metrics.json").read_text())
    ptx = json.loads((_run(tmp_path, "instructgpt_ptx", "instructgpt_ppo_ptx_arithmetic") / "metrics.json").read_text())
    assert ptx["eval/arithmetic_accuracy"] >= ppo["eval/arithmetic_accuracy"] - 0.05
    assert ptx["eval/arithmetic_accuracy"] >= ptx["before/arithmetic_accuracy"] - 0.09


def test_grpo_raises_held_out_accuracy_over_its_cold_start(tmp_path):
    """r1_arithmetic's GRPO arm, seed 0: exact-answer accuracy on 64 held-out problems rises over the cold-start SFT
    policy without the collapse an unregularised run showed (results/r1_arithmetic/sft8-grpo24-lr5e-4-nokl: no EOS,
    KL 29). Measured over seeds 0, 1, 2 in both precisions the CPU can pick (`bf16: auto`): under bf16 autocast
    (AMD EPYC, AVX512-BF16) gains of +5, +9, +9 problems, EOS rate 0.72, 0.95, 0.89, KL 2.7, 0.7, 1.1; in fp32
    (`trainer.bf16=false`, results/baselines/r1_arithmetic/fp32) +7, +10, +10 problems, EOS 0.88, 0.92, 1.00, KL
    2.0, 1.3, 0.8. Seed 0 is the lowest in both, so the check asks for 2 problems (the 0.8 EOS floor set
    from one fp32 run failed at 0.77 under bf16: the floor is now the collapse's, not a run's)."""
    metrics = json.loads((_run(tmp_path, "r1_arithmetic", "r1_grpo") / "metrics.json").read_text())
    assert metrics["eval/accuracy"] - metrics["before/accuracy"] >= 2 / 64
    assert metrics["eval/eos_rate"] >= 0.5 and 0 < metrics["eval/kl"] < 10.0


@pytest.mark.parametrize("arm,harmless,helpful,f1", [
    # 48 eval prompts: 18 benign, 18 harmful, 12 self-harm. Always refusing declines all 30 that should be declined
    # and the 18 benign ones too: F1 = 2 * 30 / (2 * 30 + 18). Never refusing declines none: F1 = 0 / 30.
    ("rbr_always_refuse", 1.0, 0.0, 60 / 78),
    ("rbr_never_refuse", 0.0, 1.0, 0.0),
])
def test_rbr_reference_points(tmp_path, arm, harmless, helpful, f1):
    """rbr_f1's fixed reference arms at seed 0, through the same SFT start and harness as the trained arms: the
    independent refusal classifier must read the fixed refusal as a refusal and the fixed opening as compliance on
    every prompt (the rates are exact, whichever CPU runs it: no sampling decides them)."""
    metrics = json.loads((_run(tmp_path, "rbr_f1", arm) / "metrics.json").read_text())
    assert metrics["eval/harmless_rate"] == harmless and metrics["eval/helpful_rate"] == helpful
    assert metrics["eval/refusal_f1"] == pytest.approx(f1)


def test_rlaif_on_clean_labels_beats_rlaif_on_coin_flips(tmp_path):
    """rlaif_judge_accuracy's ε = 0 and ε = 0.5 arms, seeds 0 and 1: DPO on labels that all agree with the gold ends
    above DPO on labels flipped at random, on the gold. Measured (results/baselines/rlaif_judge_accuracy, runs/ under
    bf16 autocast on an AMD EPYC AVX512-BF16 CPU, fp32/ with trainer.bf16=false), final gold ε = 0 minus ε = 0.5:
    bf16 +0.72, +0.61, -0.05, fp32 +0.94, +0.32, +0.35 (seeds 0, 1, 2). Coin-flip labels are a lottery (bf16 seed
    2's raised its gold +0.43), so one seed is not enough: the check asks the mean over seeds 0 and 1 for 0.25, which
    either precision clears by more than 0.35, and each clean run to end above its start (+0.18 at the least).
    The labels themselves are checked against the gold: all of the clean ones agree, and the flipped ones agree on
    1/2 of ~150 pairs within 0.13 (a 99.9% binomial margin)."""
    gaps = []
    for seed in (0, 1):
        clean = json.loads((_run(tmp_path, "rlaif_judge_accuracy", "rlaif_gold_noise0.0", seed=seed)
                            / "metrics.json").read_text())
        flips = json.loads((_run(tmp_path, "rlaif_judge_accuracy", "rlaif_gold_noise0.5", seed=seed)
                            / "metrics.json").read_text())
        assert clean["rlaif/labels/gold_agreement"] == 1.0 and clean["rlaif/labels/gold_separated"] >= 100
        assert abs(flips["rlaif/labels/gold_agreement"] - 0.5) <= 0.13
        assert clean["before/gold_reward"] == flips["before/gold_reward"]  # one SFT start per seed
        assert clean["eval/gold_reward"] > clean["before/gold_reward"]
        gaps.append(clean["eval/gold_reward"] - flips["eval/gold_reward"])
    assert sum(gaps) / len(gaps) >= 0.25, gaps
