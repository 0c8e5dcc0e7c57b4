"""zoo.launch: the Accelerate configs, validation before any worker starts, one run dir, and 2-process gloo runs
(torchrun) of DPO, GRPO and PPO on the tiny model against one process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from zoo import launch
from zoo.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "conf" / "accelerate").glob("*.yaml"))
# The probes' own prompts cost most of a tiny run's time and are the same code on one process or several.
NO_PROBES = ["eval.diversity.prompts=0", "eval.sycophancy.items=0", "eval.capability.arithmetic=0",
             "eval.capability.choice=0"]


def test_every_issue_config_is_there_and_is_an_accelerate_config():
    assert set(CONFIGS) == {"cpu_ddp", "single_gpu", "multi_gpu_ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"}
    for name in CONFIGS:
        plan = launch.make_plan({"accelerate": name}, [])
        assert plan.accelerate_cfg["compute_environment"] == "LOCAL_MACHINE"
        assert plan.distributed_type in {"MULTI_CPU", "NO", "MULTI_GPU", "FSDP", "DEEPSPEED"}
        assert plan.num_processes >= 1


def test_argv_split_and_commands(tmp_path):
    keys, hydra_args, extra = launch.split_argv(["accelerate=fsdp", "nproc=4", "-m", "algo=dpo", "--", "--x", "1"])
    assert keys == {"accelerate": "fsdp", "nproc": "4"} and hydra_args == ["-m", "algo=dpo"] and extra == ["--x", "1"]
    file = tmp_path / "config.yaml"
    cpu = launch.command(launch.make_plan({"accelerate": "cpu_ddp"}, []), file)
    assert cpu[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]  # no MPI needed
    assert cpu[-3:] == ["-m", "zoo.worker", str(file)]
    gpu = launch.command(launch.make_plan({"accelerate": "multi_gpu_ddp", "nproc": "4"}, ["--main_process_port",
                                                                                       "29600"]), file)
    assert gpu[1:5] == ["-m", "accelerate.commands.launch", "--config_file", str(launch.accelerate_file(
        "multi_gpu_ddp"))]
    assert gpu[5:9] == ["--num_processes", "4", "--main_process_port", "29600"]
    assert launch.command(launch.make_plan({"torchrun": "3"}, []), file)[5] == "3"


@pytest.mark.parametrize("keys", [{}, {"accelerate": "cpu_ddp", "torchrun": "2"}, {"accelerate": "nope"},
                                  {"torchrun": "two"}, {"accelerate": "cpu_ddp", "dry_run": "yes"}])
def test_bad_launcher_keys_are_refused(keys):
    with pytest.raises((ConfigError, launch.LaunchError)):
        launch.make_plan(keys, [])


@pytest.mark.parametrize("accelerate,overrides,message", [
    ("multi_gpu_ddp", [], "add trainer=gpu"),
    ("cpu_ddp", ["trainer=gpu"], "use trainer=cpu"),
    ("fsdp", ["trainer=gpu", "algo=ppo"], "data-parallel only"),
    ("deepspeed_zero3", ["trainer=gpu", "experiment=instructgpt", "model=tiny"], "data-parallel only"),
])
def test_accelerate_setup_must_fit_the_config(compose, accelerate, overrides, message):
    with pytest.raises(ConfigError, match=message):
        launch.check(compose(*overrides), launch.make_plan({"accelerate": accelerate}, []))


@pytest.mark.parametrize("overrides", [
    ["algo=grpo", "algo.args.use_vllm=true", "algo.args.vllm_mode=colocate"],
    ["algo=rloo", "algo.args.use_vllm=true", "algo.args.vllm_mode=server", "algo.args.vllm_server_base_url=http://h:8000"],
    ["algo=dpo", "trainer.use_liger_kernel=true", "trainer.optim=adamw_bnb_8bit"],
    ["algo=sft", "trainer.activation_checkpointing=true", "trainer.optim=paged_adamw_8bit"],
    ["algo=grpo", "+model.attn_implementation=sdpa"],
])
def test_gpu_knobs_compose_and_validate(compose, overrides):
    """GPU-only settings reach TRL's configs and pass validation (they run on a GPU machine, not here); where their
    package is missing (vllm, liger-kernel on this CPU install) the launcher refuses them by name before starting."""
    import importlib.util

    missing = [pkg for knob, pkg in (("use_vllm", "vllm"), ("use_liger_kernel", "liger_kernel"))
               if any(o.endswith(f"{knob}=true") for o in overrides) and importlib.util.find_spec(pkg) is None]
    cfg, plan = compose("trainer=gpu", *overrides), launch.make_plan({"accelerate": "multi_gpu_ddp"}, [])
    if missing:
        with pytest.raises(ConfigError, match=f"needs the {missing[0]} package"):
            launch.check(cfg, plan)
    else:
        launch.check(cfg, plan)


@pytest.mark.parametrize("override,package", [("+model.attn_implementation=flash_attention_2", "flash_attn"),
                                              ("+model.use_kernels=true", "kernels")])
def test_model_kernels_need_their_package(compose, override, package):
    import importlib.util

    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(ConfigError, match=package):
        launch.check(compose("trainer=gpu", override), launch.make_plan({"accelerate": "single_gpu"}, []))


def _launch(tmp_path: Path, tiny_dir: Path, *overrides: str, how: str = "torchrun=2", name: str = "run",
            timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    args = [how, "model=tiny", f"model.name_or_path={tiny_dir}", "logger=none", "trainer.bf16=false",
            "trainer.save_steps=1000", "trainer.logging_steps=1", "eval.num_prompts=4", "eval.max_new_tokens=8",
            "data.max_rows=32", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / name}",
            *NO_PROBES, *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "zoo.launch", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _launch_here(monkeypatch, tmp_path: Path, tiny_dir: Path, *overrides: str, how: str = "torchrun=2") -> None:
    """The launcher's command line in this process (no interpreter start-up): for runs that start no worker."""
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["zoo-launch", how, "model=tiny", f"model.name_or_path={tiny_dir}", "logger=none",
                                      f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}",
                                      "hydra/job_logging=disabled", "hydra/hydra_logging=disabled", *overrides])
    try:
        launch.main()
    finally:
        GlobalHydra.instance().clear()


def test_config_errors_fail_before_any_worker_starts(monkeypatch, tmp_path, tiny_dir, capsys):
    with pytest.raises(SystemExit):  # Hydra prints the error and exits 1
        _launch_here(monkeypatch, tmp_path, tiny_dir, "algo=dpo", "algo.args.beta=0")
    assert "algo.args.beta" in capsys.readouterr().err
    assert not (tmp_path / "run" / "launch.json").exists() and not (tmp_path / "run" / "config.yaml").exists()


def test_dry_run_writes_one_run_dir_with_the_resolved_config(monkeypatch, tmp_path, tiny_dir):
    _launch_here(monkeypatch, tmp_path, tiny_dir, "algo=dpo", "dry_run=true", how="accelerate=cpu_ddp")
    run_dir = tmp_path / "run"
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.paths.output_dir == str(run_dir) and "${" not in OmegaConf.to_yaml(cfg)  # resolved: no Hydra needed
    record = json.loads((run_dir / "launch.json").read_text())
    assert record["num_processes"] == 2 and record["command"][-1] == str(run_dir / "config.yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no stray outputs/ dir (cache: tiny_dir's)


def test_each_job_of_a_sweep_is_one_launch(monkeypatch, tmp_path, tiny_dir):
    """`zoo.launch -m`: every job of the sweep gets its own run dir and worker command, recorded in sweep.json."""
    _launch_here(monkeypatch, tmp_path, tiny_dir, "algo=dpo", "-m", "algo.args.beta=0.1,0.2", "dry_run=true",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    jobs = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["ok", "ok"]
    for job in jobs:
        record = json.loads((Path(job["run_dir"]) / "launch.json").read_text())
        assert record["command"][-1] == str(Path(job["run_dir"]).resolve() / "config.yaml")
    betas = [OmegaConf.load(Path(j["run_dir"]) / "config.yaml").algo.args.beta for j in jobs]
    assert betas == [0.1, 0.2]


def _pairs_file(path: Path, n: int = 24) -> Path:
    words = ["good", "great", "bad", "awful", "fine", "nice", "poor", "lovely"]
    rows = [{"prompt": f"Review {i}: the film was", "chosen": f" {words[i % 4]} and {words[(i + 1) % 8]}.",
             "rejected": f" {words[(i + 2) % 8]}, {words[(i + 3) % 8]} and long."} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _losses(run_dir: Path, stage: str) -> list[float]:
    lines = (run_dir / "stages" / stage / "history.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if "loss" in json.loads(line)]


def test_dpo_on_two_processes_matches_one_process_at_the_same_global_batch(compose, tmp_path, tiny_dir):
    """2 x 2 pairs per step under torchrun (gloo) = 4 pairs per step on one process: the same data order (seeded
    sampler), gradients averaged by DDP, so the same losses step for step."""
    from zoo.train import run

    data = [f"data.path={_pairs_file(tmp_path / 'pairs.jsonl')}", "data=trl", "algo=dpo", "trainer.max_steps=3"]
    one = run(compose(*data, *NO_PROBES, "trainer.per_device_train_batch_size=4", output_dir=tmp_path / "one"))
    done = _launch(tmp_path, tiny_dir, *data, "trainer.per_device_train_batch_size=2", name="two",
                   how="accelerate=cpu_ddp")
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert set(two) == set(one)
    assert json.loads((tmp_path / "two" / "env.json").read_text())["world_size"] == 2
    losses_one, losses_two = _losses(tmp_path / "one", "dpo"), _losses(tmp_path / "two", "dpo")
    assert len(losses_two) == len(losses_one) == 3  # one history line per step: the main process alone writes
    assert losses_two == pytest.approx(losses_one, rel=1e-4, abs=1e-5)
    assert two["dpo/train_loss"] == pytest.approx(one["dpo/train_loss"], rel=1e-4)


def _same_keys_as_one_process(compose, tmp_path, tiny_dir, stage: str, *overrides: str,
                              env: dict | None = None) -> dict:
    from zoo.train import run

    one = run(compose(*overrides, *NO_PROBES, output_dir=tmp_path / "one"))
    done = _launch(tmp_path, tiny_dir, *overrides, name="two", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert set(two) == set(one)
    # A non-finite loss on any rank stops that rank (the zoo's NaN guard) and torchrun then fails the run.
    assert all(math.isfinite(x) for x in _losses(tmp_path / "two", stage))
    assert (tmp_path / "two" / "stages" / stage / "model" / "config.json").exists()
    return two


@pytest.mark.slow
def test_grpo_on_two_processes(compose, tmp_path, tiny_dir):
    _same_keys_as_one_process(compose, tmp_path, tiny_dir, "grpo", "algo=grpo", "trainer.max_steps=2",
                              "trainer.per_device_train_batch_size=4", "algo.args.num_generations=4")


# Started in each worker (sitecustomize on PYTHONPATH): every rollout's whitened advantages, summed over this
# process's real tokens, appended to <dir>/rank<r>.jsonl.
_ADVANTAGE_HOOK = """
import json, os
from pathlib import Path

from zoo.rl.ppo_trainer import PPOTrainer

_rollout = PPOTrainer._rollout


def _recording_rollout(self, rows, step):
    roll = _rollout(self, rows, step)
    a, m = roll["advantages"].double(), roll["batch"].mask.double()
    out = Path(os.environ["ZOO_TEST_ADVANTAGES"]) / f"rank{os.environ.get('RANK', '0')}.jsonl"
    with open(out, "a") as f:
        f.write(json.dumps({"sum": (a * m).sum().item(), "sum_sq": (a * a * m).sum().item(),
                            "tokens": m.sum().item()}) + "\\n")
    return roll


PPOTrainer._rollout = _recording_rollout
"""


@pytest.mark.slow
def test_ppo_on_two_processes(compose, tmp_path, tiny_dir):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(f"import os\nif os.environ.get('ZOO_TEST_ADVANTAGES'):\n"
                                           f"    exec({_ADVANTAGE_HOOK!r})\n")
    two = _same_keys_as_one_process(compose, tmp_path, tiny_dir, "ppo", "algo=ppo", "trainer.max_steps=2",
                                    "trainer.per_device_train_batch_size=4",
                                    env={"ZOO_TEST_ADVANTAGES": str(hook), "PYTHONPATH": f"{hook}{os.pathsep}{ROOT}"})
    history = [json.loads(x) for x in (tmp_path / "two" / "stages" / "ppo" / "history.jsonl").read_text().splitlines()]
    assert {"objective/kl", "val/advantages", "policy/clipfrac"} <= set(history[0])
    assert abs(history[0]["val/advantages"]) < 1e-5  # whitened over the whole 2 x 4 batch: global mean 0
    assert two["ppo/train_loss"] is not None
    # Mean 0 and variance 1 over the whole batch hold as well when each process whitens its own half (each half
    # then sums to 0 on its own): what tells the two apart is a half's sum, 0 only under per-process whitening.
    ranks = [[json.loads(x) for x in (hook / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    for first, second in zip(*ranks):  # one line per rollout on each process
        tokens = first["tokens"] + second["tokens"]
        assert first["sum"] + second["sum"] == pytest.approx(0.0, abs=1e-6 * tokens)
        assert first["sum_sq"] + second["sum_sq"] == pytest.approx(tokens, rel=1e-4)
        assert abs(first["sum"]) > 1e-3, "each process's advantages sum to 0: whitened per process, not globally"


@pytest.mark.slow
@pytest.mark.parametrize("stage, overrides", [
    ("sft", ("algo=sft", "data=arithmetic")),
    ("rm", ("algo=rm", "data=arithmetic")),
    ("rloo", ("algo=rloo", "algo.args.num_generations=4")),
])
def test_trl_trainers_on_two_processes(compose, tmp_path, tiny_dir, stage, overrides):
    _same_keys_as_one_process(compose, tmp_path, tiny_dir, stage, *overrides, "trainer.max_steps=2",
                              "trainer.per_device_train_batch_size=4")


@pytest.mark.slow
def test_online_dpo_on_two_processes(compose, tmp_path, tiny_dir):
    """Each process samples and labels its share of a round's prompts, every process trains on all the pairs, and
    the round dirs are written once."""
    _same_keys_as_one_process(compose, tmp_path, tiny_dir, "online_dpo", "algo=online_dpo", "data=sentiment",
                              "algo.rounds=2", "algo.steps_per_round=1", "trainer.max_steps=2",
                              "trainer.per_device_train_batch_size=2", "algo.pairs.max_new_tokens=8",
                              "algo.judge_check.pairs=4")
    rounds = tmp_path / "two" / "stages" / "online_dpo" / "rounds"
    assert sorted(p.name for p in rounds.iterdir()) == ["0", "1"]
    # Each process labelled half of a round's prompts; gathered, the round has as many pairs as on one process.
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert two["online_dpo/round0/num_pairs"] == one["online_dpo/round0/num_pairs"] > 0


@pytest.mark.slow
def test_cai_pipeline_on_two_processes(compose, tmp_path, tiny_dir):
    """SL-CAI's critiques and RL-CAI's labels are split across the processes and gathered; the judge check is made
    by the main process; the files are written once."""
    two = _same_keys_as_one_process(compose, tmp_path, tiny_dir, "rlaif", "experiment=cai", "model=tiny",
                                    "stages.cai.generation.max_new_tokens=8", "algo.pairs.max_new_tokens=8",
                                    "data.max_rows=8", "algo.judge_check.pairs=4")
    assert "rlaif/judge/accuracy" in two
    assert (tmp_path / "two" / "stages" / "cai" / "cai_rows.jsonl").exists()


def _ppo_collectives(rank: int, port: int) -> None:
    """One of two gloo processes, each holding half of a rollout batch."""
    import torch
    import torch.distributed as torch_dist

    from zoo import dist
    from zoo.rl import math as rlm

    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        g = torch.Generator().manual_seed(0)
        x, mask = torch.randn(6, 5, generator=g), (torch.rand(6, 5, generator=g) > 0.3).float()
        mine = slice(0, 2) if rank == 0 else slice(2, 6)  # unequal shares: token counts weight the statistics
        for shift in (True, False):
            expected = rlm.masked_whiten(x, mask, shift_mean=shift)[mine]
            assert torch.allclose(dist.masked_whiten(x[mine], mask[mine], shift_mean=shift), expected, atol=1e-6)
        means = dist.means({"m": ((x[mine] * mask[mine]).sum(), mask[mine].sum())})
        assert means["m"] == pytest.approx(rlm.masked_mean(x, mask).item(), abs=1e-6)
        p = torch.nn.Parameter(torch.zeros(3))
        p.grad = torch.full((3,), float(rank + 1))
        dist.average_gradients([p])
        assert torch.equal(p.grad, torch.full((3,), 1.5))
    finally:
        torch_dist.destroy_process_group()


def test_ppo_whitening_statistics_and_gradients_span_the_processes():
    """Advantage / reward whitening and logged means over 2 processes equal one process's over the whole batch."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ppo_collectives, args=(port,), nprocs=2, join=True)
