"""bench.gpu without a GPU: every side is built (config, model, trainer, optimizer) on the tiny model and nothing is
trained, and the zoo and its plain TRL script are built with the same settings; its arithmetic; its one-line refusal
without CUDA. The `gpu` tests train one side on CUDA and skip elsewhere."""

from __future__ import annotations

import pytest

import bench.gpu as gpu


@pytest.fixture
def args(tiny_dir, tmp_path):
    def make(*extra: str):
        return gpu.parser().parse_args([
            "--model", "tiny", "--steps", "4", "--override", f"model.name_or_path={tiny_dir}",
            "--override", f"paths.cache_dir={tmp_path / 'cache'}", "--override", "data.max_rows=32", *extra])
    return make


@pytest.mark.parametrize("algo", gpu.COMPARED)
def test_dry_run_builds_both_sides_with_the_same_settings(args, tmp_path, algo):
    a = args("--dry-run")
    spec = gpu.compared_spec(algo, a, tmp_path)
    assert "trainer=gpu" in spec["overrides"] and spec["shared"]["use_cpu"] is False
    built = {side: gpu.run_side(spec, side, tmp_path / side) for side in gpu.SIDES}
    zoo, plain = built["zoo"]["built"], built["plain"]["built"]
    assert zoo["trainer"] == f"Zoo{plain['trainer']}"  # the zoo's NaN-guarded subclass of the same TRL trainer
    same = ("bf16", "optim", "optimizer", "fused", "activation_checkpointing", "trainable_params")
    assert {k: zoo[k] for k in same} == {k: plain[k] for k in same}
    # trainer=gpu: activation checkpointing on, TRL's default fused AdamW, LoRA adapters only
    assert zoo["activation_checkpointing"] is True and zoo["fused"] is True and zoo["trainable_params"] > 0
    assert all(b.get("dry_run") for b in built.values())  # built, never trained


@pytest.mark.parametrize("name", gpu.CHECKS)
def test_dry_run_builds_each_one_step_check(args, tmp_path, name):
    res = gpu.run_side(gpu.check_spec(name, args("--dry-run")), "zoo", tmp_path / name)
    built = res["built"]
    assert res["dry_run"] and built["optimizer"] is not None
    assert (built["linear_4bit_layers"] > 0) == (name == "qlora")
    if name == "gpu_trainer":
        assert built["optim"] == "adamw_torch_fused" and built["fused"] is True
    if name == "ppo":
        assert built["trainer"] == "ZooPPOTrainer"


def test_without_cuda_it_stops_with_one_line(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        gpu.main([])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "no CUDA device" in err and "--dry-run" in err


def test_tokens_per_second_and_the_zoos_overhead():
    pad = [9.0] * gpu.WARMUP  # warm-up steps: dropped from times and token counts

    def run(side, steps, tokens_per_step, repeat):
        n = gpu.WARMUP + len(steps)
        return {"side": side, "repeat": repeat, "interval_s": pad + steps, "peak_gpu_mb": 100.0, "train_loss": 0.5,
                "num_tokens": [(k, 1000 * k if k <= gpu.WARMUP else 1000 * gpu.WARMUP
                                + tokens_per_step * (k - gpu.WARMUP)) for k in range(1, n + 1)], "built": {}}

    assert gpu.tokens_per_s(run("zoo", [0.5, 0.5], 200, 0)) == pytest.approx(400.0)  # 400 tokens in 1 s
    runs = [run("zoo", [0.6, 0.6], 100, 0), run("plain", [0.5, 0.5], 100, 0),
            run("plain", [1.0, 1.0], 100, 1), run("zoo", [1.0, 1.0], 100, 1),
            run("zoo", [0.9, 0.9], 100, 2), run("plain", [0.8, 0.8], 100, 2)]
    out = gpu.summarise(runs)
    overhead = out["zoo_over_plain_time"]
    assert overhead["per_repeat"] == pytest.approx([1.2, 1.0, 1.125])
    assert overhead["median"] == pytest.approx(0.9 / 0.8) and overhead["met"] is (0.9 / 0.8 <= gpu.GOAL)
    assert out["plain"]["step_s"]["min"] == 0.5 and out["zoo"]["tokens_per_s"]["median"] == pytest.approx(100 / 0.9)


@pytest.mark.gpu
def test_one_side_trains_on_cuda(args, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    res = gpu.run_side(gpu.compared_spec("dpo", args(), tmp_path), "zoo", tmp_path / "zoo")
    assert res["built"]["device"].startswith("cuda") and res["peak_gpu_mb"] > 0
    assert len(res["interval_s"]) == 4 and gpu.tokens_per_s(res) > 0
