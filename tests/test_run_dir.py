"""The run-dir homes: atomic writes (zoo.files), rows made once and the resume guards (zoo.resume), and the named
random streams (zoo.seeds), unit by unit, then the whole-run guarantee that the same config gives the same numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from zoo import resume, seeds
from zoo.errors import NonFiniteLossError, UserError
from zoo.files import atomic_dir, read_jsonl
from zoo.train import run


class Boom(RuntimeError):
    pass


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(Boom):
        with atomic_dir(dest) as tmp:
            (tmp / "half.json").write_text("{")
            raise Boom
    assert not dest.exists() and list(tmp_path.iterdir()) == []  # nothing half-written, no temporary left
    with atomic_dir(dest) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(dest) as tmp:  # replaces an earlier version
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in dest.iterdir()) == ["b"]
    with atomic_dir(dest, keep_existing=True) as tmp:  # a cache someone else built first is kept
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and sorted(p.name for p in dest.iterdir()) == ["b"]


def test_made_once_makes_then_reads_back(tmp_path):
    calls = []

    def make(share):
        calls.append(list(share))
        return [{"x": v, "double": 2 * v} for v in share]

    path = tmp_path / "stage" / "rows.jsonl"
    derived = lambda rows: {tmp_path / "stage" / "sum.jsonl": [{"s": sum(r["x"] for r in rows)}]}  # noqa: E731
    first = resume.made_once(path, make, [1, 2, 3], also=derived)
    assert first == [{"x": 1, "double": 2}, {"x": 2, "double": 4}, {"x": 3, "double": 6}]
    assert read_jsonl(tmp_path / "stage" / "sum.jsonl") == [{"s": 6}]
    again = resume.made_once(path, make, [7, 8], also=derived)  # resumed: the file wins, nothing is made
    assert again == first and calls == [[1, 2, 3]]


def test_refuse_restart_and_checkpoint_lookup(tmp_path):
    out = tmp_path / "checkpoints"
    assert resume.checkpoint_to_resume(out, resume=False) is None  # nothing there: a fresh start is fine
    for step in (2, 10):
        (out / f"checkpoint-{step}").mkdir(parents=True)
    (out / ".checkpoint-12.tmp-1").mkdir()  # one being written is not a checkpoint
    assert Path(resume.last_checkpoint(out)).name == "checkpoint-10"
    assert Path(resume.checkpoint_to_resume(out, resume=True)).name == "checkpoint-10"
    with pytest.raises(UserError, match=r"checkpoint-10.*resume=true"):
        resume.checkpoint_to_resume(out, resume=False)
    with pytest.raises(UserError, match="finished rounds"):
        resume.refuse_restart([0, 1], False, "rounds/ holds finished rounds [0, 1]")


def test_nonfinite_guard_names_the_last_checkpoint(tmp_path):
    (tmp_path / "checkpoint-4").mkdir()
    resume.stop_on_nonfinite(torch.tensor(1.5), 5, tmp_path)  # finite: nothing happens
    with pytest.raises(NonFiniteLossError, match=r"nan at step 5.*checkpoint-4"):
        resume.stop_on_nonfinite(torch.tensor(math.nan), 5, tmp_path)


def test_stream_seeds_keep_their_formulas():
    # Hand-computed from the formulas runs were committed with, so a committed config replays.
    assert seeds.seed_for("ppo.rollout", 3, step=2, rank=1) == 3 * 100003 + 2 + 7919
    assert seeds.seed_for("cai.revisions", 5, round=1) == 5 + 2 + 2
    assert seeds.seed_for("task.wrong_answers", 0) == 7
    assert seeds.rng("task.rows", 4).random() == __import__("random").Random(4).random()
    assert seeds.rng("probe.capability", 1, salt="x").random() == __import__("random").Random("x:1").random()
    a, b = seeds.generator("ppo.minibatches", 0, step=1), seeds.generator("ppo.minibatches", 0, step=2)
    assert not torch.equal(torch.randperm(16, generator=a), torch.randperm(16, generator=b))


def test_drawing_leaves_the_callers_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    with seeds.drawing(7):
        inside = torch.rand(4)
    assert torch.equal(torch.rand(4), expected)  # as if the block had not drawn at all
    with seeds.drawing(7):
        assert torch.equal(torch.rand(4), inside)  # and the block's own draws repeat


def test_sampling_repeats_by_seed_and_never_moves_the_global_stream(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zoo.generation import sample

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)
    prompts = ["The film was", "A quiet story about"] * 4
    draw = lambda seed: sample(model, tok, prompts, max_new_tokens=8, seed=seed).completions  # noqa: E731
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    first = draw(11)
    assert torch.equal(torch.rand(3), expected)
    assert draw(11) == first and draw(12) != first


def test_docs_table_lists_every_stream():
    page = (Path(__file__).resolve().parents[1] / "docs" / "configs.md").read_text()
    table = page[page.index("## Seeds"):]
    missing = [name for name in seeds.STREAMS if f"`{name}`" not in table]
    assert not missing, f"docs/configs.md#seeds does not list {missing}"


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not k.endswith(
        ("seconds", "_runtime", "_per_second", "samples_per_second", "steps_per_second"))}


@pytest.mark.parametrize("algo", ["dpo", "ppo"])
def test_same_config_same_numbers_other_seed_other_numbers(compose, tmp_path, dense_reward, algo):
    """DPO on policy-sampled pairs (the pairs stream, TRL's batch order) and PPO (rollouts, mini-batch order):
    a second run of the same config repeats every number; another trainer.seed changes the samples. The gold is a
    dense toy reward, so that every seed's DPO pairs rank (VADER ties nearly all of the tiny model's samples)."""
    base = (f"algo={algo}", "data=sentiment", "data.gold=fraction_of_e", "trainer.max_steps=3",
            "trainer.per_device_train_batch_size=4")
    a = run(compose(*base, output_dir=tmp_path / "a"))
    b = run(compose(*base, output_dir=tmp_path / "b"))
    assert _numbers(a) == _numbers(b)
    other = run(compose(*base, "trainer.seed=1", output_dir=tmp_path / "c"))
    changed = [k for k in _numbers(a) if k.endswith("train_loss") and other.get(k) != a[k]]
    assert changed, "trainer.seed=1 trained on exactly the same draws as trainer.seed=0"
    if algo == "dpo":
        pairs = lambda d: read_jsonl(d / "stages" / "dpo" / "pairs.jsonl")  # noqa: E731
        assert pairs(tmp_path / "a") == pairs(tmp_path / "b") != pairs(tmp_path / "c")
