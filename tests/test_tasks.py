"""Built-in tasks and the data layer's splits."""

from __future__ import annotations

from zoo.data import load_task, partition, sft_rows
from zoo.data.tasks import arithmetic, sentiment
from zoo.rewards.verifiable import accuracy_reward


def test_builtin_tasks_are_reproducible():
    assert sentiment.sft_rows(50, seed=3) == sentiment.sft_rows(50, seed=3)
    assert sentiment.prompts(50, seed=3) != sentiment.prompts(50, seed=4)
    assert arithmetic.rows(20, seed=1) == arithmetic.rows(20, seed=1)


def test_arithmetic_answers_verify():
    rows = arithmetic.preference_rows(30, seed=0)
    assert accuracy_reward(None, [r["chosen"] for r in rows], answer=[r["answer"] for r in rows]) == [1.0] * 30
    assert accuracy_reward(None, [r["rejected"] for r in rows], answer=[r["answer"] for r in rows]) == [0.0] * 30


def test_eval_prompts_are_held_out(compose):
    for data in ("sentiment", "arithmetic"):
        task = load_task(compose(f"data={data}", "eval.num_prompts=8", "data.max_rows=40"))
        assert len(task.eval) == 8 and len(task.train) == 40
        train_prompts = {str(r["prompt"]) for r in task.train}
        assert not train_prompts & {str(r["prompt"]) for r in task.eval}
        assert all("completion" not in r and "chosen" not in r for r in task.eval)
    again = load_task(compose("data=sentiment", "eval.num_prompts=8", "data.max_rows=40"))
    assert again.eval == load_task(compose("data=sentiment", "eval.num_prompts=8", "data.max_rows=40")).eval


def test_partition_is_disjoint():
    rows = [{"prompt": str(i)} for i in range(10)]
    parts = partition(rows, ["sft", "rm", "ppo"])
    assert [len(p) for p in parts.values()] == [3, 3, 3]
    seen = [{r["prompt"] for r in p} for p in parts.values()]
    assert not (seen[0] & seen[1] or seen[1] & seen[2] or seen[0] & seen[2])


def test_sft_rows_from_preferences():
    assert sft_rows([{"prompt": "p", "chosen": "c", "rejected": "r"}], "x") == [{"prompt": "p", "completion": "c"}]
