"""zoo.compare on a sweep shaped like today's runs (SFT, then an algorithm; eval.baseline=sft; curve points; cost;
group choices in .hydra/): the reference named everywhere, the baseline row, the cost table, compare.html, group
labels that name the config-group choice. No torch."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from zoo import compare
from zoo.compare import context

PNG = b"\x89PNG\r\n\x1a\n"
ALGOS = {"dpo": "dpo", "online_dpo_gold": "online_dpo", "ppo": "ppo"}  # group choice -> algo.name (stage name)
GOLD = {"dpo": 0.7, "online_dpo_gold": 0.9, "ppo": 0.4}
PROMPTS = [f"prompt {i}" for i in range(8)]
START_GOLD = [0.2, 0.3, 0.25]  # the SFT policy's gold per seed: the same for every algorithm of that seed


def _history(stage: str, rounds: bool) -> list[dict]:
    if rounds:  # online DPO: one trainer per round of 5 steps, steps restarting each round
        return [{"segment": f"round_{k}", "step": s, "loss": 0.7 - 0.02 * (5 * k + s)} for k in range(4)
                for s in (1, 3, 5)]
    return [{"segment": "checkpoints", "step": s, "loss": (4.0 if stage == "sft" else 0.7) - 0.01 * s}
            for s in (5, 10, 15, 20)]


def _curve(stage: str, rounds: bool, gold: float, start: float) -> list[dict]:
    points = []
    for i, step in enumerate((5, 10, 15), 1):
        where = {"segment": f"round_{i - 1}", "step": 5} if rounds else {"segment": "checkpoints", "step": step}
        points.append({"stage": stage, **where, "kl": 0.5 * i, "gold_reward": start + (gold - start) * i / 4,
                       "independent_reward": 0.1 * i, "length": 12 + i, "proxy_reward": None})
    return points


def write_new_run(path: Path, choice: str, seed: int, baseline: str = "sft", hydra: bool = True) -> Path:
    algo = ALGOS[choice]
    path.mkdir(parents=True)
    config = {"stages": {"sft": {"name": "sft", "args": {"learning_rate": 5e-4}}}, "resume": True,
              "algo": {"name": algo, "args": {"beta": 0.1}}, "model": {"name": "smollm2-135m"},
              "peft": {"method": "lora"}, "data": {"name": "sentiment", "gold": "sentiment", "independent": "textblob"},
              "eval": {"baseline": baseline, "num_prompts": len(PROMPTS), "seed": 1234},
              "trainer": {"seed": seed, "max_steps": 20}, "logger": {"run_name": f"{choice}-{seed}"},
              "paths": {"output_dir": str(path)}}
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    start, gold = START_GOLD[seed], GOLD[choice] + 0.01 * seed
    metrics = {"before/gold_reward": start, "before/independent_reward": 0.05, "before/kl": 0.0,
               "before/length": 12.0, "before/fluency": -1.9, "before/self_bleu": 0.16, "before/win_rate": 0.5,
               "eval/gold_reward": gold, "eval/independent_reward": 0.45, "eval/kl": 2.0 + seed,
               "eval/length": 15.0, "eval/fluency": -1.8, "eval/self_bleu": 0.14, "eval/win_rate": 0.7,
               "run/trained_on": ["gold_reward"], "run/seconds": 300.0,
               "run/cost/generated_tokens": {"dpo": 5000, "online_dpo": 9000, "ppo": 7000}[algo] + seed,
               "run/cost/gold_scored": 320, "run/cost/scored_completions": 320, "run/cost/optimizer_steps": 20,
               "run/cost/seconds": 150.0}
    (path / "metrics.json").write_text(json.dumps(metrics))
    samples = [{"policy": policy, "prompt": p, "completion": f"{policy} {choice} {seed} {i}", "independent": 0.1,
                "gold": (start if policy == "before" else gold) + 0.01 * i, "kl": 0.0 if policy == "before" else 2.0}
               for policy in ("before", "after") for i, p in enumerate(PROMPTS)]
    (path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    rounds = algo == "online_dpo"
    (path / "curve.jsonl").write_text("".join(json.dumps(p) + "\n" for p in _curve(algo, rounds, gold, start)))
    for stage in ("sft", algo):
        (path / "stages" / stage).mkdir(parents=True)
        rows = _history(stage, rounds and stage != "sft")
        (path / "stages" / stage / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if hydra:
        (path / ".hydra").mkdir()
        choices = {"algo": choice, "peft": "lora", "data": "sentiment", "sweeps": "sentiment_algos",
                   "hydra/launcher": "basic", "logger": "none"}
        (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    return path


def make_new_sweep(root: Path, seeds=(0, 1, 2), baselines=None) -> Path:
    for i, (choice, seed) in enumerate((c, s) for c in ALGOS for s in seeds):
        write_new_run(root / str(i), choice, seed, baseline=(baselines or {}).get(choice, "sft"))
    return root


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.images, self.headings, self._in = 0, [], [], None

    def handle_starttag(self, tag, attrs):
        self.tables += tag == "table"
        if tag == "img":
            self.images.append(dict(attrs))
        self._in = tag if tag in ("h1", "h2", "h3") else None

    def handle_data(self, data):
        if self._in:
            self.headings.append(data)


def test_the_report_names_its_reference_and_shows_the_start(tmp_path):
    out = tmp_path / "out"
    written = {p.name for p in compare.main([str(make_new_sweep(tmp_path / "sweep")), "--out", str(out)])}
    assert {"frontier.png", "frontier_independent.png", "curves.png", "length.png"} <= written
    md = (out / "compare.md").read_text()
    assert ("Reference point: `before/*`, KL (eval/kl) and the win rate (eval/win_rate) are measured against the "
            "sft policy (eval.baseline=sft).") in md
    assert "WARNING" not in md
    assert "| group | runs | trained on | eval/gold_reward | eval/independent_reward | eval/kl (to sft) | " in md
    # The start, one value per seed (0.2, 0.3, 0.25: mean 0.25), not once per algorithm (n would read 9).
    assert "| before: the sft policy (eval.baseline=sft) | 3 seeds | — | 0.25 ± 0.05 [" in md
    assert "| algo=dpo | 3 | gold_reward | 0.71 ± 0.01 [" in md  # labels name the group choice
    assert "| self_bleu | before: the sft policy (eval.baseline=sft) | 0.16 ± 0 [0.16, 0.16] | — |" in md
    verdict_rows = [line for line in md.splitlines() if line.startswith("| eval/gold_reward | algo=")]
    assert len(verdict_rows) == 3 and all(line.endswith("| after > before |") for line in verdict_rows)
    # per prompt (samples.jsonl): the start is 0.25 + 0.01 i on prompt i, mean 0.285; the runs trained on gold
    assert all("| yes | 0.285 |" in line for line in verdict_rows)
    independent = [line for line in md.splitlines() if line.startswith("| eval/independent_reward | algo=dpo |")]
    assert independent[0].startswith("| eval/independent_reward | algo=dpo | no | 0.1 | 0.1 | +0 ")
    assert ("Task: sentiment; budget: trainer.max_steps=20 per stage after sft; 3 seeds per group; "
            "8 held-out prompts.") in md


def test_the_budget_names_the_final_stages_own_steps(tmp_path):
    """A baseline's arms set their final stage's max_steps (r1_arithmetic: 24) while trainer.max_steps is unset:
    the title must say 24 steps, not the trainer's one epoch."""
    from zoo.compare.context import budget_text

    for seed in range(2):
        path = write_new_run(tmp_path / "sweep" / str(seed), "dpo", seed)
        config = yaml.safe_load((path / "config.yaml").read_text())
        config["trainer"] = {"seed": seed, "max_steps": -1, "num_train_epochs": 1}
        config["algo"]["args"]["max_steps"] = 24
        (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    groups = compare.group_runs(compare.load_runs([tmp_path / "sweep"]))
    assert budget_text(groups) == "algo.args.max_steps=24 in the final stage after sft"


def test_runs_with_different_references_are_warned_about(tmp_path, capsys):
    sweep = make_new_sweep(tmp_path / "sweep", baselines={"ppo": "start"})
    compare.main([str(sweep), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "compare.md").read_text()
    warning = ("WARNING: the runs in this report have different references (eval.baseline=sft: algo=dpo, "
               "algo=online_dpo_gold; eval.baseline=start: algo=ppo)")
    assert warning in md and warning in capsys.readouterr().err
    assert "| before: the sft policy (eval.baseline=sft) | 3 seeds |" in md
    assert "| before: the starting weights, smollm2-135m (eval.baseline=start) | 3 seeds |" in md


def test_cost_table_and_budget_rule(tmp_path):
    out = tmp_path / "out"
    compare.main([str(make_new_sweep(tmp_path / "sweep")), "--out", str(out)])
    md = (out / "compare.md").read_text()
    cost = md[md.index("## Cost"):md.index("## Paired")]
    assert ("| group | runs | generated tokens | scored completions | gold-scored completions | optimizer steps | "
            "training seconds | run seconds (incl. eval) |") in cost
    assert "| algo=online_dpo_gold | 3 | 9001 ± 1 | 320 ± 0 | 320 ± 0 | 20 ± 0 | 150 ± 0 | 300 ± 0 |" in cost
    assert "What the stages after the sft policy (eval.baseline=sft) cost" in cost


def test_budget_rule_is_read_from_the_sweep_file(tmp_path):
    groups = compare.group_runs(compare.load_runs([make_new_sweep(tmp_path / "sweep", seeds=(0,))]))
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "sentiment_algos.yaml").write_text(
        "# The arms.\n# Budget rule: at most 20 optimizer steps of batch 8\n# after SFT for every algorithm. More.\n"
        "trainer:\n  max_steps: 20\n")
    assert context.budget_rule(groups, tmp_path / "sweeps") == (
        "Budget rule (sweeps/sentiment_algos.yaml, as the file reads now): at most 20 optimizer steps of batch 8 "
        "after SFT for every algorithm.")
    (tmp_path / "sweeps" / "sentiment_algos.yaml").write_text("trainer: {}\n")
    assert context.budget_rule(groups, tmp_path / "sweeps") is None


def test_old_runs_without_cost_or_baseline_key_still_compare(tmp_path):
    from test_compare import make_sweep  # runs written before eval.baseline and run/cost/* existed

    out = tmp_path / "out"
    compare.main([str(make_sweep(tmp_path / "sweep")), "--out", str(out)])
    md = (out / "compare.md").read_text()
    assert "measured against the starting weights, smollm2-135m (eval.baseline=start)" in md
    assert "Not recorded: these runs were written before runs recorded `run/cost/*`." in md


def test_compare_html_holds_every_table_and_plot(tmp_path):
    out = tmp_path / "out"
    written = compare.main([str(make_new_sweep(tmp_path / "sweep")), "--out", str(out)])
    text = (out / "compare.html").read_text()
    assert "<script" not in text and "<link" not in text and "http" not in text  # nothing to fetch
    page = Page()
    page.feed(text)
    md = (out / "compare.md").read_text()
    tables = sum(1 for a, b in zip([""] + md.splitlines(), md.splitlines()) if b.startswith("|") and not
                 a.startswith("|"))
    assert page.tables == tables >= 6  # headline, vs start, pairs (one per metric), cost, win rates
    pngs = sorted(p for p in written if p.suffix == ".png")
    assert sorted(i["alt"] for i in page.images) == [p.name for p in pngs]
    for image in page.images:  # inlined, nothing read from disk
        assert image["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(image["src"].split(",", 1)[1])[:8] == PNG
    assert {"Headline", "Verdicts: each group vs its start", "Verdicts: pairs of groups", "Cost", "Plots"} <= set(
        page.headings)


def test_labels_name_the_group_choice_from_hydra_records(tmp_path):
    for name, peft in (("a", "qlora"), ("b", "lora")):
        path = write_new_run(tmp_path / name, "dpo", 0)
        config = yaml.safe_load((path / "config.yaml").read_text())
        config["peft"] = {"method": peft, **({"load_in_4bit": True, "bnb_4bit_compute_dtype": "bfloat16"}
                                               if peft == "qlora" else {})}
        (path / "config.yaml").write_text(yaml.safe_dump(config))
        hydra = yaml.safe_load((path / ".hydra" / "hydra.yaml").read_text())
        hydra["hydra"]["runtime"]["choices"]["peft"] = peft
        (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    runs = compare.load_runs([tmp_path / "a", tmp_path / "b"])
    assert list(compare.group_runs(runs)) == ["peft=lora", "peft=qlora"]
    assert list(compare.group_runs(runs, by=["peft"])) == ["peft=lora", "peft=qlora"]
    for run in runs:  # without Hydra's record the key every run sets names it, not a leaf only QLoRA has
        run.choices = {}
    assert list(compare.group_runs(runs)) == ["peft.method=lora", "peft.method=qlora"]


def test_labels_from_the_sweep_overrides_without_hydra_records(tmp_path):
    root = tmp_path / "sweep"
    jobs = []
    for i, choice in enumerate(("dpo", "online_dpo_gold")):
        write_new_run(root / "runs" / str(i), choice, 0, hydra=False)
        jobs.append({"num": i, "status": "ok", "run_dir": f"somewhere/else/runs/{i}",
                     "overrides": [f"algo={choice}", "trainer.seed=0", "+sweeps=sentiment_algos", "resume=true"]})
    (root / "sweep.json").write_text(json.dumps({"jobs": jobs}))
    runs = compare.load_runs([root])
    assert runs[1].choices == {"algo": "online_dpo_gold", "sweeps": "sentiment_algos"}  # resume is a config leaf
    assert list(compare.group_runs(runs)) == ["algo=dpo", "algo=online_dpo_gold"]


@pytest.mark.parametrize("recorded", [True, False])
def test_a_run_without_choices_does_not_split_on_them(tmp_path, recorded):
    write_new_run(tmp_path / "a", "dpo", 0, hydra=True)
    write_new_run(tmp_path / "b", "dpo", 1, hydra=recorded)
    assert list(compare.group_runs(compare.load_runs([tmp_path / "a", tmp_path / "b"]))) == ["all"]


def test_a_report_is_reproducible(tmp_path):
    sweep = make_new_sweep(tmp_path / "sweep")
    for out in ("a", "b"):
        compare.main([str(sweep), "--out", str(tmp_path / out)])
    assert (tmp_path / "a" / "verdicts.csv").read_text() == (tmp_path / "b" / "verdicts.csv").read_text()
    assert (tmp_path / "a" / "compare.md").read_text() == (tmp_path / "b" / "compare.md").read_text()


def test_a_key_the_config_gained_mid_sweep_is_no_arm_but_is_reported(tmp_path, capsys):
    """conf/ edited while a sweep ran: later jobs have a key the earlier ones lack (one value, no override)."""
    root = make_new_sweep(tmp_path / "sweep", seeds=(0, 1))
    for job in ("1", "3", "5"):
        config = yaml.safe_load((root / job / "config.yaml").read_text())
        config["trainer"]["activation_checkpointing"] = False
        (root / job / "config.yaml").write_text(yaml.safe_dump(config))
    groups = compare.group_runs(compare.load_runs([root]))
    assert list(groups) == ["algo=dpo", "algo=online_dpo_gold", "algo=ppo"]
    assert compare.config_drift(groups) == ["trainer.activation_checkpointing=false (3 of 6 runs)"]
    compare.main([str(root), "--out", str(tmp_path / "out")])
    assert "not grouped by: trainer.activation_checkpointing=false (3 of 6 runs)" in capsys.readouterr().err
    assert "trainer.activation_checkpointing=false (3 of 6 runs)." in (tmp_path / "out" / "compare.md").read_text()


def test_a_key_an_override_adds_is_an_arm(tmp_path):
    for name, extra in (("a", True), ("b", False)):
        path = write_new_run(tmp_path / name, "dpo", 0)
        if extra:
            config = yaml.safe_load((path / "config.yaml").read_text())
            config["algo"]["args"]["rpo_alpha"] = 1.0
            (path / "config.yaml").write_text(yaml.safe_dump(config))
            hydra = yaml.safe_load((path / ".hydra" / "hydra.yaml").read_text())
            hydra["hydra"]["overrides"] = {"task": ["algo=dpo", "+algo.args.rpo_alpha=1.0"]}
            (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    groups = compare.group_runs(compare.load_runs([tmp_path / "a", tmp_path / "b"]))
    assert list(groups) == ["algo.args.rpo_alpha=1.0", "algo.args.rpo_alpha=unset"]
    assert compare.config_drift(groups) == []
