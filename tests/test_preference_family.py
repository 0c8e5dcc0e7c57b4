"""KTO, ORPO, SimPO and CPO beyond the shared end-to-end and direction checks: KTO's unpaired rows (from pairs,
with a share unpaired, or from a file), the experimental trainers behind one module, and what each run reports."""

from __future__ import annotations

import json

import pytest

from zoo.data.io import DataError
from zoo.train import run

PAIRS = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "answer": str(i)} for i in range(10)]


def test_pairs_become_one_desirable_and_one_undesirable_row_each():
    from zoo.data.pairs import unpaired_rows

    rows = unpaired_rows(PAIRS, 0.0, seed=0)
    assert len(rows) == 20
    assert sorted((r["prompt"], r["completion"], r["label"]) for r in rows) == sorted(
        [(p["prompt"], p["chosen"], True) for p in PAIRS] + [(p["prompt"], p["rejected"], False) for p in PAIRS])
    assert all(r["answer"] == r["prompt"][1:] for r in rows)  # task columns ride along
    assert not any("chosen" in r or "rejected" in r for r in rows)
    # Shuffled: TRL's KL term scores each completion against its neighbour's prompt, so a pair's two sides must
    # not sit next to each other in order.
    assert [r["prompt"] for r in rows] != [p["prompt"] for p in PAIRS for _ in range(2)]


def test_unpaired_fraction_keeps_one_side_of_that_share():
    from zoo.data.pairs import unpaired_rows

    rows = unpaired_rows(PAIRS, 0.3, seed=1)
    per_prompt: dict[str, list[bool]] = {}
    for r in rows:
        per_prompt.setdefault(r["prompt"], []).append(r["label"])
    assert len(rows) == 17  # 7 pairs x 2 rows + 3 pairs x 1 row
    assert sorted(len(v) for v in per_prompt.values()) == [1] * 3 + [2] * 7
    assert all(sorted(v) == [False, True] for v in per_prompt.values() if len(v) == 2)
    one_sided = unpaired_rows(PAIRS, 1.0, seed=1)
    assert len(one_sided) == 10 and len({r["prompt"] for r in one_sided}) == 10
    assert sum(r["label"] for r in one_sided) == 5  # half desirable, half undesirable
    def sides(rows):
        return {(r["prompt"], r["label"]) for r in rows}

    assert sides(unpaired_rows(PAIRS, 1.0, seed=2)) != sides(one_sided)  # which pairs keep which side: the seed's
    odd = [sum(r["label"] for r in unpaired_rows(PAIRS[:3], 1.0, seed=s)) for s in range(20)]
    assert set(odd) == {1, 2}  # an odd one out goes either way
    assert unpaired_rows(PAIRS, 0.3, seed=1) == rows  # the seed decides


def test_unpaired_file_rows_checked():
    from zoo.data.adapters import adapt_trl

    ok = adapt_trl([(1, {"prompt": "p", "completion": "c", "label": False})], "f.jsonl")
    assert ok == [{"prompt": "p", "completion": "c", "label": False}]
    with pytest.raises(DataError, match=r"f.jsonl: row 2: 'label' must be true .* got 'yes'"):
        adapt_trl([(1, {"prompt": "p", "completion": "c", "label": True}),
                   (2, {"prompt": "p", "completion": "c", "label": "yes"})], "f.jsonl")
    with pytest.raises(DataError, match=r"row 1: a row with 'label' .* needs a 'completion'"):
        adapt_trl([(1, {"prompt": "p", "label": True})], "f.jsonl")


def _spy_dataset(monkeypatch):
    """The rows KTOTrainer is handed."""
    import zoo.algos.kto as kto

    seen = []
    real = kto.Dataset.from_list

    def from_list(rows, *a, **k):
        seen.append(rows)
        return real(rows, *a, **k)

    monkeypatch.setattr(kto.Dataset, "from_list", from_list)
    return seen


def test_kto_trains_on_an_unpaired_file(compose, tmp_path, monkeypatch):
    rows = [{"prompt": f"Question {i}?", "completion": f" Answer {i}.", "label": i % 3 != 0} for i in range(24)]
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = _spy_dataset(monkeypatch)
    metrics = run(compose("algo=kto", "data=trl", f"data.path={path}", "eval.num_prompts=4", "trainer.max_steps=2",
                          output_dir=tmp_path / "run"))
    assert len(seen[0]) == 20 and set(seen[0][0]) == {"prompt", "completion", "label"}
    assert metrics["kto/num_rows"] == 20
    assert metrics["kto/num_desirable"] + metrics["kto/num_undesirable"] == 20
    assert metrics["kto/num_desirable"] == sum(r["label"] for r in seen[0])


def test_kto_refuses_to_unpair_unpaired_data(compose, tmp_path):
    from zoo.config import ConfigError

    rows = [{"prompt": f"Q{i}?", "completion": f" A{i}.", "label": bool(i % 2)} for i in range(12)]
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError, match=r"algo.unpaired_fraction=0.5: the data is already unpaired"):
        run(compose("algo=kto", "data=trl", f"data.path={path}", "eval.num_prompts=2", "algo.unpaired_fraction=0.5",
                    output_dir=tmp_path / "run"))


@pytest.mark.parametrize("data", ["arithmetic", "sentiment"])
def test_kto_unpaired_fraction_on_a_tasks_pairs(compose, tmp_path, monkeypatch, data):
    """arithmetic ships pairs; sentiment has none, so KTO samples pairs ranked by the gold signal exactly as DPO
    does (written to the stage's pairs.jsonl), then unpairs them: with unpaired_fraction=1, one label per prompt."""
    seen = _spy_dataset(monkeypatch)
    out = tmp_path / "run"
    metrics = run(compose("algo=kto", f"data={data}", "algo.unpaired_fraction=1.0", "trainer.max_steps=2",
                          output_dir=out))
    rows = seen[0]
    assert len({json.dumps(r["prompt"]) for r in rows}) == len(rows)  # one label per prompt
    if data == "sentiment":
        pairs = [json.loads(line) for line in (out / "stages" / "kto" / "pairs.jsonl").read_text().splitlines()]
        assert len(pairs) == len(rows) and all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    assert metrics["kto/num_rows"] == len(rows) > 0


@pytest.mark.parametrize("algo,loss_type", [("simpo", "simpo"), ("cpo", "sigmoid"), ("orpo", None)])
def test_reference_free_trainers_come_from_the_wrapper(compose, tmp_path, monkeypatch, algo, loss_type):
    """ORPO/CPO/SimPO train with the classes zoo.algos.experimental imports from trl.experimental, with the
    configured loss; and (reference-free) no reference model is built."""
    import zoo.algos.experimental as experimental

    used = []
    real = experimental.train_reference_free

    def spy(ctx, pairs, trainer_cls):
        used.append((trainer_cls, ctx.args))
        return real(ctx, pairs, trainer_cls)

    monkeypatch.setattr(experimental, "train_reference_free", spy)  # what each module's train calls
    metrics = run(compose(f"algo={algo}", "data=arithmetic", "trainer.max_steps=2", output_dir=tmp_path / "run"))
    (trainer_cls, args), = used
    assert trainer_cls.__module__.startswith("trl.experimental.")
    assert trainer_cls is {"orpo": experimental.ORPOTrainer}.get(algo, experimental.CPOTrainer)
    if loss_type:
        assert args.loss_type == loss_type
    if algo == "simpo":
        assert args.cpo_alpha == 0.0
    assert metrics[f"{algo}/num_pairs"] > 0 and metrics["eval/kl"] is not None
