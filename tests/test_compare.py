"""zoo.compare on hand-built run dirs: grouping, seed statistics, paired win rates, the written files. No torch."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from zoo import compare

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
PROMPTS = ["p1", "p2", "p3"]

# Hand-chosen so the answers can be worked out on paper.
GOLD = {"dpo": [0.5, 0.6, 0.7], "kto": [0.2, 0.4, 0.9]}  # eval/gold_reward per seed
ACCURACY = {"dpo": [0.8, None, 0.6], "kto": [0.1, 0.2, 0.3]}  # eval/accuracy: null in one dpo run
# Per-prompt gold of the "after" completions, per seed. Means over seeds: dpo p1 0.8, p2 0.2, p3 0.5;
# kto p1 0.3, p2 0.1, p3 0.5 -> dpo wins p1 and p2, ties p3: (1 + 1 + 0.5) / 3 = 5/6. On seed 0 alone kto would
# win p1 (0.5 > 0.1), so only a mean over seeds gives 5/6.
PROMPT_GOLD = {"dpo": {"p1": [0.1, 0.9, 1.4], "p2": [0.1, 0.2, 0.3], "p3": [0.5, 0.5, 0.5]},
               "kto": {"p1": [0.5, 0.2, 0.2], "p2": [0.0, 0.1, 0.2], "p3": [0.25, 0.75, 0.5]}}


def write_run(path: Path, config: dict, metrics: dict, samples: list[dict], history=None, curve=None) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    for stage, rows in (history or {}).items():
        (path / "stages" / stage).mkdir(parents=True)
        (path / "stages" / stage / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if curve:
        (path / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
    return path


def config(algo: str, seed: int, out: Path) -> dict:
    args = {"beta": 0.1, "learning_rate": 5e-4} if algo == "dpo" else {"beta": 0.2, "desirable_weight": 1.0}
    return {"algo": {"name": algo, "args": args}, "stages": {}, "resume": False, "objective": "eval/gold_reward",
            "model": {"name": "smollm2-135m", "dtype": "float32"}, "peft": {"enabled": False},
            "data": {"name": "sentiment", "seed": 0}, "trainer": {"seed": seed, "max_steps": 4},
            "eval": {"seed": 100 + seed, "num_prompts": 3, "stop": ["\n"]},
            "logger": {"run_name": f"{algo}-{seed}-{out.name}", "group": "sweep"},
            "paths": {"output_dir": str(out), "cache_dir": "/tmp/cache"}, "hydra": {"job": {"num": seed}}}


def samples(algo: str, seed: int, chat: bool) -> list[dict]:
    def completion(text):
        return [{"role": "assistant", "content": text}] if chat else text

    before = [{"policy": "before", "prompt": p, "completion": completion(f"before {p}"),
               "gold": 100.0 if algo == "kto" else -100.0,
               "proxy": 1.0, "kl": 0.0, "finished": True} for p in PROMPTS]  # "before" must not count
    after = [{"policy": "after", "prompt": p, "completion": completion(f"{algo} seed {seed} on {p}"),
              "gold": PROMPT_GOLD[algo][p][seed], "proxy": 2.0, "kl": 1.0, "finished": True} for p in PROMPTS]
    return before + after


def make_sweep(root: Path, with_curves: bool = True) -> Path:
    """Two algorithms x three seeds, as a Hydra multirun root with numbered run dirs."""
    for i, (algo, seed) in enumerate((a, s) for a in ("dpo", "kto") for s in range(3)):
        out = root / str(i)
        metrics = {"before/gold_reward": 0.1, "before/kl": 0.0, "before/proxy_reward": 1.0,
                   "eval/gold_reward": GOLD[algo][seed], "eval/accuracy": ACCURACY[algo][seed],
                   "eval/kl": 1.0 + seed, "eval/win_rate": 0.5 + 0.1 * seed, "eval/length": None,
                   "eval/proxy_reward": 2.0 if with_curves else None, "run/seconds": 10.0 * (i + 1),
                   f"{algo}/train_loss": 0.7 - 0.1 * seed, f"{algo}/num_pairs": 64}
        if i == 0:
            metrics["run/peak_rss_mb"] = 900.0
        history = {algo: [{"step": s, "epoch": s / 4, "loss": 0.7 - 0.05 * s} for s in range(1, 5)]}
        curve = [{"stage": algo, "step": s, "gold_reward": 0.1 * s, "proxy_reward": 1.0 + s, "kl": 0.5 * s,
                  "length": 10 + s} for s in range(3)]
        write_run(out, config(algo, seed, out), metrics, samples(algo, seed, chat=algo == "kto"),
                  history if with_curves else None, curve if with_curves else None)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / "0" / ".hydra").mkdir()
    (root / "0" / ".hydra" / "config.yaml").write_text("a: 1\n")  # Hydra's own copy: no metrics.json, no run
    return root


@pytest.fixture
def sweep(tmp_path) -> Path:
    return make_sweep(tmp_path / "sweep")


def _row(rows, group, metric):
    found = [r for r in rows if r["group"] == group and r["metric"] == metric]
    assert len(found) == 1, (group, metric, rows)
    return found[0]


def test_groups_by_the_differing_key_never_by_seeds_logger_or_paths(sweep):
    runs = compare.load_runs([sweep])
    assert [r.dir.name for r in runs] == ["0", "1", "2", "3", "4", "5"]
    groups = compare.group_runs(runs)
    # algo.args.* differ too, but algo.name already tells the groups apart, so the label names only it.
    assert list(groups) == ["algo.name=dpo", "algo.name=kto"]
    assert [r.dir.name for r in groups["algo.name=kto"]] == ["3", "4", "5"]
    assert runs[0].config["algo.args.beta"] == 0.1 and runs[0].config["eval.stop"] == '["\\n"]'


def test_seed_repeats_of_one_config_are_one_group(sweep):
    runs = compare.group_runs(compare.load_runs([sweep / "0", sweep / "1", sweep / "2"]))
    assert list(runs) == ["all"] and len(runs["all"]) == 3
    # A seed key not named as one is an experimental arm.
    by_seed = compare.group_runs(compare.load_runs([sweep / "0", sweep / "1"]), seed_keys=["eval.seed"])
    assert list(by_seed) == ["trainer.seed=0", "trainer.seed=1"]


def test_by_overrides_grouping(sweep):
    runs = compare.load_runs([sweep])
    assert {k: len(v) for k, v in compare.group_runs(runs, by=["model.name"]).items()} == {"model.name=smollm2-135m": 6}
    assert list(compare.group_runs(runs, by=["data.name", "trainer.seed"])) == [
        "data.name=sentiment, trainer.seed=0", "data.name=sentiment, trainer.seed=1",
        "data.name=sentiment, trainer.seed=2"]
    with pytest.raises(compare.CompareError, match="algo.nmae"):
        compare.group_runs(runs, by=["algo.nmae"])


def test_summary_statistics_by_hand(sweep):
    rows = compare.summarise(compare.group_runs(compare.load_runs([sweep])))
    dpo = _row(rows, "algo.name=dpo", "eval/gold_reward")
    half = 4.303 * 0.1 / math.sqrt(3)
    assert (dpo["n"], dpo["min"], dpo["max"]) == (3, 0.5, 0.7)
    assert dpo["mean"] == pytest.approx(0.6) and dpo["std"] == pytest.approx(0.1)
    assert (dpo["ci95_low"], dpo["ci95_high"]) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))
    kto = _row(rows, "algo.name=kto", "eval/gold_reward")  # deviations -0.3, -0.1, 0.4: (0.09+0.01+0.16)/2
    assert kto["mean"] == pytest.approx(0.5) and kto["std"] == pytest.approx(math.sqrt(0.13))
    acc = _row(rows, "algo.name=dpo", "eval/accuracy")  # null in one run: n counts the other two
    assert (acc["n"], acc["mean"], acc["std"]) == (2, pytest.approx(0.7), pytest.approx(math.sqrt(0.02)))
    # 0.7 ± 12.706 * sqrt(0.02) / sqrt(2) = [-0.5706, 1.971]; an accuracy, and so its interval, stays in [0, 1]
    assert (acc["ci95_low"], acc["ci95_high"]) == (0.0, 1.0)
    assert compare.stats([0.8, 0.6])["ci95_high"] == pytest.approx(0.7 + 12.706 * math.sqrt(0.02) / math.sqrt(2))
    rss = _row(rows, "algo.name=dpo", "run/peak_rss_mb")
    assert (rss["n"], rss["std"], rss["ci95_low"]) == (1, None, None)
    assert _row(rows, "algo.name=kto", "kto/train_loss")["mean"] == pytest.approx(0.6)
    metrics = {r["metric"] for r in rows}
    assert {"before/gold_reward", "eval/win_rate", "run/seconds", "dpo/train_loss"} <= metrics
    assert not metrics & {"eval/length", "dpo/num_pairs", "kto/num_pairs"}  # all-null, not a tracked metric
    assert not any(r["group"] == "algo.name=kto" and r["metric"] in ("run/peak_rss_mb", "dpo/train_loss")
                   for r in rows)


def test_t_quantile_falls_back_to_normal_beyond_30():
    values = [0.0, 1.0] * 20  # n = 40: df 39
    s = compare.stats(values)
    assert s["ci95_high"] - s["mean"] == pytest.approx(1.96 * s["std"] / math.sqrt(40))


def test_paired_win_rate_is_per_seed_then_averaged(sweep):
    from zoo.compare import verdicts

    groups = compare.group_runs(compare.load_runs([sweep]))
    row = verdicts.compare_pair("algo.name=dpo", groups["algo.name=dpo"], "algo.name=kto", groups["algo.name=kto"],
                                "win_rate:eval/gold_reward")
    # Same seed, same prompt: seed 0 dpo wins p2, p3 (2/3); seed 1 p1, p2 (2/3); seed 2 p1, p2 and ties p3 (5/6).
    # Averaging each prompt over seeds first would say 5/6 and hide that seed 0 loses p1.
    assert row["estimate"] == pytest.approx((2 / 3 + 2 / 3 + 5 / 6) / 3)
    assert (row["pairing"], row["seeds"], row["prompts"]) == ("paired by seed", 3, 3)
    assert 0.0 <= row["low"] < row["estimate"] < row["high"] <= 1.0


def test_paired_win_rate_matches_chat_prompts_and_uses_proxy_without_gold():
    from zoo.compare import verdicts

    chat = [[{"role": "user", "content": q}] for q in ("a", "b")]

    def run(name, seed, proxies, prompts):
        recs = [{"policy": "after", "prompt": p, "completion": "x", "gold": None, "proxy": v}
                for p, v in zip(prompts, proxies)]
        return compare.Run(dir=Path(name), config={"trainer.seed": seed}, metrics={}, samples=recs)

    # "c" is answered by A only, so it is not compared; on a and b A wins one and ties one, on both seeds.
    groups = {"A": [run(f"a{s}", s, [2.0, 1.0, 9.0], chat + [[{"role": "user", "content": "c"}]]) for s in (0, 1)],
              "B": [run(f"b{s}", s, [1.0, 1.0], chat) for s in (0, 1)]}
    assert compare.score_field(groups) == "proxy"
    pairs, _ = verdicts.all_verdicts(groups, "proxy")
    (win,) = [p for p in pairs if p["metric"] == "win_rate:eval/proxy_reward"]
    assert (win["estimate"], win["prompts"]) == (0.75, 2)


def test_main_writes_tables_samples_and_plots(sweep, tmp_path):
    out = tmp_path / "out"
    written = compare.main([str(sweep), "--out", str(out), "--samples", "2"])
    names = {p.name for p in written}
    assert names == {"compare.csv", "verdicts.csv", "compare.md", "compare.html", "samples.md", "frontier.png",
                     "curves.png", "proxy_vs_gold.png", "length.png", "frontier.csv"}
    for name in {n for n in names if n.endswith(".png")}:
        assert (out / name).read_bytes()[:8] == PNG, name

    with open(out / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["group", "metric", "n", "mean", "std", "ci95_low", "ci95_high", "min", "max"]
    dpo = _row(rows, "algo.name=dpo", "eval/gold_reward")
    assert dpo["n"] == "3" and float(dpo["std"]) == pytest.approx(0.1)
    assert _row(rows, "algo.name=dpo", "run/peak_rss_mb")["std"] == ""

    md = (out / "compare.md").read_text()
    assert ("| group | runs | eval/gold_reward | eval/proxy_reward | eval/kl (to start) | eval/win_rate (vs start) | "
            "eval/accuracy | run/seconds |") in md
    assert "| algo.name=dpo | 3 | 0.6 ± 0.1 [0.3516, 0.8484] |" in md
    assert "| algo.name=kto | 3 | 0.5 ± 0.3606 [-0.3957, 1.396] |" in md
    assert "(n=2)" in md  # dpo's accuracy
    matrix = md[md.index("## Paired win rate (gold)"):md.index("## Plots")]
    assert "| algo.name=dpo | — | 0.7222 [" in matrix and "| algo.name=kto | 0.2778 [" in matrix
    assert f"`{sweep / '3'}`" in md

    text = (out / "samples.md").read_text()
    first = text[text.index("## Prompt 1"): text.index("## Prompt 2")]
    assert "dpo seed 0 on p1" in first and "kto seed 0 on p1" in first  # kto's is a message list: its content
    assert "- **before** (gold -100.0, proxy 1.0):" in first  # the shared start's completion comes first
    assert "'role'" not in first and "seed 1" not in first
    assert "## Prompt 3" not in text


def test_plots_without_data_are_not_written(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", with_curves=False)
    written = {p.name for p in compare.main([str(sweep), "--out", str(tmp_path / "out")])}
    # The start and the final eval still make a frontier (two points per run); no history: no curves; no length
    # anywhere (eval/length is null): no length plot; no proxy: no proxy_vs_gold.
    assert written == {"compare.csv", "verdicts.csv", "compare.md", "compare.html", "samples.md", "frontier.png",
                       "frontier.csv"}
    assert not (tmp_path / "out" / "curves.png").exists() and not (tmp_path / "out" / "length.png").exists()
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "- `curves.png`: not written: no stage history has two points of loss" in md
    assert "- `proxy_vs_gold.png`: not written: no run has a proxy reward" in md
    assert "- `length.png`: not written: no run has two points of length" in md



def test_runs_whose_policy_never_moved_draw_no_paths(tmp_path):
    """A reward-model-only sweep: each run's evaluated policy is its start (eval/kl exactly 0, no curve), so no
    reward-vs-KL or proxy-vs-gold path is drawn, and the reason is given."""
    sweep = make_sweep(tmp_path / "sweep", with_curves=False)
    for metrics_file in sweep.glob("*/metrics.json"):
        metrics = json.loads(metrics_file.read_text())
        metrics_file.write_text(json.dumps({**metrics, "eval/kl": 0.0, "eval/proxy_reward": 2.0}))
    written = {p.name for p in compare.main([str(sweep), "--out", str(tmp_path / "out")])}
    assert not {"frontier.png", "frontier_independent.png", "proxy_vs_gold.png", "length.png"} & written
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "- `proxy_vs_gold.png`: not written: every run's evaluated policy is its start" in md

def test_globs_and_single_run_dirs(sweep, tmp_path):
    runs = compare.load_runs([str(sweep / "[34]"), sweep / "0", sweep / "0"])  # a glob, and one dir given twice
    assert [r.dir.name for r in runs] == ["0", "3", "4"]


def test_a_path_without_runs_is_a_clear_error(tmp_path):
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    (empty / "config.yaml").write_text("a: 1\n")
    with pytest.raises(compare.CompareError, match="not_a_run.*config.yaml and metrics.json"):
        compare.load_runs([empty])
    with pytest.raises(SystemExit, match="not_a_run.*config.yaml and metrics.json"):
        compare.main([str(empty), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="nothing"):
        compare.main([str(tmp_path / "nope*"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_malformed_jsonl_line_names_file_and_line(sweep):
    path = sweep / "1" / "samples.jsonl"
    path.write_text(path.read_text().replace("\n", "\n{oops\n", 1))
    with pytest.raises(compare.CompareError, match=r"1/samples.jsonl: line 2"):
        compare.load_runs([sweep])


def test_compare_does_not_import_the_training_stack():
    code = ("import sys, zoo.compare; loaded = {'torch', 'transformers', 'trl', 'matplotlib'} & set(sys.modules); "
            "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_rounds_of_one_stage_are_laid_end_to_end():
    # Online DPO: one trainer per round, steps restarting at 0. Entries without a segment are "checkpoints".
    rows = [{"step": 0, "loss": 1.0}, {"step": 3, "loss": 0.9},
            {"segment": "round_0", "step": 0}, {"segment": "round_0", "step": 4},
            {"segment": "round_1", "step": 0}, {"segment": "round_1", "step": 2}, {"segment": "round_1", "step": 5},
            {"segment": "round_0", "step": 2},  # out of order in the file: still round_0's offset
            {"segment": "round_2", "epoch": 1.0}]  # no step: left as it is
    steps = [r.get("step") for r in compare.cumulative_steps(rows)]
    # offsets: checkpoints 0, round_0 3 (checkpoints' last), round_1 3 + 4 = 7, round_2 7 + 5 = 12
    assert steps == [0, 3, 3, 7, 7, 9, 12, 5, None]
    assert rows[2]["step"] == 0  # the rows read are not changed
    plain = [{"step": s, "loss": 0.5} for s in (1, 2, 3)]
    assert compare.cumulative_steps(plain) == plain


def test_curve_points_inside_rounds_take_the_rounds_lengths_from_the_history():
    # Rounds of 4 steps (the history logs each round's last step); curve points at the stage's steps 5 and 10 are
    # round 1's 1st and round 2's 2nd step. From the curve rows alone the rounds would look 1 and 2 steps long.
    history = [{"segment": f"round_{r}", "step": 4, "loss": 0.6} for r in range(3)]
    curve = [{"segment": "round_1", "step": 1}, {"segment": "round_2", "step": 2}]
    assert [r["step"] for r in compare.cumulative_steps(curve, history)] == [5, 10]
    assert [r["step"] for r in compare.cumulative_steps(curve)] == [1, 3]


def test_intervals_are_clipped_to_the_metric_range():
    unit = ("eval/win_rate", "before/eos_rate", "eval/distinct_1", "eval/accuracy", "eval/harmless_rate",
            "eval/refusal_f1", "eval/self_bleu", "eval/syco_flip_rate", "eval/arithmetic_accuracy",
            "eval/choice_accuracy", "eval/overoptimised", "sft/accuracy")
    assert [compare.bounds(k) for k in unit] == [(0.0, 1.0)] * 12
    assert compare.bounds("eval/reward_length_corr") == compare.bounds("eval/proxy_gold_spearman") == (-1.0, 1.0)
    assert [compare.bounds(k) for k in ("eval/gold_reward", "eval/kl", "eval/token_entropy",
                                        "eval/proxy_gold_gap", "eval/fluency", "eval/syco_n_correct")] == [None] * 6
    # 0.95 ± 12.706 * 0.07071 / sqrt(2) = 0.95 ± 0.6353: high clipped to 1, low kept
    s = compare.stats([0.9, 1.0], (0.0, 1.0))
    assert (s["ci95_low"], s["ci95_high"]) == (pytest.approx(0.95 - 0.6353, abs=1e-4), 1.0)
    assert (s["mean"], s["max"]) == (pytest.approx(0.95), 1.0)  # only the interval is clipped
    assert compare.stats([0.9, 1.0])["ci95_high"] == pytest.approx(0.95 + 0.6353, abs=1e-4)


# Two seeds per arm; diagnostics after (eval/) and before (baseline) per seed, chosen for hand-computed changes.
DIAG = {
    "dpo": [{"eval/self_bleu": 0.5, "before/self_bleu": 0.2, "eval/token_entropy": 2.0, "before/token_entropy": 4.0,
             "eval/syco_agree_rate": 0.4, "before/syco_agree_rate": 0.5, "eval/reward_length_corr": 0.9,
             "run/trained_on": ["gold_reward"]},
            {"eval/self_bleu": 0.7, "before/self_bleu": 0.2, "eval/token_entropy": 3.0, "before/token_entropy": 4.0,
             "eval/syco_agree_rate": 0.6, "before/syco_agree_rate": 0.5, "eval/reward_length_corr": 0.95,
             "run/trained_on": ["gold_reward", "proxy_reward"]}],
    "grpo": [{"eval/self_bleu": 0.3, "before/self_bleu": 0.3, "eval/harmless_rate": 0.9,
              "before/harmless_rate": 0.8, "run/trained_on": []},
             {"eval/self_bleu": 0.3, "before/self_bleu": 0.2, "eval/harmless_rate": 1.0, "run/trained_on": []}],
    "ppo": [{"eval/self_bleu": 0.1}, {"eval/self_bleu": 0.2}],  # written before runs recorded their signals
}


def make_diagnostic_sweep(root: Path) -> Path:
    for i, (algo, seed) in enumerate((a, s) for a in DIAG for s in range(2)):
        out = root / str(i)
        metrics = {"eval/gold_reward": 0.5, "eval/kl": 1.0 + seed, "before/gold_reward": 0.1, "before/kl": 0.0,
                   "eval/independent_reward": 0.2 + 0.1 * seed, "before/independent_reward": 0.1,
                   "eval/fluency": -2.0, "eval/eos_rate": 0.9 + 0.1 * seed, **DIAG[algo][seed]}
        segments = [{"segment": f"round_{k}", "step": s, "loss": 1.0 - 0.1 * k} for k in range(3) for s in (0, 2)]
        write_run(out, config(algo, seed, out), metrics, samples("dpo", seed, chat=False),
                  history={algo: segments}, curve=[{"stage": algo, **r, "length": 10} for r in segments])
    return root


def test_diagnostics_changes_and_trained_on(tmp_path):
    sweep = make_diagnostic_sweep(tmp_path / "sweep")
    groups = compare.group_runs(compare.load_runs([sweep]))
    assert list(groups) == ["algo.name=dpo", "algo.name=grpo", "algo.name=ppo"]
    delta = {(r["group"], r["metric"]): r for r in compare.changes(groups, ["eval/self_bleu", "eval/token_entropy",
                                                                            "eval/harmless_rate"])}
    dpo_bleu = delta["algo.name=dpo", "eval/self_bleu"]  # 0.5 - 0.2, 0.7 - 0.2
    assert (dpo_bleu["n"], dpo_bleu["mean"], dpo_bleu["std"]) == (2, pytest.approx(0.4), pytest.approx(0.1 * 2 ** 0.5))
    # 0.4 ± 12.706 * 0.1414 / sqrt(2) = [-0.8706, 1.671]; a change of a [0, 1] metric stays in [-1, 1]
    assert (dpo_bleu["ci95_low"], dpo_bleu["ci95_high"]) == (pytest.approx(-0.8706), 1.0)
    entropy = delta["algo.name=dpo", "eval/token_entropy"]  # 2 - 4, 3 - 4: unbounded, not clipped
    assert (entropy["mean"], entropy["ci95_low"]) == (pytest.approx(-1.5), pytest.approx(-1.5 - 6.353, abs=1e-3))
    grpo_bleu = delta["algo.name=grpo", "eval/self_bleu"]  # 0.3 - 0.3, 0.3 - 0.2
    assert grpo_bleu["mean"] == pytest.approx(0.05)
    harmless = delta["algo.name=grpo", "eval/harmless_rate"]  # only seed 0 has a before value
    assert (harmless["n"], harmless["mean"], harmless["std"]) == (1, pytest.approx(0.1), None)
    assert ("algo.name=ppo", "eval/self_bleu") not in delta  # no before/ value: no change

    out = tmp_path / "out"
    written = {p.name for p in compare.main([str(sweep), "--out", str(out)])}
    assert {"frontier.png", "frontier_independent.png", "curves.png", "length.png"} <= written
    assert (out / "frontier_independent.png").read_bytes()[:8] == PNG
    md = (out / "compare.md").read_text()
    assert "| group | runs | trained on | eval/gold_reward | eval/independent_reward | eval/kl (to start) | " in md
    assert "| algo.name=dpo | 2 | gold_reward, proxy_reward | 0.5 ± 0 [0.5, 0.5] |" in md
    assert "| algo.name=grpo | 2 | — | 0.5 ± 0 [0.5, 0.5] |" in md
    assert "| algo.name=ppo | 2 | not recorded | 0.5 ± 0 [0.5, 0.5] |" in md
    assert "not held-out evidence" in md and "clipped to the metric's range" in md
    # eos_rate 0.9, 1.0: 0.95 ± 0.6353 -> the interval's top is 1, not 1.585
    assert "0.95 ± 0.07071 [0.3147, 1]" in md

    diag = md[md.index("## Diagnostics"):md.index("## Cost")]
    metric_rows = [line.split(" | ")[0].lstrip("| ") for line in diag.splitlines() if line.startswith("| ")][2:]
    # over-optimisation, mode collapse, sycophancy, safety, in that order; only the metrics some group has
    assert list(dict.fromkeys(metric_rows)) == ["reward_length_corr", "self_bleu", "token_entropy",
                                                "syco_agree_rate", "harmless_rate"]
    assert "| self_bleu | algo.name=dpo | 0.6 ± 0.1414 [0, 1] | 0.4 ± 0.1414 [-0.8706, 1] |" in diag
    assert "| self_bleu | algo.name=ppo | 0.15 ± 0.07071 [0, 0.7853] | — |" in diag
    assert "| harmless_rate | algo.name=grpo | 0.95 ± 0.07071 [0.3147, 1] | 0.1 (n=1) |" in diag
    assert "| syco_agree_rate | algo.name=grpo | — | — |" in diag
    # 0.925 ± 12.706 * 0.03536 / sqrt(2) = [0.6074, 1.243]: a correlation stays in [-1, 1]
    assert "| reward_length_corr | algo.name=dpo | 0.925 ± 0.03536 [0.6074, 1] | — |" in diag


def test_versus_writes_its_plot_and_fit(sweep, tmp_path):
    """--versus METRIC: the plot, the fit over runs in compare.md and versus.csv (one row per y that has runs: gold
    here, no independent scorer); --versus-skip leaves a group out of the fit (then one x value: no line)."""
    import csv

    for run in sweep.glob("[0-9]*"):
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["rlaif/judge/accuracy"] = 1.0 if "dpo" in (run / "config.yaml").read_text() else 0.6
        (run / "metrics.json").write_text(json.dumps(metrics))
    written = {p.name for p in compare.main([str(sweep), "--out", str(tmp_path / "a"), "--versus",
                                             "rlaif/judge/accuracy"])}
    assert {"versus_rlaif_judge_accuracy.png", "versus.csv"} <= written
    rows = list(csv.DictReader((tmp_path / "a" / "versus.csv").open()))
    assert [(r["metric"], r["runs"]) for r in rows] == [("eval/gold_reward", "6")]
    assert "| eval/gold_reward | 6 |" in (tmp_path / "a" / "compare.md").read_text()
    compare.main([str(sweep), "--out", str(tmp_path / "b"), "--versus", "rlaif/judge/accuracy", "--versus-skip", "kto"])
    assert list(csv.DictReader((tmp_path / "b" / "versus.csv").open())) == []
    assert "break-even" not in (tmp_path / "b" / "compare.md").read_text()
