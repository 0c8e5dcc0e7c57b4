"""Direction checks: a few seconds of each algorithm on the tiny model move its own objective the right way on
data the run never trained on, and the wrong way when the algorithm's loss is negated.

The end-to-end tests check that weights move and losses are finite, which a loss with a flipped sign passes;
the checks that a run really improves (tests/test_slow.py) take minutes on the embedded model. These train the
random tiny model with full fine-tuning and high learning rates on signals it can pick up in a few steps:
preference pairs told apart by their last words, and a dense toy reward. Each check also runs with the loss
negated (negate=True), which must move its metric the other way: proof that the check can fail, and that the
patch still reaches the loss after a refactor (a patch that stopped applying fails the negated variant).

Margins come from runs on 2 CPU cores, recorded above each check as "measured" (seeds 0, 1, 2, varying
trainer.seed and eval.seed) for the plain and the negated runs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from zoo.train import run

SEED = 0


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny model's matrices are too small to split across threads, and on a busy 2-core machine two OpenMP
    threads spin-waiting on each other made the same SFT run 2-10x slower (1.7 s on one thread, 3.7-16 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# --- data: prompts and preference pairs with a learnable, held-out-checkable signal ---------------------------

_OPENERS = ["Tell me about", "What do you think of", "Describe", "Give a short review of", "Say something about",
            "How was", "Write one line on", "Share your view of"]
_SUBJECTS = ["the new phone", "this old film", "the city park", "my last trip", "the coffee shop", "the library",
             "the train ride", "the hotel room", "the concert", "the museum", "the bakery", "the football match",
             "the garden", "the school play", "the river walk", "the night market"]
_TRAIN_FILLERS = ["It was busy in the morning.", "We went there on a Sunday.", "It took about two hours.",
                  "There were many people around.", "The weather was cold and grey.",
                  "We paid a small fee at the door.", "My sister came along too.", "It is close to the station."]
_HELD_OUT_FILLERS = ["The lights were very bright.", "Nobody asked us any questions.", "It opened again last spring.",
                     "We sat near the back."]
GOOD, BAD = " I loved it.", " I hated it."


def _prompts() -> list[str]:
    prompts = [f"{o} {s}?" for o in _OPENERS for s in _SUBJECTS]  # 128 distinct prompts
    random.Random(0).shuffle(prompts)
    return prompts


def preference_pairs(held_out: bool, n: int) -> list[dict]:
    """Chosen = filler + GOOD, rejected = the same filler + BAD. Held-out pairs share no prompt and no filler
    with the training pairs, so only the GOOD/BAD preference carries over."""
    prompts, fillers = (_prompts()[64:], _HELD_OUT_FILLERS) if held_out else (_prompts()[:64], _TRAIN_FILLERS)
    rng = random.Random(1 if held_out else 0)
    rows = []
    for i in range(n):
        filler = " " + rng.choice(fillers)
        rows.append({"prompt": prompts[i % len(prompts)], "chosen": filler + GOOD, "rejected": filler + BAD})
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _seeds() -> list[str]:
    return [f"trainer.seed={SEED}", f"eval.seed={1234 + SEED}"]


# --- negating a loss -----------------------------------------------------------------------------------------

def _negate_compute_loss(monkeypatch, trainer_cls) -> None:
    """trainer_cls.compute_loss returning minus its loss: gradient ascent on the algorithm's own objective."""
    original = trainer_cls.compute_loss

    def negated(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        return (-out[0], *out[1:]) if isinstance(out, tuple) else -out

    monkeypatch.setattr(trainer_cls, "compute_loss", negated)


def _negate_ppo_policy_loss(monkeypatch) -> None:
    """The zoo's PPOTrainer forms its loss as pg_loss + vf_coef * vf_loss (zoo/rl/ppo_trainer.py, _optimise); only
    the clipped surrogate decides which way the policy moves, so that term is the one negated (negating the value
    loss as well would only wreck the critic)."""
    import zoo.rl.math as rlm

    original = rlm.clipped_policy_loss

    def negated(*args, **kwargs):
        loss, stats = original(*args, **kwargs)
        return -loss, stats

    monkeypatch.setattr(rlm, "clipped_policy_loss", negated)


# The negated variants: each proves its check can fail.
NEGATE = [False, True]


# --- measuring exported models -------------------------------------------------------------------------------

def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def _completion_logprobs(model_dir, tokenizer, prompts: list[str], completions: list[str]) -> list[torch.Tensor]:
    from transformers import AutoModelForCausalLM

    from zoo.generation import completion_logprobs

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return completion_logprobs(model, _tokenize(tokenizer, prompts), _tokenize(tokenizer, completions),
                               tokenizer.pad_token_id, temperature=1.0, batch_size=64)


def _sequence_logprobs(model_dir, tokenizer, rows: list[dict], key: str) -> torch.Tensor:
    logps = _completion_logprobs(model_dir, tokenizer, [r["prompt"] for r in rows], [r[key] for r in rows])
    return torch.stack([lp.sum() for lp in logps])


def _token_nll(model_dir, tokenizer, rows: list[dict]) -> float:
    logps = _completion_logprobs(model_dir, tokenizer, [r["prompt"] for r in rows], [r["completion"] for r in rows])
    return -torch.cat(logps).mean().item()


@torch.no_grad()
def _rm_scores(model_dir, tokenizer, rows: list[dict], key: str) -> torch.Tensor:
    """Scalar rewards of prompt + completion + EOS, the text RewardTrainer scores (pooled at the last real token)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32).eval()
    texts = [r["prompt"] + r[key] + tokenizer.eos_token for r in rows]
    enc = tokenizer(texts, add_special_tokens=False, padding=True, padding_side="right", return_tensors="pt")
    return model(**enc).logits[:, 0]


def _tokenizer(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


# Offline algorithms are measured on their exported models; the harness eval is not needed beyond one token.
_NO_EVAL = ("eval.num_prompts=1", "eval.max_new_tokens=1")


# --- SFT -----------------------------------------------------------------------------------------------------

# measured held-out NLL drop (nats/token, start 6.29): PLACEHOLDER
SFT_MIN_DROP = 0.3


@pytest.mark.parametrize("negate", NEGATE)
def test_sft_lowers_held_out_nll(compose, tiny_dir, tmp_path, monkeypatch, negate):
    from trl import SFTTrainer

    if negate:
        _negate_compute_loss(monkeypatch, SFTTrainer)
    rows = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in preference_pairs(False, 64)]
    data = _write_jsonl(tmp_path / "sft.jsonl", rows)
    out = tmp_path / "run"
    run(compose("algo=sft", "peft=none", "data=trl", f"data.path={data}", "data.max_rows=64", "trainer.max_steps=8",
                "trainer.per_device_train_batch_size=8", "algo.args.learning_rate=1e-3", *_seeds(), *_NO_EVAL,
                output_dir=out))
    tok = _tokenizer(tiny_dir)
    held_out = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in preference_pairs(True, 32)]
    drop = _token_nll(tiny_dir, tok, held_out) - _token_nll(out / "stages" / "sft" / "model", tok, held_out)
    print(f"sft negate={negate}: held-out NLL drop {drop:+.3f}")
    if negate:
        assert drop < 0, f"SFT with a negated loss still lowered held-out NLL ({drop:+.3f})"
    else:
        assert drop >= SFT_MIN_DROP, f"SFT lowered held-out NLL by only {drop:+.3f} nats/token"


# --- reward model --------------------------------------------------------------------------------------------

# measured held-out pairwise accuracy / mean margin: PLACEHOLDER
RM_MIN_ACCURACY = 0.9


@pytest.mark.parametrize("negate", NEGATE)
def test_reward_model_ranks_held_out_pairs(compose, tiny_dir, tmp_path, monkeypatch, negate):
    from trl import RewardTrainer

    if negate:
        _negate_compute_loss(monkeypatch, RewardTrainer)
    data = _write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(False, 64))
    out = tmp_path / "run"
    run(compose("algo=rm", "peft=none", "data=trl", f"data.path={data}", "data.max_rows=64", "trainer.max_steps=8",
                "trainer.per_device_train_batch_size=8", "algo.args.learning_rate=1e-3", *_seeds(), *_NO_EVAL,
                output_dir=out))
    tok, model_dir = _tokenizer(tiny_dir), out / "stages" / "rm" / "model"
    held_out = preference_pairs(True, 32)
    margin = _rm_scores(model_dir, tok, held_out, "chosen") - _rm_scores(model_dir, tok, held_out, "rejected")
    accuracy = (margin > 0).float().mean().item()
    print(f"rm negate={negate}: held-out accuracy {accuracy:.3f}, mean margin {margin.mean().item():+.3f}")
    if negate:
        assert accuracy < 0.5, f"a reward model trained with a negated loss still ranks held-out pairs ({accuracy})"
    else:
        assert accuracy >= RM_MIN_ACCURACY, f"held-out pairwise accuracy {accuracy} (chance is 0.5)"


# --- DPO -----------------------------------------------------------------------------------------------------

# measured held-out chosen-minus-rejected log-ratio (nats, 0 at the start): PLACEHOLDER
DPO_MIN_MARGIN = 2.0


@pytest.mark.parametrize("negate", NEGATE)
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_raises_held_out_log_ratio_margin(compose, tiny_dir, tmp_path, monkeypatch, loss_type, negate):
    from trl import DPOTrainer

    if negate:
        _negate_compute_loss(monkeypatch, DPOTrainer)
    data = _write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(False, 64))
    out = tmp_path / "run"
    run(compose("algo=dpo", "peft=none", "data=trl", f"data.path={data}", "data.max_rows=64",
                f"algo.args.loss_type={loss_type}", "algo.args.beta=0.1", "algo.args.learning_rate=1e-3",
                "trainer.max_steps=4", "trainer.per_device_train_batch_size=8", *_seeds(), *_NO_EVAL,
                output_dir=out))
    tok, policy = _tokenizer(tiny_dir), out / "stages" / "dpo" / "model"
    held_out = preference_pairs(True, 32)
    ratio = {k: _sequence_logprobs(policy, tok, held_out, k) - _sequence_logprobs(tiny_dir, tok, held_out, k)
             for k in ("chosen", "rejected")}
    margin = (ratio["chosen"] - ratio["rejected"]).mean().item()
    print(f"dpo {loss_type} negate={negate}: held-out log-ratio margin {margin:+.3f}")
    if negate:
        assert margin < 0, f"DPO ({loss_type}) with a negated loss still raised the held-out margin ({margin:+.3f})"
    else:
        assert margin >= DPO_MIN_MARGIN, f"DPO ({loss_type}) held-out log-ratio margin only {margin:+.3f}"


# --- online algorithms on a dense toy reward -----------------------------------------------------------------

def early_letters(prompts, completions, **columns):
    """Share of a completion's letters that lie in a..m: about 0.5 for the random model and dense (every sample
    scores differently), so a handful of policy-gradient steps can move it either way."""
    from zoo.generation import as_text

    out = []
    for c in completions:
        letters = [ch for ch in as_text(c).lower() if "a" <= ch <= "z"]
        out.append(sum(ch <= "m" for ch in letters) / max(1, len(letters)))
    return out


@pytest.fixture
def toy_reward(monkeypatch):
    from zoo import rewards

    monkeypatch.setitem(rewards.REWARDS, "early_letters", early_letters)
    monkeypatch.setattr(rewards, "KNOWN", sorted([*rewards.KNOWN, "early_letters"]))
    return "+reward.functions.early_letters=1.0"


def _prompt_file(tmp_path) -> Path:
    # data=trl wants a completion (or a pair) per row; the online algorithms only read the prompts.
    return _write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p, "completion": GOOD} for p in _prompts()])


# The harness holds eval.num_prompts prompts out of training and samples both the starting and the trained policy
# on them with the same seed; proxy_reward is the toy reward there.
_ONLINE_EVAL = ("eval.num_prompts=32", "eval.max_new_tokens=8", "data.max_rows=96")


def _reward_gain(metrics: dict) -> float:
    return metrics["eval/proxy_reward"] - metrics["before/proxy_reward"]


ONLINE = {
    "ppo": ["trainer.max_steps=10", "trainer.per_device_train_batch_size=16", "algo.args.learning_rate=1e-2",
            "algo.args.max_completion_length=8"],
    "grpo": ["trainer.max_steps=10", "trainer.per_device_train_batch_size=16", "algo.args.learning_rate=1e-2",
             "algo.args.max_completion_length=8"],
    "rloo": ["trainer.max_steps=10", "trainer.per_device_train_batch_size=16", "algo.args.learning_rate=1e-2",
             "algo.args.max_completion_length=8"],
}
# measured held-out reward gain (start 0.52): PLACEHOLDER
ONLINE_MIN_GAIN = 0.05


@pytest.mark.parametrize("negate", NEGATE)
@pytest.mark.parametrize("algo", sorted(ONLINE))
def test_online_rl_raises_held_out_reward(compose, toy_reward, tmp_path, monkeypatch, algo, negate):
    if negate:
        if algo == "ppo":
            _negate_ppo_policy_loss(monkeypatch)
        else:
            from trl import GRPOTrainer, RLOOTrainer

            _negate_compute_loss(monkeypatch, {"grpo": GRPOTrainer, "rloo": RLOOTrainer}[algo])
    metrics = run(compose(f"algo={algo}", "peft=none", "data=trl", f"data.path={_prompt_file(tmp_path)}", toy_reward,
                          *ONLINE[algo], *_seeds(), *_ONLINE_EVAL, output_dir=tmp_path / "run"))
    gain = _reward_gain(metrics)
    print(f"{algo} negate={negate}: held-out reward {metrics['before/proxy_reward']:.3f} -> "
          f"{metrics['eval/proxy_reward']:.3f} ({gain:+.3f})")
    if negate:
        assert gain < 0, f"{algo} with a negated loss still raised the held-out reward ({gain:+.3f})"
    else:
        assert gain >= ONLINE_MIN_GAIN, f"{algo} raised the held-out reward by only {gain:+.3f}"


# measured: PLACEHOLDER
ONLINE_DPO_MIN_GAIN = 0.05


@pytest.mark.parametrize("negate", NEGATE)
def test_online_dpo_raises_its_judges_score(compose, toy_reward, tmp_path, monkeypatch, negate):
    from trl import DPOTrainer

    if negate:
        _negate_compute_loss(monkeypatch, DPOTrainer)
    # A small beta keeps DPO's sigmoid from saturating on the fresh, noisy pairs of each round.
    metrics = run(compose("algo=online_dpo", "peft=none", "data=trl", f"data.path={_prompt_file(tmp_path)}",
                          toy_reward, "algo.judge.kind=reward", "algo.judge.reward=early_letters", "algo.rounds=4",
                          "algo.steps_per_round=2", "trainer.max_steps=-1", "trainer.per_device_train_batch_size=16",
                          "algo.pairs.max_new_tokens=8", "algo.args.max_length=64", "algo.args.beta=0.01",
                          "algo.args.learning_rate=1e-2", *_seeds(), *_ONLINE_EVAL, output_dir=tmp_path / "run"))
    gain = _reward_gain(metrics)
    print(f"online_dpo negate={negate}: held-out judge score {metrics['before/proxy_reward']:.3f} -> "
          f"{metrics['eval/proxy_reward']:.3f} ({gain:+.3f})")
    if negate:
        assert gain < 0, f"online DPO with a negated loss still raised the judge's score ({gain:+.3f})"
    else:
        assert gain >= ONLINE_DPO_MIN_GAIN, f"online DPO raised the judge's score by only {gain:+.3f}"
