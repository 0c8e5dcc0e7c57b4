"""trainer.zoo.malloc_keep (zoo.levers.malloc_keep): glibc's mallopt called when a run starts, and what was applied
recorded in env.json. The C library is replaced by a recorder, so nothing here depends on (or changes) the libc of
the machine that runs the tests."""

from __future__ import annotations

import ctypes
import json

import pytest

from zoo import levers


class FakeLibc:
    """Stands in for ctypes.CDLL(None): records every mallopt call, answers 1 (success) unless told otherwise."""

    def __init__(self, answer: int = 1):
        self.calls, self.answer = [], answer

        def mallopt(param, value):
            self.calls.append((param, value))
            return self.answer

        self.mallopt = mallopt


@pytest.fixture
def libc(monkeypatch):
    fake = FakeLibc()
    monkeypatch.setattr(levers.sys, "platform", "linux")
    monkeypatch.setattr(levers.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(ctypes, "CDLL", lambda name: fake)
    monkeypatch.setattr(levers, "_KEPT", {})  # no earlier run in this process
    for name in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    return fake


def test_on_glibc_it_calls_mallopt_and_says_so(libc):
    record = levers.malloc_keep(True)
    # malloc.h: M_MMAP_MAX is -4, M_TRIM_THRESHOLD -1; a trim threshold of -1 disables trimming (mallopt(3)).
    assert libc.calls == [(-4, 0), (-1, -1)]
    assert record == {"mallopt": True, "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": -1}


def test_off_never_calls_mallopt(libc):
    assert levers.malloc_keep(False) == {"mallopt": False, "why": "trainer.zoo.malloc_keep=false"}
    assert libc.calls == []


def test_off_after_an_earlier_run_says_it_is_still_in_effect(libc):
    levers.malloc_keep(True)
    record = levers.malloc_keep(False)
    assert record["mallopt"] is False and record["still_in_effect_from_an_earlier_run"] == {
        "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": -1}
    assert len(libc.calls) == 2  # only the first run's


@pytest.mark.parametrize("platform_name,libc_ver,why", [
    ("linux", ("", ""), "not glibc"),  # e.g. musl: platform.libc_ver() knows only glibc
    ("darwin", ("", ""), "not Linux (darwin)"),
])
def test_elsewhere_it_is_a_no_op_with_the_reason(libc, monkeypatch, platform_name, libc_ver, why):
    monkeypatch.setattr(levers.sys, "platform", platform_name)
    monkeypatch.setattr(levers.platform, "libc_ver", lambda: libc_ver)
    record = levers.malloc_keep(True)
    assert record["mallopt"] is False and record["why"].startswith(why)
    assert libc.calls == []


def test_a_refused_mallopt_is_recorded_not_claimed(libc):
    libc.answer = 0
    record = levers.malloc_keep(True)
    assert record["mallopt"] is False and "M_MMAP_MAX" in record["why"]
    assert levers._KEPT == {}


def test_the_environments_malloc_settings_are_recorded(libc, monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")
    assert levers.malloc_keep(False)["environment"] == {"MALLOC_MMAP_MAX_": "0"}


@pytest.mark.parametrize("on", [True, False])
def test_a_run_applies_the_lever_and_writes_it_to_env_json(compose, libc, tmp_path, on, monkeypatch):
    """Through run(cfg), switched from the command line; the run is stopped once env.json is written."""
    from zoo import train

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(train.tracking, "start", stop)  # called right after env.json is written
    with pytest.raises(Stop):
        train.run(compose("algo=sft", "data=arithmetic", f"trainer.zoo.malloc_keep={str(on).lower()}",
                          output_dir=tmp_path / "run"))
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["allocator"]["mallopt"] is on
    assert libc.calls == ([(-4, 0), (-1, -1)] if on else [])


def test_trainer_cpu_turns_it_on_and_trainer_gpu_off(compose):
    assert compose().trainer.zoo.malloc_keep is True
    assert compose("trainer=gpu").trainer.zoo.malloc_keep is False


def test_a_non_boolean_value_is_refused(compose):
    from zoo.config import validate
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.zoo.malloc_keep='yes'"):
        validate(compose("trainer.zoo.malloc_keep=yes"))
