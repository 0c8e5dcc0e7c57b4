"""The benchmark drivers' arithmetic (the benches themselves run with `make bench`, not in the test suite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.dpo import alternating
from bench.grpo import per_token_s

ROOT = Path(__file__).resolve().parents[1]


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
    trl = [{"interval_s": pad + [1.0, 6.0]}, {"interval_s": pad + [2.0, 10.0]}]
    # zoo over TRL, each side's repeats averaged first: (2+4)/2 / ((1+2)/2) and (4+4)/2 / ((6+10)/2). An inverted
    # ratio gives [0.5, 2.0], a mean of per-repeat ratios [2.0, 0.53], warm-up kept [~1, ~1].
    assert paired_ratios(zoo, trl) == pytest.approx([2.0, 0.5])


def test_cpu_defaults_speedups_are_the_other_sides_time_over_the_zoos():
    from bench.cpu_defaults import WARMUP, _summarise

    def run(side, steps, repeat):
        return {"side": side, "repeat": repeat, "step_s": [9.0] * WARMUP + steps, "train_s": sum(steps) + 1.0,
                "global_step": len(steps), "step_flops": 4e9, "bf16": side != "trl_defaults",
                "gradient_checkpointing": side == "trl_defaults", "before_first_step_s": 1.0, "peak_rss_mb": 1.0,
                "final_loss": 0.5, "train_loss": 0.5, "settings": {}}

    runs = [run("trl_defaults", [4.0, 4.0], 0), run("obvious", [3.0, 3.0], 0), run("zoo", [2.0, 2.0], 0),
            run("zoo", [1.0, 1.0], 1), run("obvious", [3.0, 3.0], 1), run("trl_defaults", [2.0, 2.0], 1)]
    out = _summarise(runs, {"float32": 10.0, "bfloat16": 20.0}, ("trl_defaults", "obvious", "zoo"))
    assert out["speedup_vs_defaults"]["step_per_repeat"] == [2.0, 2.0]
    assert out["speedup_vs_obvious"]["step_per_repeat"] == [1.5, 3.0]
    assert out["speedup_vs_obvious"]["step_median"] == pytest.approx(3.0 / 1.5)  # medians: 3.0 vs 1.5
    # The headline: against the faster plain side by median (defaults 3.0 vs obvious 3.0: a tie goes to the first
    # listed), per repeat the smaller ratio (repeat 0: obvious's 1.5, repeat 1: defaults' 2.0).
    plain = out["speedup_vs_plain"]
    assert plain["faster_plain_side"] == "trl_defaults" and plain["step_median"] == pytest.approx(3.0 / 1.5)
    assert plain["step_per_repeat"] == [1.5, 2.0]
    zoo = out["summary"]["zoo"]
    assert zoo["precision"] == "bfloat16" and zoo["effective_gflops"] == pytest.approx(4.0 / 1.5)
    assert zoo["share_of_ceiling"] == pytest.approx(4.0 / 1.5 / 20.0)
    assert out["summary"]["trl_defaults"]["precision"] == "float32"

    # PPO has no plain-TRL side: only the ratio against the obvious side exists.
    ppo = _summarise([r for r in runs if r["side"] != "trl_defaults"], {"float32": 10.0, "bfloat16": 20.0},
                     ("obvious", "zoo"))
    assert "speedup_vs_defaults" not in ppo and ppo["speedup_vs_obvious"]["step_per_repeat"] == [1.5, 3.0]
    assert "speedup_vs_plain" not in ppo


def test_cpu_defaults_splits_sampling_from_the_rest_and_averages_rewards():
    from bench.cpu_defaults import WARMUP, _summarise

    def run(side, gen, reward):
        return {"side": side, "repeat": 0, "step_s": [5.0] * (WARMUP + 2), "interval_s": [9.0] * WARMUP + [4.0, 6.0],
                "generate_s": [9.0] * WARMUP + gen, "reward_per_step": reward, "train_s": 20.0, "global_step": 4,
                "step_flops": 1e9, "bf16": True, "gradient_checkpointing": False, "before_first_step_s": 1.0,
                "peak_rss_mb": 1.0, "final_loss": 0.0, "train_loss": 0.0, "settings": {}}

    runs = [run("obvious", [3.0, 3.0], [0.1, 0.3]), run("zoo", [1.0, 2.0], [0.2, 0.4]),
            run("zoo", [2.0, 1.0], [0.0, 0.2])]
    for r in runs:  # PPO's update phase, timed beside generate
        r["phase_s"] = {"generate": r["generate_s"], "update": [9.0] * WARMUP + [2.0, 2.5]}
    out = _summarise(runs, {"float32": 10.0, "bfloat16": 20.0}, ("obvious", "zoo"))["summary"]
    assert out["zoo"]["update_s_per_step"] == pytest.approx(2.25) and out["zoo"]["update_share"] == 0.45
    assert out["obvious"]["generate_share"] == pytest.approx(6.0 / 10.0)  # warm-up steps dropped
    assert out["zoo"]["generate_s_per_step"] == pytest.approx(1.5) and out["zoo"]["rest_s_per_step"] == 3.5
    assert out["zoo"]["mean_reward"]["mean"] == pytest.approx(0.2)  # runs' means 0.3 and 0.1
    assert out["zoo"]["mean_reward"]["min"] == pytest.approx(0.1)


def test_cpu_defaults_probe_records_each_phase_once_per_step(monkeypatch):
    from types import SimpleNamespace

    import bench.cpu_defaults as cd

    monkeypatch.setattr(cd, "_PHASES", {})
    probe = cd._probe()
    state = SimpleNamespace(global_step=0)  # never 1: no FLOP counter in this test
    probe.on_train_begin(None, state, None)
    for generate, update in ((1.0, 0.0), (3.0, 2.0), (3.5, 5.0)):  # cumulative seconds at each step's end
        cd._PHASES.update(generate=generate, **({"update": update} if update else {}))
        probe.on_step_end(None, state, None)
    assert probe.phase_s == {"generate": [1.0, 2.0, 0.5], "update": [0.0, 2.0, 3.0]}


def test_cpu_defaults_rerun_of_some_algos_keeps_the_others(tmp_path):
    import json

    from bench.cpu_defaults import _previous_algos

    path = tmp_path / "cpu.json"
    path.write_text(json.dumps({"date": "d0", "command": "c0", "ceiling_gflops": {"float32": 1.0},
                                "algos": {"sft": {"x": 1}, "dpo": {"x": 2, "measured": {"date": "d1"}}}}))
    kept = _previous_algos(path, ["grpo", "sft"])
    assert set(kept) == {"dpo"} and kept["dpo"]["measured"] == {"date": "d1"}
    kept = _previous_algos(path, ["grpo"])
    assert kept["sft"]["measured"] == {"date": "d0", "command": "c0", "ceiling_gflops": {"float32": 1.0}}
    assert _previous_algos(tmp_path / "missing.json", ["dpo"]) == {}


def test_cpu_defaults_goals_say_met_or_what_bounds_them():
    from bench.cpu_defaults import goals

    def entry(vs_obvious, vs_defaults, share, gen=None):
        zoo = {"step_s": {"median": 2.0}, "share_of_ceiling": share, "precision": "bfloat16"}
        if gen is not None:
            zoo.update(generate_s_per_step=gen, rest_s_per_step=2.0 - gen, generate_share=gen / 2.0)
        out = {"summary": {"zoo": zoo}, "speedup_vs_obvious": {"step_median": vs_obvious, "step_per_repeat": [1.0]}}
        if vs_defaults is not None:
            out["speedup_vs_defaults"] = {"step_median": vs_defaults, "step_per_repeat": [1.0]}
            out["speedup_vs_plain"] = {"step_median": min(vs_obvious, vs_defaults), "step_per_repeat": [1.0]}
        return out

    rows = goals({"dpo": entry(2.5, 1.6, 0.32), "grpo": entry(1.2, 1.6, 0.1, gen=0.5), "ppo": entry(1.4, None, 0.2)})
    by = {(r["algo"], r["goal"]): r for r in rows}
    assert by["dpo", "share_of_ceiling >= 0.25"]["met"]
    missed = by["dpo", "speedup_vs_plain >= 2.0"]  # 2.5x obvious does not count: TRL's defaults were faster
    assert not missed["met"] and missed["value"] == 1.6 and "40% of the ceiling" in missed["bound"]  # 2 x 32% / 1.6
    assert not by["grpo", "speedup_vs_obvious >= 2.5"]["met"]
    assert "sampling 0.50 s (25%)" in by["grpo", "speedup_vs_obvious >= 2.5"]["bound"]
    assert by["ppo", "speedup_vs_obvious >= 1.3"]["met"] and ("ppo", "speedup_vs_defaults >= 1.5") not in by


def test_sampling_bench_reports_per_decoding_step(monkeypatch):
    """bench.sampling divides each call's time by its longest completion and compares every setting to none."""
    import bench.sampling as sampling
    from zoo.generation import Samples

    clock = iter(range(1000))
    monkeypatch.setattr(sampling.time, "perf_counter", lambda: float(next(clock)))  # each call takes 1 "second"

    def fake_sample(model, tok, prompts, max_new_tokens, **kw):
        n = 4 if sampling_levers()["merged_lora_sampling"] else 2  # longer completions: more steps per call
        return Samples(prompts, [[0]] * len(prompts), [[1] * n, [1]] + [[1]] * (len(prompts) - 2), [], [])

    from zoo import levers

    def sampling_levers():
        return {name: levers.active(name) for name in levers.SAMPLING}

    monkeypatch.setattr("zoo.generation.sample", fake_sample)
    res = sampling.measure(None, None, batch=3, tokens=8, rounds=2)
    assert res["none"]["median_ms_per_step"] == pytest.approx(500.0)  # 1 s over 2 steps
    assert res["merged_lora_sampling"]["median_ms_per_step"] == pytest.approx(250.0)
    assert res["all"]["speedup_vs_none"] == pytest.approx(2.0)
    assert res["cdf_sampling"]["per_round_speedup_vs_none"] == pytest.approx([1.0, 1.0])


def test_sampling_bench_times_plain_generate_with_glibcs_defaults_and_the_levers_as_a_run_allocates():
    """--allocator as_run: `none` goes to the worker without malloc_keep, every other setting to the one with it;
    one request at a time, each answered before the next is sent."""
    import bench.sampling as sampling

    class Pipe:
        def __init__(self, keep):
            self.keep, self.sent, self.pending = keep, [], None

        def send(self, request):
            assert self.pending is None  # the previous call was answered first
            self.sent.append(request)
            self.pending = request

        def recv(self):
            request, self.pending = self.pending, None
            return (2.0 if self.keep else 4.0), 2  # the kept-memory worker's calls take 2 "seconds", plain 4

    workers = object.__new__(sampling.Workers)
    workers.pipes = {False: Pipe(False), True: Pipe(True)}
    settings = {k: sampling.SETTINGS[k] for k in ("none", "cdf_sampling", "all")}
    res = sampling.measure(None, None, batch=3, tokens=8, rounds=2, settings=settings, workers=workers)
    assert [r["on"] for r in workers.pipes[False].sent] == [()] * 3  # rounds 0-2, plain generate only
    assert {r["on"] for r in workers.pipes[True].sent} == {settings["cdf_sampling"], settings["all"]}
    assert len(workers.pipes[True].sent) == 6 and {r["seed"] for r in workers.pipes[True].sent} == {0, 1, 2}
    assert res["none"]["median_ms_per_step"] == pytest.approx(2000.0)
    assert res["all"]["speedup_vs_none"] == pytest.approx(2.0)


def test_sampling_profile_splits_matmuls_from_the_rest():
    """The matrix multiplies' share of a profiled call, per decoding step, and the speedup a step of them bounds."""
    from bench.sampling import matmul_share

    self_us = {"aten::mm": 60_000.0, "aten::bmm": 20_000.0, "aten::copy_": 15_000.0, "aten::cumsum": 5_000.0}
    p = matmul_share(self_us, steps=4, baseline_ms_per_step=50.0)
    assert p["matmul_share"] == pytest.approx(0.8)  # 80 of 100 ms
    assert p["matmul_ms_per_step"] == pytest.approx(20.0) and p["profiled_ms_per_step"] == pytest.approx(25.0)
    assert p["bound_speedup_vs_none"] == pytest.approx(2.5)  # 50 ms plain / 20 ms of multiplies
    assert "bound_speedup_vs_none" not in matmul_share(self_us, steps=4)


def test_sampling_linear_chain_counts_the_base_layers_and_head(tiny_dir):
    """The multiplies-alone step: each decoder layer's 7 projections and the head, LoRA's own matrices left out."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from bench.sampling import linear_chain

    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    c = base.config
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear"))
    chain = linear_chain(model, rows=(8,), repeats=1)
    kv = c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
    per_layer = 2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * kv + 3 * c.hidden_size * c.intermediate_size
    assert chain["linears"] == 7 * c.num_hidden_layers + 1
    flops = 2 * (c.num_hidden_layers * per_layer + c.vocab_size * c.hidden_size)
    assert chain["gflop_per_row"] == pytest.approx(flops / 1e9)
    assert chain["by_rows"]["8"]["ms_per_step"] > 0
    assert set(chain["packed_by_rows"]) == {"8"}  # the oneDNN-packed side beside it (torch's CPU wheel has oneDNN)


# ----------------------------------------------------------------------------------------------- a quiet machine


@pytest.fixture
def machine_load(monkeypatch):
    """Set what the machine's load readings say: 2 cores, the load averages and the others' CPU share."""
    import os

    import bench.common as common

    now = {"loadavg": (0.1, 0.1, 0.1), "busy": 0.0}
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: now["loadavg"])
    monkeypatch.setattr(common, "others_busy_per_core", lambda window_s=1.0: now["busy"])
    return now


def test_a_side_on_a_busy_machine_is_marked_noisy_with_a_warning(machine_load, capsys):
    from bench.common import LoadLog

    log = LoadLog("dpo")
    with log.side("zoo-0"):
        machine_load["loadavg"] = (2.0, 1.0, 0.5)  # what the side itself did: recorded after, no verdict
    assert not log.noisy and capsys.readouterr().out == ""
    # Just after a side, the 1-minute load still carries it; only what others use makes the next side noisy.
    with log.side("trl-0"):
        pass
    assert not log.noisy
    machine_load["busy"] = 0.6  # others use 0.6 of each core: over the limit of 0.5
    with log.side("zoo-1"):
        pass
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "WARNING: zoo-1" in out and "0.60 of each core" in out
    res = log.result()
    assert res["noisy"] and [s["noisy"] for s in res["sides"]] == [False, False, True]
    assert res["sides"][0]["before"]["loadavg"] == [0.1, 0.1, 0.1]
    assert res["sides"][0]["loadavg_after"] == [2.0, 1.0, 0.5]


def test_without_proc_stat_the_one_minute_load_per_core_decides(machine_load):
    from bench.common import LoadLog

    machine_load["busy"] = None
    log = LoadLog("dpo")
    machine_load["loadavg"] = (0.9, 0.9, 0.9)  # 0.45 per core: quiet
    with log.side("a"):
        pass
    machine_load["loadavg"] = (1.1, 0.9, 0.9)  # 0.55 per core
    with log.side("b"):
        pass
    assert [s["noisy"] for s in log.sides] == [False, True]


@pytest.mark.parametrize("loadavg,busy,refused", [
    ((0.2, 0.2, 0.2), 0.0, False),
    ((1.2, 0.2, 0.2), 0.0, True),  # busy over the last minute (nothing of the bench has run yet)
    ((0.2, 0.2, 0.2), 0.9, True),  # busy now
])
def test_require_quiet_refuses_to_start_on_a_busy_machine(machine_load, capsys, loadavg, busy, refused):
    from bench.common import start_load_log

    machine_load.update(loadavg=loadavg, busy=busy)
    if not refused:
        assert start_load_log("dpo", require_quiet=True).sides == []
        return
    with pytest.raises(SystemExit) as e:
        start_load_log("dpo", require_quiet=True)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "bench.dpo: the machine is busy" in err
    start_load_log("dpo", require_quiet=False)  # without the flag it only warns
    assert "WARNING: the machine is busy" in capsys.readouterr().out


def test_require_quiet_is_one_flag_or_variable_for_every_bench(monkeypatch):
    import argparse

    from bench.common import REQUIRE_QUIET_ENV, add_quiet_arg

    def parsed(*argv):
        ap = argparse.ArgumentParser()
        add_quiet_arg(ap)
        return ap.parse_args(list(argv)).require_quiet

    monkeypatch.delenv(REQUIRE_QUIET_ENV, raising=False)
    assert parsed() is False and parsed("--require-quiet") is True
    monkeypatch.setenv(REQUIRE_QUIET_ENV, "1")
    assert parsed() is True
    for module in ("cpu_defaults", "demo", "dpo", "gpu", "grpo", "levers", "ppo", "sampling"):
        source = (ROOT / "bench" / f"{module}.py").read_text()
        assert ("add_quiet_arg(ap)" in source or "parse_args(ap, " in source) and "start_load_log(" in source, module


def test_parse_args_runs_the_worker_in_a_worker_process_and_returns_the_drivers_args(monkeypatch, tmp_path):
    import argparse

    from bench.common import REQUIRE_QUIET_ENV, parse_args

    monkeypatch.delenv(REQUIRE_QUIET_ENV, raising=False)
    called = []
    ap = argparse.ArgumentParser()
    assert parse_args(ap, ["--worker", "zoo", "--spec", str(tmp_path)], ("zoo", "trl"), called.append) is None
    assert [(a.worker, a.spec) for a in called] == [("zoo", tmp_path)]
    a = parse_args(argparse.ArgumentParser(), ["--require-quiet"], ("zoo", "trl"), called.append)
    assert a.require_quiet is True and a.worker is None and len(called) == 1


def test_others_busy_share_comes_from_proc_stat(monkeypatch, tmp_path):
    import builtins

    import bench.common as common

    lines = iter(["cpu  100 0 100 700 100 0 0 0 0 0\n",  # busy 200 of 1000 ticks
                  "cpu  250 0 150 900 100 0 0 0 0 0\n"])  # +200 busy, +200 idle: half the CPU time was busy
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/stat":
            stat = tmp_path / "stat"
            stat.write_text(next(lines))
            return real_open(stat, *args, **kwargs)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert common.others_busy_per_core(window_s=0) == pytest.approx(0.5)


def test_levers_reference_cost_per_pair():
    """bench.levers' reference columns: the in-step reference seconds per pair (warm-up steps dropped) and the
    zoo's precompute pass per pair, each from the run's own records."""
    from bench.levers import WARMUP, reference_cost

    steps = [9.0] * WARMUP + [0.8, 0.8, 1.2]
    runs = [{"phase_s": {"reference": steps}, "reference_precompute": None},
            {"phase_s": {}, "reference_precompute": {"seconds": 12.0, "pairs": 240, "batch_size": 32}}]
    out = reference_cost(runs, batch_size=8)
    assert out["in_step_reference_s_per_pair"]["median"] == 0.1
    assert out["reference_precompute_s_per_pair"]["median"] == 0.05
    assert out["reference_precompute_batch_size"] == 32
    assert reference_cost([{"phase_s": {}}], batch_size=8) == {}


def test_machine_records_the_settings_that_pick_code_paths(monkeypatch):
    """A bench run under capped instruction sets or another allocator says so in its file; other variables stay out."""
    import os

    from bench.common import machine

    for key in list(os.environ):
        if key.startswith(("MALLOC_", "ONEDNN_", "DNNL_", "MKL_")) or key in ("GLIBC_TUNABLES", "OMP_NUM_THREADS"):
            monkeypatch.delenv(key)
    assert "environment" not in machine((0.0, 0.0, 0.0))
    settings = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "MALLOC_MMAP_MAX_": "0"}
    for key, value in {**settings, "ZOO_UNRELATED": "1"}.items():
        monkeypatch.setenv(key, value)
    assert machine((0.0, 0.0, 0.0))["environment"] == settings
