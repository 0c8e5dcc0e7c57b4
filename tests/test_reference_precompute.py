"""trainer.zoo.reference_precompute (zoo/algos/reference.py): the reference log-probs computed before training equal
the ones the step's own reference forward computes (fp32, tiny model, LoRA: the adapter disabled), for chosen and
rejected, though the pass batches the pairs otherwise (sorted by length, another batch size, other padding); and a
step that has them runs no reference forward."""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
import torch

PAIRS = [  # prompts and completions of different lengths, so every batch pads chosen and rejected rows
    {"prompt": "What is 2 + 3?", "chosen": " 5", "rejected": " It is six, I think, or seven."},
    {"prompt": "Review: the acting was", "chosen": " superb and moving throughout the film.", "rejected": " bad."},
    {"prompt": "Q", "chosen": " yes", "rejected": " no"},
    {"prompt": "A much longer prompt about the plot of Night Train and its ending, which", "chosen": " works.",
     "rejected": " falls flat because the last act drags on."},
    {"prompt": "What is 7 * 8?", "chosen": " 56", "rejected": " 54"},
    {"prompt": "The soundtrack", "chosen": " lifts every scene", "rejected": " is forgettable and loud, sadly"},
]


@pytest.fixture
def trainer(tiny_dir, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from zoo.models import load_tokenizer

    torch.manual_seed(0)
    args = DPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, per_device_train_batch_size=4,
                     max_steps=1, report_to=[], save_strategy="no", logging_steps=1, seed=0,
                     activation_checkpointing=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    return DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(PAIRS),
                      processing_class=load_tokenizer(str(tiny_dir)), peft_config=lora)


@contextmanager
def _reference_forwards(monkeypatch):
    """Yields a list that collects each in-step reference forward's per-row summed log-probs (the step runs the
    reference inside TRL's `use_adapter`, the adapter disabled)."""
    import trl.trainer.dpo_trainer as dpo

    seen, inside, real_use = [], [False, 0], dpo.use_adapter  # [inside now, times entered]

    @contextmanager
    def spying_use_adapter(*args, **kwargs):
        with real_use(*args, **kwargs):
            inside[0], inside[1] = True, inside[1] + 1
            try:
                yield
            finally:
                inside[0] = False

    monkeypatch.setattr(dpo, "use_adapter", spying_use_adapter)
    yield seen, inside


def _in_step_reference(trainer, rows, monkeypatch):
    """(chosen, rejected) reference log-probs the loss computed for `rows` as one training batch."""
    from zoo.levers import completion_only_logits

    base = trainer.model.get_base_model()
    real_forward = base.forward
    with _reference_forwards(monkeypatch) as (seen, inside):
        def recording(*args, **kwargs):
            out = real_forward(*args, **kwargs)
            if inside[0]:
                seen.append(out.log_probs.detach().sum(dim=1))
            return out

        monkeypatch.setattr(base, "forward", recording)
        inputs = trainer.data_collator(rows)
        with completion_only_logits(True):  # as zoo.algos.base.fit trains
            loss = trainer.compute_loss(trainer.model, inputs)
        monkeypatch.setattr(base, "forward", real_forward)
    assert len(seen) == 1 and inside[1] == 1
    chosen, rejected = seen[0].chunk(2)
    return chosen, rejected, loss


def test_precomputed_equal_the_steps_reference_forward(trainer, monkeypatch):
    from zoo.algos.reference import batches, precompute

    rows = [trainer.train_dataset[i] for i in range(len(PAIRS))]
    in_step = [_in_step_reference(trainer, rows[i: i + 4], monkeypatch) for i in (0, 4)]  # the step's batches
    step_chosen = torch.cat([c for c, _, _ in in_step])
    step_rejected = torch.cat([r for _, r, _ in in_step])

    plan = batches(rows, 3)
    assert plan != [[0, 1, 2], [3, 4, 5]]  # the pass batches the pairs otherwise than the steps
    done = precompute(trainer, batch_size=3)
    assert done["pairs"] == len(PAIRS) and done["batch_size"] == 3 and done["seconds"] > 0
    got_chosen = torch.tensor(trainer.train_dataset["ref_chosen_logps"])
    got_rejected = torch.tensor(trainer.train_dataset["ref_rejected_logps"])
    torch.testing.assert_close(got_chosen, step_chosen, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got_rejected, step_rejected, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(got_chosen, got_rejected)  # chosen and rejected each kept in their own column

    # A step given the columns reads them: no reference forward, the same loss.
    from zoo.levers import completion_only_logits

    with_ref = [trainer.train_dataset[i] for i in range(4)]
    with _reference_forwards(monkeypatch) as (_, inside), completion_only_logits(True):
        loss = trainer.compute_loss(trainer.model, trainer.data_collator(with_ref))
    assert inside[1] == 0  # the adapter was never disabled for a reference forward
    torch.testing.assert_close(loss, in_step[0][2], rtol=1e-5, atol=1e-5)


def test_batches_sort_by_length_and_cover_every_pair():
    from zoo.algos.reference import batches

    rows = [{"prompt_ids": [0] * p, "chosen_ids": [0] * c, "rejected_ids": [0] * r}
            for p, c, r in [(5, 1, 9), (1, 1, 1), (3, 2, 2), (2, 8, 1)]]
    assert batches(rows, 2) == [[1, 2], [3, 0]]  # lengths 14, 3, 5, 10
    assert sorted(i for b in batches(rows, 3) for i in b) == [0, 1, 2, 3]


def test_planned_epochs_by_hand():
    from types import SimpleNamespace

    from zoo.algos.preference import planned_epochs

    args = SimpleNamespace(max_steps=20, per_device_train_batch_size=8, gradient_accumulation_steps=2, world_size=1,
                           num_train_epochs=3.0)
    assert planned_epochs(args, 160) == 2.0  # 20 steps x 16 pairs over 160 pairs
    assert planned_epochs(SimpleNamespace(**{**vars(args), "world_size": 2}), 640) == 1.0
    assert planned_epochs(SimpleNamespace(**{**vars(args), "max_steps": -1}), 640) == 3.0  # no max_steps: epochs


@pytest.mark.parametrize("max_steps, ran", [(1, False), (2, True)])
def test_auto_runs_the_pass_from_one_epoch_on(compose, max_steps, ran):
    """trainer=cpu's `auto`: 8 pairs at batch 4 are one epoch in 2 steps (the pass pays back after 0.81 epochs)."""
    from zoo.train import run

    cfg = compose("algo=dpo", "data=arithmetic", "data.max_rows=8", "trainer.per_device_train_batch_size=4",
                  f"trainer.max_steps={max_steps}", "eval.batch_size=8")
    assert cfg.trainer.zoo.reference_precompute == "auto"
    metrics = run(cfg)
    assert ("dpo/reference_precompute/pairs" in metrics) is ran
    if ran:
        assert metrics["dpo/reference_precompute/planned_epochs"] == 1.0


def test_auto_is_the_only_word_a_lever_takes(compose):
    from omegaconf import OmegaConf

    from zoo.errors import ConfigError
    from zoo.levers import check_levers

    check_levers(OmegaConf.create({"reference_precompute": "auto"}), "trainer.zoo")
    with pytest.raises(ConfigError, match=r"trainer.zoo.length_buckets='auto': expected true or false"):
        check_levers(OmegaConf.create({"length_buckets": "auto"}), "trainer.zoo")
    with pytest.raises(ConfigError, match=r"reference_precompute='sometimes': expected true, false or auto"):
        check_levers(OmegaConf.create({"reference_precompute": "sometimes"}), "trainer.zoo")


def test_lever_is_off_by_default_and_recorded_when_on(compose):
    from zoo.levers import LEVERS
    from zoo.train import run

    assert LEVERS["reference_precompute"] is False  # outside trainer=cpu (trainer=gpu: not measured there)
    metrics = run(compose("algo=dpo", "data=arithmetic", "trainer.per_device_train_batch_size=4",
                          "trainer.zoo.reference_precompute=true", "eval.batch_size=8"))
    assert metrics["dpo/reference_precompute/batch_size"] == 8
    assert metrics["dpo/reference_precompute/pairs"] >= 8
    assert math.isfinite(metrics["dpo/train_loss"])
