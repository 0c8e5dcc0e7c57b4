"""zoo.compare's plot data: each run's path from the shared start (points per run, in step order, online rounds on
one step axis), one curves panel per (stage, metric) with a shared stage drawn once, and titles and axis labels
read from the runs' configs (checked on the figures as saved). No torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zoo import compare
from zoo.compare import plots
from zoo.compare.curves import SHARED, panels
from zoo.compare.trajectories import group_mean, xy

from test_compare_report import START_GOLD, make_new_sweep, write_new_run  # tests/ is on sys.path under pytest


@pytest.fixture
def groups(tmp_path):
    return compare.group_runs(compare.load_runs([make_new_sweep(tmp_path / "sweep")]))


def test_each_run_goes_from_the_start_through_its_curve_to_the_final_harness(groups):
    run = groups["algo=dpo"][1]  # seed 1
    points = compare.trajectory(run)
    assert [(p["stage"], p["step"]) for p in points] == [("start", 0), ("dpo", 5), ("dpo", 10), ("dpo", 15),
                                                         ("final", 20)]
    assert [(x, y) for _, x, y in xy(points, "kl", "gold_reward")] == [
        (0.0, START_GOLD[1]), (0.5, pytest.approx(0.3 + 0.41 / 4)), (1.0, pytest.approx(0.3 + 0.41 / 2)),
        (1.5, pytest.approx(0.3 + 0.41 * 3 / 4)), (3.0, 0.71)]
    # Online DPO's rounds restart their steps; on the path they follow each other (round k's step 5 is 5 (k + 1)).
    online = compare.trajectory(groups["algo=online_dpo_gold"][0])
    assert [p["step"] for p in online] == [0, 5, 10, 15, 20]


def test_the_group_mean_has_an_interval_on_both_axes(groups):
    mean = group_mean(groups["algo=dpo"], "kl", "gold_reward")
    assert [p["step"] for p in mean] == [0, 5, 10, 15, 20] and [p["n"] for p in mean] == [3] * 5
    final = mean[-1]
    assert (final["x"], final["y"]) == (pytest.approx(3.0), pytest.approx(0.71))  # KL 2, 3, 4; gold .70 .71 .72
    half = 4.303 * 1.0 / 3 ** 0.5
    assert (final["x_low"], final["x_high"]) == (pytest.approx(3 - half), pytest.approx(3 + half))
    assert mean[0]["x_low"] == mean[0]["x_high"] == 0.0  # the start's KL to itself


def test_a_run_with_fewer_than_two_points_is_left_out(tmp_path):
    path = write_new_run(tmp_path / "sweep" / "0", "dpo", 0)
    write_new_run(tmp_path / "sweep" / "1", "dpo", 1)
    (path / "curve.jsonl").unlink()
    metrics = (path / "metrics.json").read_text().replace('"before/independent_reward": 0.05, ', "")
    (path / "metrics.json").write_text(metrics)
    groups = compare.group_runs(compare.load_runs([tmp_path / "sweep"]))
    kept, short = plots.frontier_runs(groups, "kl", "independent_reward")
    assert [r.dir.name for r in short] == ["0"] and [r.dir.name for r in kept["all"]] == ["1"]
    kept, short = plots.frontier_runs(groups, "kl", "gold_reward")  # start and final: two points, kept
    assert not short


def test_curves_one_panel_per_stage_and_metric_shared_stage_once(groups):
    found, left_out = panels(groups, ["loss", "grad_norm"])
    assert [(stage, metric) for stage, metric, _ in found] == [("sft", "loss"), ("dpo", "loss"),
                                                               ("online_dpo", "loss"), ("ppo", "loss")]
    assert left_out == ["sft: grad_norm", "dpo: grad_norm", "online_dpo: grad_norm", "ppo: grad_norm"]
    sft = found[0][2]
    assert list(sft) == [SHARED] and [r.config["trainer.seed"] for r in sft[SHARED]] == [0, 1, 2]
    assert list(found[2][2]) == ["algo=online_dpo_gold"]


def test_titles_and_axis_labels_come_from_the_configs(tmp_path, monkeypatch):
    import matplotlib.figure

    saved = {}
    original = matplotlib.figure.Figure.savefig

    def record(fig, path, *args, **kwargs):
        axes = [ax for ax in fig.axes if ax.get_visible()]
        saved[path.name] = {"title": fig._suptitle.get_text() if fig._suptitle else axes[0].get_title(),
                            "x": axes[0].get_xlabel(), "y": axes[0].get_ylabel(), "axes": len(axes),
                            "faint": sum(line.get_alpha() == 0.25 for ax in axes for line in ax.lines),
                            "paths": sum(line.get_linewidth() == 1.8 for ax in axes for line in ax.lines)}
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    compare.main([str(make_new_sweep(tmp_path / "sweep")), "--out", str(tmp_path / "out")])
    assert set(saved) == {"frontier.png", "frontier_independent.png", "curves.png", "length.png"}
    for name, fig in saved.items():
        assert ("sentiment: trainer.max_steps=20 per stage after sft, 3 seeds per group, 8 held-out prompts"
                in fig["title"]), name
    frontier = saved["frontier.png"]
    assert frontier["x"].startswith("KL to the sft policy (eval.baseline=sft)")
    assert frontier["y"] == "gold reward (data.gold=sentiment; trained on by every run)"
    assert saved["frontier_independent.png"]["y"] == (
        "independent reward (data.independent=textblob; trained on by no run)")
    assert (frontier["faint"], frontier["paths"]) == (9, 3)  # each run's path faint, each group's mean path bold
    assert saved["length.png"]["x"] == "optimizer steps after the sft policy (eval.baseline=sft)"
    assert saved["curves.png"]["axes"] == 4


def _with_reward_model_stage(run_dir: Path, pairs_steps: int, recorded: bool) -> None:
    """Make the run SFT -> RM -> its algorithm, the RM stage `pairs_steps` long (one epoch over a seed's pairs)."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["stages"]["rm"] = {"name": "rm", "args": {}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / "stages" / "rm").mkdir()
    rows = [{"segment": "checkpoints", "step": s, "loss": 0.6} for s in range(1, pairs_steps + 1)]
    (run_dir / "stages" / "rm" / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if recorded:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        metrics.update({"sft/produces": "policy", "rm/produces": "reward_model", "ppo/produces": "policy"})
        (run_dir / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.parametrize("recorded", [True, False])  # False: runs written before `<stage>/produces` existed
def test_a_reward_model_stage_takes_no_steps_and_seeds_pair_by_place(tmp_path, recorded):
    """PPO's RM stage trains no policy: the path's steps count the policy's steps only, and the seed mean pairs
    each seed's k-th curve point even where an earlier stage's length differed between seeds."""
    for seed, pairs_steps in enumerate((28, 26, 28)):
        _with_reward_model_stage(write_new_run(tmp_path / "sweep" / str(seed), "ppo", seed), pairs_steps, recorded)
    runs = compare.group_runs(compare.load_runs([tmp_path / "sweep"]))["all"]
    assert [p["step"] for p in compare.trajectory(runs[1])] == [0, 5, 10, 15, 20]
    mean = group_mean(runs, "kl", "gold_reward")
    assert [p["n"] for p in mean] == [3] * 5
    assert [p["x"] for p in mean] == pytest.approx([0.0, 0.5, 1.0, 1.5, 3.0])


def test_a_place_only_some_seeds_reached_is_left_out_of_the_mean(tmp_path):
    for seed in range(3):
        write_new_run(tmp_path / "sweep" / str(seed), "dpo", seed)
    extra = tmp_path / "sweep" / "2" / "curve.jsonl"  # a resumed seed that logged one more point mid-stage
    rows = [json.loads(line) for line in extra.read_text().splitlines()]
    rows.insert(1, {**rows[0], "step": 7, "kl": 9.0})
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = compare.group_runs(compare.load_runs([tmp_path / "sweep"]))["all"]
    mean = group_mean(runs, "kl", "gold_reward")
    assert [(p["step"], p["n"]) for p in mean] == [(0, 3), (5, 3), (10, 3), (15, 3), (20, 3)]  # no step 7
    assert max(p["x"] for p in mean) < 9.0


def test_a_run_without_optimizer_steps_is_left_off_the_step_axis(tmp_path, monkeypatch):
    """best-of-n numbers its points by n: on the length plot's optimizer-step axis it would read as 64 steps."""
    import matplotlib.figure

    make_new_sweep(tmp_path / "sweep")
    for run_dir in (tmp_path / "sweep").iterdir():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if yaml.safe_load((run_dir / "config.yaml").read_text())["algo"]["name"] == "ppo":
            metrics["run/cost/optimizer_steps"] = 0  # as best-of-n records it
            (run_dir / "metrics.json").write_text(json.dumps(metrics))
    drawn = {}
    original = matplotlib.figure.Figure.savefig

    def record(fig, path, *args, **kwargs):
        drawn[path.name] = sum(line.get_alpha() == 0.25 for ax in fig.axes for line in ax.lines)
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    groups = compare.group_runs(compare.load_runs([tmp_path / "sweep"]))
    made = {p.name: p for p in plots.plot(groups, tmp_path)}
    assert drawn["frontier.png"] == 9 and drawn["length.png"] == 6  # the ppo group's 3 runs are off the step axis
    assert made["length.png"].note.endswith("left out (no optimizer steps): algo=ppo")


def test_a_last_stage_of_the_same_name_is_never_shared(tmp_path):
    """PPO and PPO-ptx both end in a stage named `ppo`: their curves and paths are drawn per group, while the SFT
    before them is drawn once."""
    from zoo.compare.trajectories import shared_stages

    for i, (coef, seed) in enumerate((c, s) for c in (0.0, 1.0) for s in (0, 1)):
        path = write_new_run(tmp_path / "sweep" / str(i), "ppo", seed, baseline="start")
        config = yaml.safe_load((path / "config.yaml").read_text())
        config["algo"]["args"]["ptx_coef"] = coef
        (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    groups = compare.group_runs(compare.load_runs([tmp_path / "sweep"]))
    assert list(groups) == ["algo.args.ptx_coef=0.0", "algo.args.ptx_coef=1.0"]
    found, _ = panels(groups, ["loss"])
    drawn = {stage: list(labels) for stage, _, labels in found}
    assert drawn == {"sft": [SHARED], "ppo": list(groups)}
    assert shared_stages(groups) == set()  # ppo is on every path but is each group's own


def test_a_stage_the_groups_trained_differently_is_drawn_per_group(tmp_path):
    """Every group has an SFT stage before its own; when one group's SFT logged other losses at the same seed (it was
    configured differently, like a reward model on more pairs), that stage is drawn per group, not once as shared."""
    for i, (choice, seed) in enumerate((c, s) for c in ("dpo", "ppo") for s in (0, 1)):
        path = write_new_run(tmp_path / "sweep" / str(i), choice, seed)
        if choice == "ppo":
            history = path / "stages" / "sft" / "history.jsonl"
            rows = [json.loads(x) for x in history.read_text().splitlines()]
            history.write_text("".join(json.dumps({**r, "loss": r["loss"] + 0.5}) + "\n" for r in rows))
    groups = compare.group_runs(compare.load_runs([tmp_path / "sweep"]))
    found, _ = panels(groups, ["loss"])
    assert {stage: sorted(labels) for stage, _, labels in found}["sft"] == sorted(groups)


def _with_answers(run_dir: Path, wrong_grows: float) -> None:
    """Give a run exact-answer metrics: accuracy 0.25 at the start, wrong answers `wrong_grows` tokens longer at each
    curve point, right ones 10 tokens throughout."""
    rows = [json.loads(line) for line in (run_dir / "curve.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows, 1):
        row.update(accuracy=0.25 + 0.05 * i, length_correct=10.0, length_incorrect=20.0 + wrong_grows * i)
    (run_dir / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.update({"before/accuracy": 0.25, "before/length_correct": 10.0, "before/length_incorrect": 20.0,
                    "eval/accuracy": 0.25 + 0.05 * (len(rows) + 1), "eval/length_correct": 10.0,
                    "eval/length_incorrect": 20.0 + wrong_grows * (len(rows) + 1)})
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_exact_answers_get_accuracy_and_the_lengths_of_right_and_wrong_answers(tmp_path, monkeypatch):
    import matplotlib.figure

    for seed in range(3):
        _with_answers(write_new_run(tmp_path / "sweep" / str(seed), "dpo", seed), wrong_grows=4.0)
        _with_answers(write_new_run(tmp_path / "sweep" / str(3 + seed), "ppo", seed), wrong_grows=0.0)
    saved = {}
    original = matplotlib.figure.Figure.savefig

    def record(fig, path, *args, **kwargs):
        saved[path.name] = [(ax.get_ylabel(), ax.get_ylim(), sum(line.get_alpha() == 0.25 for line in ax.lines))
                            for ax in fig.axes if ax.get_visible()]
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    made = {p.name: p for p in plots.plot(compare.group_runs(compare.load_runs([tmp_path / "sweep"])), tmp_path)}
    assert made["accuracy.png"].path == tmp_path / "accuracy.png"
    panels = saved["accuracy.png"]
    assert [label for label, _, _ in panels] == ["exact-answer accuracy (held-out prompts)",
                                                 "length of the right answers (tokens, mean)",
                                                 "length of the wrong answers (tokens, mean)"]
    assert [faint for _, _, faint in panels] == [6, 6, 6]  # every run's path in every panel
    right, wrong = panels[1][1], panels[2][1]
    assert right == wrong and right[0] < 10.0 and wrong[1] > 36.0  # one scale: right 10, wrong up to 20 + 4 x 4


def test_no_accuracy_plot_without_exact_answers(groups, tmp_path):
    assert "accuracy.png" not in {p.name for p in plots.plot(groups, tmp_path)}
