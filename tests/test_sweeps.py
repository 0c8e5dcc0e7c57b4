"""sweeps/: every sweep config composes (launchers included), and so does every job it expands into, composed the
way Hydra's sweeper composes it; a multirun writes sweep.json, records a failing job without losing the others, and
a rerun with resume=true skips the finished jobs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))
LAUNCHERS = {"joblib": "JoblibLauncher", "slurm": "SlurmLauncher", "ray": "RayLauncher"}
PLUGINS = {"joblib": "hydra_plugins.hydra_joblib_launcher", "slurm": "hydra_plugins.hydra_submitit_launcher",
           "ray": "hydra_plugins.hydra_ray_launcher", "optuna_dpo": "hydra_plugins.hydra_optuna_sweeper"}


def _compose_hydra(*overrides: str, hydra: bool = True):
    """The composed config (with its `hydra` node, which holds the sweeper and launcher, unless hydra=False)."""
    from hydra import compose, initialize_config_dir

    from zoo.config import normalize_overrides

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=normalize_overrides([*overrides, "paths.output_dir=/tmp/unused"]),
                       return_hydra_config=hydra)


def compose_job(overrides: list[str]):
    """Compose one job's overrides exactly as given: no zoo.config.normalize_overrides, as for a sweeper's job."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def sweep_jobs(arguments: list[str]) -> list[list[str]]:
    """The override lists of the jobs `python -m zoo.train -m <arguments>` launches, built as the sweeper builds them.

    zoo.train's main passes the command line through zoo.config.normalize_overrides (`algo.args.x=v` becomes
    `++algo.args.x=v`); the sweeper's `params` from a sweep file reach Hydra as written. Hydra's basic sweeper puts the
    params first, then the command line, and expands the grid (`BasicSweeper.split_arguments`, the function it uses).
    Optuna proposes the values itself, so its jobs here cover every choice and both ends of every interval or range,
    one value of each parameter per job (as many jobs as the longest list)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from zoo.config import normalize_overrides

    args = normalize_overrides(list(arguments))
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(args) if not o.is_sweep_override()]
    sweeper = compose_job(fixed).hydra.sweeper
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()] + args
    overrides = parser.parse_overrides(params)
    if sweeper._target_.endswith("BasicSweeper"):
        return [list(job) for job in BasicSweeper.split_arguments(overrides, None)[0]]
    assert sweeper._target_.endswith("OptunaSweeper"), f"no job expansion for {sweeper._target_} in this test"
    values = {}
    for o in overrides:
        key = o.get_key_element()
        if not o.is_sweep_override():
            values[key] = [o.get_value_element_as_str()]
        elif o.is_interval_sweep():
            values[key] = [str(o.value().start), str(o.value().end)]
        else:
            values[key] = list(o.sweep_string_iterator())
    width = max(len(v) for v in values.values())
    return [[f"{k}={v[i % len(v)]}" for k, v in values.items()] for i in range(width)]


def seedless(jobs: list[list[str]]) -> list[list[str]]:
    """One job of each set that differs only in `trainer.seed`: composing takes ~0.15 s a job, and Hydra composes a
    seed like any other value (the zoo's validation of seeds is tested elsewhere), so the others compose alike."""
    seen, out = set(), []
    for job in jobs:
        key = tuple(o for o in job if o.lstrip("+").split("=", 1)[0] != "trainer.seed")
        if key not in seen:
            seen.add(key)
            out.append(job)
    return out


def _plugin_missing(name: str) -> bool:
    module = PLUGINS.get(name)
    return module is not None and importlib.util.find_spec(module) is None


def test_sweeps_are_a_config_group():
    assert (ROOT / "conf" / "sweeps").resolve() == (ROOT / "sweeps").resolve()
    assert {"sentiment_algos", "dpo_beta_loss", "ppo_kl", "grpo_loss_beta", "optuna_dpo"} <= set(SWEEPS)
    assert set(LAUNCHERS) <= set(SWEEPS)


@pytest.mark.parametrize("name", SWEEPS)
def test_every_sweep_composes(name):
    if _plugin_missing(name):  # ray's plugin is an extra of its own (ray is large): `pip install -e '.[ray]'`
        pytest.skip(f"{PLUGINS[name]} not installed")
    if name in LAUNCHERS:  # a launcher goes on top of a sweep
        cfg = _compose_hydra(f"+sweeps=[sentiment_algos,{name}]")
        assert cfg.hydra.launcher._target_.endswith(LAUNCHERS[name])
    else:
        cfg = _compose_hydra(f"+sweeps={name}")
    params = cfg.hydra.sweeper.params
    assert params, "a sweep without parameters runs one job"
    if name == "optuna_dpo":
        assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.direction == "maximize"
        assert cfg.objective == "eval/gold_reward"
    else:
        assert "trainer.seed" in params and len(str(params["trainer.seed"]).split(",")) >= 2  # repeats
    if name == "joblib":
        assert cfg.hydra.launcher.n_jobs == 2 and cfg.hydra.job.env_set.OMP_NUM_THREADS == "1"


def _sweep_arguments(name: str) -> list[str]:
    """The command line that runs sweep file `name` (a launcher goes on top of a sweep)."""
    return [f"+sweeps=[sentiment_algos,{name}]" if name in LAUNCHERS else f"+sweeps={name}"]


@pytest.mark.parametrize("name", SWEEPS)
def test_every_job_of_every_sweep_composes(name):
    """Each job a sweep file expands into composes as Hydra composes it before launching: the params exactly as the
    file writes them (`algo.args.kl_coef` without `++` failed every job of ppo_kl: 'Key kl_coef is not in struct')."""
    if _plugin_missing(name):
        pytest.skip(f"{PLUGINS[name]} not installed")
    jobs = sweep_jobs(_sweep_arguments(name))
    assert len(jobs) >= 2
    for job in seedless(jobs):
        try:
            compose_job(job)
        except Exception as e:  # noqa: BLE001 - Hydra raises several kinds; the job and the message are the point
            pytest.fail(f"sweeps/{name}.yaml: the job {job} does not compose: {type(e).__name__}: {e}",
                        pytrace=False)


def test_a_swept_key_on_the_command_line_replaces_the_files_values():
    """One arm of a baseline at its seeds, in fp32: 3 jobs, one per seed (they were 9 while the command line's
    `trainer.seed` became `++trainer.seed` and swept beside the file's)."""
    jobs = sweep_jobs(["+sweeps=r1_arithmetic", "+arm=r1_grpo", "trainer.seed=0,1,2", "trainer.bf16=false"])
    assert [[o for o in job if "seed" in o or "arm" in o] for job in jobs] == [
        ["+arm=r1_grpo", f"trainer.seed={s}"] for s in range(3)]


def test_sweep_grid_values_are_valid_configs():
    """Every value a grid sweeps is accepted by the zoo's validation (each value in one job at least)."""
    from zoo.config import validate

    for name in ("sentiment_algos", "dpo_beta_loss", "ppo_kl", "grpo_loss_beta", "rbr_f1"):
        jobs = sweep_jobs([f"+sweeps={name}", "paths.output_dir=/tmp/unused"])
        seen: set[str] = set()
        for job in jobs:
            if set(job) <= seen:
                continue  # every value of this job was validated in an earlier one
            seen |= set(job)
            cfg = compose_job(job)
            with open_dict(cfg):
                del cfg["hydra"]
            validate(cfg)


def _multirun(tiny_dir, sweep_dir, *overrides, check=True, algo="sft"):
    return subprocess.run(
        [sys.executable, "-m", "zoo.train", "-m", f"algo={algo}", "model=tiny", f"model.name_or_path={tiny_dir}",
         "logger=none", "trainer.max_steps=1", "eval.num_prompts=2", "eval.max_new_tokens=2", "data.max_rows=8",
         "data=arithmetic", f"hydra.sweep.dir={sweep_dir}", *overrides],
        cwd=ROOT, capture_output=True, text=True, check=check)


def test_failing_job_is_recorded_and_the_others_finish_then_resume_skips_them(tiny_dir, tmp_path):
    """`python -m zoo.train -m` through the real command line: one complete run dir per swept value, holding its
    value; a job that fails is recorded in sweep.json and the others still run; a rerun skips the finished ones."""
    sweep_dir = tmp_path / "sweep"
    proc = _multirun(tiny_dir, sweep_dir, "algo.args.learning_rate=1e-3,-1,2e-3")
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    ok, failed, ok_too = sweep["jobs"]
    assert [(j["num"], j["status"]) for j in sweep["jobs"]] == [(0, "ok"), (1, "failed"), (2, "ok")]
    assert ok["overrides"][-1].lstrip("+") == "algo.args.learning_rate=0.001" and ok["error"] is None
    metrics = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert ok["objective"] == metrics["eval/gold_reward"] and ok["run_dir"] == str(sweep_dir / "0")
    assert failed["objective"] is None and "algo.args.learning_rate" in failed["error"]
    assert failed["error"].startswith("ConfigError")
    assert sorted(p.parent.name for p in sweep_dir.glob("*/metrics.json")) == ["0", "2"]
    rates = [yaml.safe_load((sweep_dir / n / "config.yaml").read_text())["algo"]["args"]["learning_rate"]
             for n in ("0", "2")]
    assert rates == [0.001, 0.002]
    assert "failed; recorded in" in proc.stdout

    # Rerun the same sweep into the same dir: the finished jobs are not trained again.
    before = (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns
    proc = _multirun(tiny_dir, sweep_dir, "algo.args.learning_rate=1e-3,-1,2e-3", "resume=true")
    assert "already finished" in proc.stdout
    assert (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns == before
    rerun = json.loads((sweep_dir / "sweep.json").read_text())["jobs"]
    assert [j["status"] for j in rerun] == ["ok", "failed", "ok"] and rerun[0]["objective"] == ok["objective"]
    assert rerun[2]["objective"] == ok_too["objective"]


def test_jobs_are_named_and_grouped_per_sweep(tmp_path):
    from omegaconf import OmegaConf

    from zoo.sweep import name_run

    cfg = OmegaConf.create({"logger": {"group": "sentiment-dpo", "run_name": "dpo-s0"}})
    info = {"sweep_dir": str(tmp_path / "12-00-00"), "num": 3, "overrides": ["algo=ppo", "trainer.seed=2"]}
    name_run(cfg, info)
    assert cfg.logger.group == "sweep-12-00-00" and cfg.logger.run_name == "3:algo=ppo,trainer.seed=2"
    cfg = OmegaConf.create({"logger": {"group": "mine", "run_name": "x"}})
    name_run(cfg, {**info, "overrides": ["logger.group=mine", "algo=ppo"]})
    assert cfg.logger.group == "mine"  # the user's own group wins


def test_records_from_parallel_jobs_all_land(tmp_path):
    """Jobs of a parallel launcher finish in any order; each rebuilds sweep.json from every record."""
    from zoo.sweep import record

    for num in (2, 0, 1):
        record({"sweep_dir": str(tmp_path), "num": num, "overrides": [f"x={num}"]}, "ok", tmp_path / str(num),
               objective=num / 10)
    jobs = json.loads((tmp_path / "sweep.json").read_text())["jobs"]
    assert [(j["num"], j["objective"]) for j in jobs] == [(0, 0.0), (1, 0.1), (2, 0.2)]


@pytest.mark.parametrize("launcher", ["optuna", "joblib"])
def test_plugin_sweeps_run_on_the_tiny_model(tiny_dir, tmp_path, launcher):
    """Optuna proposes trials from `objective` (2 trials here); joblib runs 2 jobs at once, 1 thread each. Both end
    with every job in sweep.json."""
    sweep_dir = tmp_path / "sweep"
    if launcher == "optuna":
        extra = ["+sweeps=optuna_dpo", "hydra.sweeper.n_trials=2", "objective=eval/length",
                 "hydra.sweeper.direction=minimize"]
    else:
        extra = ["+sweeps=joblib", "trainer.seed=0,1"]
    _multirun(tiny_dir, sweep_dir, *extra, algo="dpo" if launcher == "optuna" else "sft")
    jobs = json.loads((sweep_dir / "sweep.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["ok", "ok"]
    for job in jobs:
        metrics = json.loads((Path(job["run_dir"]) / "metrics.json").read_text())
        objective = "eval/length" if launcher == "optuna" else "eval/gold_reward"
        assert job["objective"] == metrics[objective]
    if launcher == "optuna":
        betas = [next(o for o in j["overrides"] if "algo.args.beta=" in o) for j in jobs]
        assert len(set(betas)) == 2  # two different proposals
        assert (sweep_dir / "optimization_results.yaml").exists()


def _baseline_arms():
    import yaml

    out = []
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        params = (yaml.safe_load(path.read_text()).get("hydra") or {}).get("sweeper", {}).get("params", {})
        for arm in str(params.get("+arm", "")).split(","):
            if arm:
                out.append((path.stem, arm.strip()))
    return out


@pytest.mark.parametrize("sweep,arm", _baseline_arms())
def test_every_baseline_arm_starts_from_the_shared_stage(sweep, arm):
    """The stage every arm is measured from (eval.baseline) runs first, in every arm: an arm that adds a stage
    (an RM before PPO) must not compose it ahead of the shared SFT (Hydra merges an arm's defaults first)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"+arm={arm}", "trainer.seed=0", f"+sweeps={sweep}"])
    assert list(cfg.stages)[0] == cfg.eval.baseline, (sweep, arm, list(cfg.stages))


def _arm_files(arm: str) -> list[dict]:
    """An arm file's YAML and, before it, that of every arm it includes (r1_rl_common), in merge order."""
    import yaml

    raw = yaml.safe_load((ROOT / "conf" / "arm" / f"{arm}.yaml").read_text()) or {}
    included = [e for e in raw.get("defaults") or []
                if isinstance(e, str) and (ROOT / "conf" / "arm" / f"{e}.yaml").exists()]
    return [f for e in included for f in _arm_files(e)] + [raw]


def _declared_algo(arm: str) -> str | None:
    """The `override /algo: X` an arm file declares, itself or through an arm it includes (the arm's own wins)."""
    for raw in reversed(_arm_files(arm)):
        for entry in raw.get("defaults") or []:
            if isinstance(entry, dict) and "override /algo" in entry:
                return entry["override /algo"]
    return None


@pytest.mark.parametrize("sweep,arm", _baseline_arms())
def test_every_baseline_arm_runs_the_algorithm_it_declares_and_validates(sweep, arm, tmp_path):
    """Each baseline job, composed in the job's own order (the sweeper puts `+arm` before `+sweeps`, so a sweep
    file's defaults merge after the arm's), trains the algorithm its arm declares and passes the checks a run makes
    before anything loads, its TRL configs built: r1_arithmetic's SFT control composed as GRPO with the control's
    batch size, and all three of its jobs failed, while the sweep file also overrode /algo."""
    from zoo.config import validate
    from zoo.train import _stage_args

    cfg = compose_job([f"+arm={arm}", "trainer.seed=0", f"+sweeps={sweep}", "logger=none",
                       f"paths.output_dir={tmp_path}"])
    declared = _declared_algo(arm)
    if declared is not None:
        assert cfg.algo.name == compose_job([f"algo={declared}"]).algo.name, (sweep, arm)
    validate(cfg)
    _stage_args(cfg, tmp_path)


def _leaves(node: dict, prefix: str = "") -> dict:
    """{dotted key: value} of a YAML mapping's leaves (lists are leaves)."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _arm_leaves(arm: str) -> dict:
    """The keys an arm file sets, itself or through an arm it includes."""
    body = [{k: v for k, v in raw.items() if k != "defaults"} for raw in _arm_files(arm)]
    return {key: value for node in body for key, value in _leaves(node).items()}


@pytest.mark.parametrize("sweep,arm", _baseline_arms())
def test_every_setting_of_a_baseline_sweep_file_reaches_its_jobs(sweep, arm):
    """A value the sweep file sets is the value its job runs with, unless the arm sets that key itself. Arms that
    declare a stage (`/algo@stages.ai_rm: rlaif_rm`) rely on the sweeper's order (`+arm` before `+sweeps`, so the
    sweep file merges last): composed the other way round, rlaif_rm_judge_accuracy's jobs would silently sample 48
    tokens with max_length 512 (the algorithm's defaults) against the budget rule's 32 and 256."""
    import yaml
    from omegaconf import OmegaConf

    raw = yaml.safe_load((ROOT / "sweeps" / f"{sweep}.yaml").read_text())
    expected = _leaves({k: v for k, v in raw.items() if k not in ("hydra", "defaults")})
    arm_keys = _arm_leaves(arm)
    cfg = compose_job([f"+arm={arm}", "trainer.seed=0", f"+sweeps={sweep}", "logger=none"])
    composed = {key: OmegaConf.to_object(OmegaConf.create({"v": OmegaConf.select(cfg, key)}))["v"]
                for key in expected}
    lost = {key: (value, composed[key]) for key, value in expected.items()
            if key not in arm_keys and composed[key] != value}
    assert not lost, f"{sweep} + {arm}: sweep file value -> composed value: {lost}"


COMPARED = [s for s in SWEEPS if "\n# compare: " in (ROOT / "sweeps" / f"{s}.yaml").read_text()]


@pytest.mark.parametrize("sweep", COMPARED)
def test_a_sweep_files_compare_line_is_options_zoo_compare_takes(sweep, tmp_path):
    """`make baselines` passes a sweep file's `# compare:` line to zoo.compare: every option on it must parse (an
    argparse error exits with status 2; a path without runs exits later, with the compare's own message)."""
    from zoo.compare import main

    line = next(x for x in (ROOT / "sweeps" / f"{sweep}.yaml").read_text().splitlines() if x.startswith("# compare: "))
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), "--out", str(tmp_path / "out"), *line.removeprefix("# compare: ").split()])
    assert e.value.code != 2 and "zoo.compare:" in str(e.value.code), line
