"""PPO-ptx (InstructGPT): the supervised term's value and gradient by hand, and end to end it pulls the policy
toward the supervised completions."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.rl import math as rlm


def test_ptx_loss_and_gradient_by_hand():
    logprobs = torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -7.0, -7.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # 3 real tokens; padding never counts
    loss = 0.5 * rlm.ptx_loss(logprobs, mask)  # ptx_coef 0.5
    assert float(loss.detach()) == pytest.approx(0.5 * (1.0 + 2.0 + 0.5) / 3)
    loss.backward()
    # d(coef * -mean)/d logprob = -coef / (real tokens) on real tokens, 0 on padding
    assert torch.allclose(logprobs.grad, -0.5 / 3 * mask)


def _completion_nll(run_dir, rows):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zoo.rl.ppo_trainer import Batch, _tokenized, pack, policy_forward

    tok = AutoTokenizer.from_pretrained(run_dir)
    model = AutoModelForCausalLM.from_pretrained(run_dir).eval()
    prompts, completions = _tokenized(rows, tok)
    batch = pack(prompts, completions, tok.pad_token_id)
    with torch.no_grad():
        logprobs, _ = policy_forward(model, Batch(*vars(batch).values()), 1.0)
    return float(rlm.ptx_loss(logprobs, batch.mask.float()))


def test_ppo_ptx_pulls_toward_the_supervised_rows(compose, tmp_path):
    from zoo.data import load_task, sft_rows
    from zoo.train import run

    base = ("algo=ppo", "data=sentiment", "peft=none", "trainer.max_steps=3", "trainer.per_device_train_batch_size=4",
            "algo.args.learning_rate=1e-3", "algo.args.num_ppo_epochs=1")
    plain = run(compose(*base, "keep_weights=true", output_dir=tmp_path / "ppo"))
    ptx = run(compose(*base, "+algo.args.ptx_coef=1.0", output_dir=tmp_path / "ptx"))
    assert "ppo/train_loss" in plain and math.isfinite(ptx["ppo/train_loss"])
    history = (tmp_path / "ptx" / "stages" / "ppo" / "history.jsonl").read_text()
    assert "loss/ptx" in history and "loss/ptx" not in (tmp_path / "ppo" / "stages" / "ppo" / "history.jsonl").read_text()
    rows = sft_rows(load_task(compose(*base)).train[:32], "sentiment")
    nll = {name: _completion_nll(tmp_path / name / "stages" / "ppo" / "model", rows) for name in ("ppo", "ptx")}
    assert nll["ptx"] < nll["ppo"] - 0.05, nll  # the ptx term lowered the supervised rows' NLL


def test_ptx_data_names_the_rows_of_another_data_config(compose):
    """`ptx_data=arithmetic`: the ptx term trains on the arithmetic task's worked answers, not the stage's own
    sentiment rows; a data name with no conf/data file is a DataError naming the key, before anything loads."""
    from types import SimpleNamespace

    from zoo.algos import ppo
    from zoo.errors import DataError

    cfg = compose("algo=ppo", "data=sentiment", "+algo.args.ptx_coef=1.0", "+algo.args.ptx_data=arithmetic")
    ctx = SimpleNamespace(cfg=cfg, config_path="algo", rows=[{"prompt": "p", "completion": "c"}],
                          args=SimpleNamespace(ptx_coef=1.0, ptx_data="arithmetic"))
    rows = ppo.ptx_rows(ctx)
    assert len(rows) == 480 and all("The answer is" in r["completion"][0]["content"] for r in rows[:5])  # max_rows
    ppo.check_rows([{"prompt": "only prompts"}], cfg, "algo")  # the stage's own columns no longer matter
    own = SimpleNamespace(**{**vars(ctx), "args": SimpleNamespace(ptx_coef=1.0, ptx_data=None)})
    assert ppo.ptx_rows(own) == [{"prompt": "p", "completion": "c"}]
    assert ppo.ptx_rows(SimpleNamespace(**{**vars(ctx), "args": SimpleNamespace(ptx_coef=0.0, ptx_data=None)})) is None
    bad = compose("algo=ppo", "data=sentiment", "+algo.args.ptx_coef=1.0", "+algo.args.ptx_data=arithmatic")
    with pytest.raises(DataError, match="algo.args.ptx_data 'arithmatic': no file .*conf/data/arithmatic.yaml"):
        ppo.check_rows([{"prompt": "p", "completion": "c"}], bad, "algo")
