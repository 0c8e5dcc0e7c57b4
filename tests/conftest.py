"""Shared fixtures: a tiny model built once per session in a temp dir, and Hydra composition for run(cfg)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The same third-party notices silenced as in a run (zoo/quiet.py), so the test log shows what the tests raise.
from zoo import quiet  # noqa: E402

quiet.install()

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: one worker per core, so one torch thread each
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"  # and in the runs tests start as subprocesses
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from zoo.model_cache import build_tiny

    return build_tiny(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def compose(tiny_dir, tmp_path):
    """compose(overrides) -> cfg for the tiny model, logger=none, a fresh output dir, small eval.

    fp32 everywhere: `trainer.bf16: auto` turns bf16 autocast on only on CPUs with native bf16, and a test must
    not depend on which CPU runs it (tests that want bf16 say trainer.bf16=true, which runs on every CPU)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from zoo.config import normalize_overrides

    def _compose(*overrides: str, output_dir: Path | None = None):
        base = [
            "model=tiny", f"model.name_or_path={tiny_dir}", "logger=none", "trainer.max_steps=2", "trainer.bf16=false",
            "trainer.save_steps=1000", "trainer.logging_steps=1", "eval.num_prompts=4", "eval.max_new_tokens=8",
            "data.max_rows=32",
            # The probes have prompts of their own and cost as much as the rest of a tiny run; tests/test_probes.py
            # and tests/test_diagnostics.py turn them on where they are what is tested.
            "eval.sycophancy.items=0", "eval.capability.arithmetic=0", "eval.capability.choice=0",
            f"paths.output_dir={output_dir or tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}",
        ]
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return hydra_compose("train", overrides=normalize_overrides(base + list(overrides)))

    return _compose


def _share_of(letter: str):
    """A dense toy reward, the share of `letter` in each completion: every group of random samples has reward
    variance, where the tiny model's short random completions almost always tie under VADER."""
    def reward(prompts, completions, **columns):
        from zoo.generation import as_text

        return [as_text(c).count(letter) / max(1, len(as_text(c))) for c in completions]

    return reward


fraction_of_a = _share_of("a")
fraction_of_e = _share_of("e")  # a second one, e.g. a gold that a `fraction_of_a` judge is checked against


@pytest.fixture
def dense_reward(monkeypatch):
    """Register the toy rewards (`fraction_of_a`, `fraction_of_e`) and return the override that selects the first
    as the run's reward."""
    from zoo import rewards

    for name, fn in (("fraction_of_a", fraction_of_a), ("fraction_of_e", fraction_of_e)):
        monkeypatch.setitem(rewards.REWARDS, name, fn)
    monkeypatch.setattr(rewards, "KNOWN", sorted([*rewards.KNOWN, "fraction_of_a", "fraction_of_e"]))
    return "+reward.functions.fraction_of_a=1.0"
