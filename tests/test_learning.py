"""Direction checks: a few seconds of each algorithm on the tiny model move its own objective the right way on
data the run never trained on, and the wrong way when the algorithm's loss is negated.

The end-to-end tests check that weights move and losses stay finite, which a loss with a flipped sign passes, and
the checks that a run really improves (tests/test_slow.py) take minutes. These train the random tiny model with
full fine-tuning and high learning rates on signals it picks up in a few steps: preference pairs told apart by
their last words, and a dense toy reward. Every check also runs with its loss negated ([negated_loss]; for ORPO,
CPO and SimPO only the preference term, PPO only its policy-gradient surrogate), which must move the metric the
wrong way: proof that the check can fail, and that the patch still reaches the loss after a refactor (a patch that
no longer applies fails the negated variant). DPO's check also reads the first step's loss, which tells its loss
types apart.

"measured" above each check: seeds 0-4 (trainer.seed and eval.seed both vary with SEED), plain / negated runs,
on 2 CPU cores.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from zoo.train import run

SEED = 0
NEGATE = pytest.mark.parametrize("negate", [False, True], ids=["plain", "negated_loss"])


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny model's matrices are too small to share between threads, and on a busy 2-core machine two OpenMP
    threads spin-waiting on each other slowed runs 2-10x while another test run shared the cores (the same SFT run:
    1.7 s on one thread, 3.7-16 s on two; this module: 37 s on one thread, 100 s for its first 6 tests on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _seeds() -> list[str]:
    return [f"trainer.seed={SEED}", f"eval.seed={1234 + SEED}"]


def _assert_direction(value: float, margin: float, negate: bool, what: str) -> None:
    """Plain runs must move `value` up by at least `margin`; with the loss negated it must go down."""
    if negate:
        assert value < 0, (f"{what}: {value:+.3f} with the loss negated, still the right way: the check cannot see "
                           f"a sign error, or the negating patch no longer reaches the loss")
    else:
        assert value >= margin, f"{what}: {value:+.3f}, expected at least +{margin}"


# --- data ------------------------------------------------------------------------------------------------------

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
    """Chosen = a filler sentence + GOOD, rejected = the same filler + BAD. Held-out pairs share no prompt and no
    filler with the training pairs, so only the GOOD-over-BAD preference carries over to them."""
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


# --- negating a loss -------------------------------------------------------------------------------------------

def _negate_compute_loss(monkeypatch, trainer_cls) -> None:
    """trainer_cls.compute_loss returning minus its loss: gradient ascent on the algorithm's own objective. The
    zoo trains with subclasses of these TRL classes (zoo.algos.base.guarded), which inherit the patch."""
    original = trainer_cls.compute_loss

    def negated(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        return (-out[0], *out[1:]) if isinstance(out, tuple) else -out

    monkeypatch.setattr(trainer_cls, "compute_loss", negated)


def _negate_preference_term(monkeypatch, algo: str) -> None:
    """Only the preference term of ORPO / CPO / SimPO negated, their NLL on the chosen completion left as it is.

    TRL 1.16's ORPOTrainer forms its loss as `nll - odds_ratio_loss(...)[0].mean()` and CPOTrainer as
    `cpo_loss(...)[0].mean() + cpo_alpha * nll`; both preference terms come from those two methods. Negating the
    whole loss would also turn the NLL into ascent on the chosen completion, which lowers the margin by itself, so
    a sign error in the preference term alone could pass; this negates exactly that term."""
    from zoo.algos.experimental import CPOTrainer, ORPOTrainer

    cls, name = (ORPOTrainer, "odds_ratio_loss") if algo == "orpo" else (CPOTrainer, "cpo_loss")
    original = getattr(cls, name)

    def negated(self, *args, **kwargs):
        losses, *rest = original(self, *args, **kwargs)
        return (-losses, *rest)

    monkeypatch.setattr(cls, name, negated)


def _negate_ppo_policy_loss(monkeypatch) -> None:
    """The zoo's PPOTrainer forms its loss as pg_loss + vf_coef * vf_loss in `_optimise`, pg_loss coming from
    zoo.rl.math.clipped_policy_loss. Only that surrogate decides which way the policy moves, so it is the term
    negated (negating the value loss as well would only wreck the critic)."""
    import zoo.rl.math as rlm

    original = rlm.clipped_policy_loss

    def negated(*args, **kwargs):
        loss, stats = original(*args, **kwargs)
        return -loss, stats

    monkeypatch.setattr(rlm, "clipped_policy_loss", negated)


# --- measuring exported models ---------------------------------------------------------------------------------

def _tokenizer(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def _completion_logprobs(model_dir, tokenizer, rows: list[dict], key: str) -> list[torch.Tensor]:
    from transformers import AutoModelForCausalLM

    from zoo.generation import completion_logprobs

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return completion_logprobs(model, _ids(tokenizer, [r["prompt"] for r in rows]),
                               _ids(tokenizer, [r[key] for r in rows]), tokenizer.pad_token_id, temperature=1.0,
                               batch_size=64)


def _log_ratio(policy_dir, reference_dir, tokenizer, rows: list[dict], key: str) -> torch.Tensor:
    """log pi(completion | prompt) - log pi_ref(completion | prompt), one value per row."""
    policy = _completion_logprobs(policy_dir, tokenizer, rows, key)
    reference = _completion_logprobs(reference_dir, tokenizer, rows, key)
    return torch.stack([p.sum() - r.sum() for p, r in zip(policy, reference)])


def _token_nll(model_dir, tokenizer, rows: list[dict]) -> float:
    return -torch.cat(_completion_logprobs(model_dir, tokenizer, rows, "completion")).mean().item()


@torch.no_grad()
def _rm_scores(model_dir, tokenizer, rows: list[dict], key: str) -> torch.Tensor:
    """Rewards of prompt + completion + EOS, the text RewardTrainer trains on (the head pools the last non-pad
    token)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32).eval()
    texts = [r["prompt"] + r[key] + tokenizer.eos_token for r in rows]
    enc = tokenizer(texts, add_special_tokens=False, padding=True, padding_side="right", return_tensors="pt")
    return model(**enc).logits[:, 0]


# The offline algorithms are measured on their exported models, so the harness eval is cut to one token.
_OFFLINE = ("peft=none", "data=trl", "data.max_rows=64", "trainer.per_device_train_batch_size=8",
            "eval.num_prompts=1", "eval.max_new_tokens=1")


# --- SFT -------------------------------------------------------------------------------------------------------

# Held-out completion NLL, starting policy minus trained (nats/token; the random start is 6.29).
# measured: +0.936..+0.958 plain, -0.943..-0.961 negated.
SFT_MIN_DROP = 0.5


@NEGATE
def test_sft_lowers_held_out_nll(compose, tiny_dir, tmp_path, monkeypatch, negate):
    from trl import SFTTrainer

    if negate:
        _negate_compute_loss(monkeypatch, SFTTrainer)
    rows = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in preference_pairs(False, 64)]
    out = tmp_path / "run"
    run(compose("algo=sft", *_OFFLINE, f"data.path={_write_jsonl(tmp_path / 'sft.jsonl', rows)}",
                "trainer.max_steps=8", "algo.args.learning_rate=1e-3", *_seeds(), output_dir=out))
    tok = _tokenizer(tiny_dir)
    held_out = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in preference_pairs(True, 32)]
    drop = _token_nll(tiny_dir, tok, held_out) - _token_nll(out / "stages" / "sft" / "model", tok, held_out)
    _assert_direction(drop, SFT_MIN_DROP, negate, "SFT: drop in held-out NLL (nats/token)")


# --- reward model ----------------------------------------------------------------------------------------------

# Pairwise accuracy on the held-out pairs (chance 0.5).
# measured: 1.000 in every plain run (mean reward margin +3.94..+4.45), 0.000 in every negated one (-4.10..-4.78).
RM_MIN_ACCURACY = 0.9


@NEGATE
def test_reward_model_ranks_held_out_pairs(compose, tiny_dir, tmp_path, monkeypatch, negate):
    from trl import RewardTrainer

    if negate:
        _negate_compute_loss(monkeypatch, RewardTrainer)
    out, pairs = tmp_path / "run", _write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(False, 64))
    run(compose("algo=rm", *_OFFLINE, f"data.path={pairs}", "trainer.max_steps=8", "algo.args.learning_rate=1e-3",
                *_seeds(), output_dir=out))
    tok, model_dir, held_out = _tokenizer(tiny_dir), out / "stages" / "rm" / "model", preference_pairs(True, 32)
    margin = _rm_scores(model_dir, tok, held_out, "chosen") - _rm_scores(model_dir, tok, held_out, "rejected")
    accuracy = (margin > 0).float().mean().item()
    _assert_direction(accuracy - 0.5, RM_MIN_ACCURACY - 0.5, negate, "RM: held-out pairwise accuracy above chance")


# --- DPO -------------------------------------------------------------------------------------------------------

# Held-out mean of (log-ratio of chosen) - (log-ratio of rejected), log-ratio = policy logp - reference logp summed
# over the completion (nats; 0 at the start). measured: sigmoid +10.47..+10.95 plain, -10.50..-11.46 negated;
# ipo +10.49..+10.94 plain, -10.50..-11.45 negated. (The two stay close because Adam's first steps follow the
# gradient's sign, which both losses share at the start; ipo's train loss is ~22 against sigmoid's ~0.5.)
DPO_MIN_MARGIN = 5.0
DPO_BETA = 0.1
# So the margin alone cannot tell the loss types apart: the first step's loss does. The policy starts as its
# reference, so every log-ratio is 0 there and the loss is the loss type's value at 0: sigmoid -log(sigmoid(0)) =
# log 2, ipo (0 - 1 / (2 beta))^2 = 25 at beta 0.1 (negated: minus those).
DPO_FIRST_LOSS = {"sigmoid": 0.6931471805599453, "ipo": (1 / (2 * DPO_BETA)) ** 2}


def _first_logged_loss(stage_dir: Path) -> float:
    """The loss logged at step 1 (logging_steps=1), computed on the starting weights."""
    history = [json.loads(line) for line in (stage_dir / "history.jsonl").read_text().splitlines()]
    first = next(h for h in history if "loss" in h)
    assert first["step"] == 1, first
    return first["loss"]


@NEGATE
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_raises_held_out_log_ratio_margin(compose, tiny_dir, tmp_path, monkeypatch, loss_type, negate):
    from trl import DPOTrainer

    if negate:
        _negate_compute_loss(monkeypatch, DPOTrainer)
    out, pairs = tmp_path / "run", _write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(False, 64))
    run(compose("algo=dpo", *_OFFLINE, f"data.path={pairs}", f"algo.args.loss_type={loss_type}", f"algo.args.beta={DPO_BETA}",
                "algo.args.learning_rate=1e-3", "trainer.max_steps=4", *_seeds(), output_dir=out))
    tok, policy, held_out = _tokenizer(tiny_dir), out / "stages" / "dpo" / "model", preference_pairs(True, 32)
    margin = (_log_ratio(policy, tiny_dir, tok, held_out, "chosen")
              - _log_ratio(policy, tiny_dir, tok, held_out, "rejected")).mean().item()
    _assert_direction(margin, DPO_MIN_MARGIN, negate, f"DPO ({loss_type}): held-out chosen-minus-rejected log-ratio")
    expected = DPO_FIRST_LOSS[loss_type] * (-1 if negate else 1)
    assert _first_logged_loss(out / "stages" / "dpo") == pytest.approx(expected, rel=1e-3), (
        f"DPO ({loss_type}): the first step's loss is not the {loss_type} loss at log-ratio 0: loss_type did not "
        f"reach the trainer's loss")


# --- KTO, ORPO, SimPO, CPO -------------------------------------------------------------------------------------

# The DPO check's held-out chosen-minus-rejected log-ratio against the start (reference-free methods have no
# reference in training; the measurement still compares with the starting weights). KTO trains on the pairs split
# into desirable / undesirable rows. ORPO, CPO and SimPO have only their preference term negated
# ([_negate_preference_term]): ORPO's and CPO's NLL on the chosen completion raises the margin by itself. ORPO runs
# at lambda (beta) = 2, where the odds-ratio term outweighs that NLL: at the config's 0.1 the margin was +4.54 plain
# and still +3.44 with the odds-ratio term negated (seed 0), +6.94 / -1.43 at 1.0. measured (seeds 0-4, lr 1e-3,
# 4 steps), plain / negated: kto +6.19 / -6.76 on every seed (sequential sampler, no adapter, no dropout: nothing
# random); orpo +8.14..+8.50 / -6.39..-6.98; simpo +10.29..+10.58 / -10.17..-10.80 (cpo_alpha=0: the preference
# term is the whole loss); cpo +8.20..+8.58 / -6.49..-7.27. Thresholds at about half the smallest.
FAMILY_MIN_MARGIN = {"kto": 3.0, "orpo": 4.0, "simpo": 5.0, "cpo": 4.0}
FAMILY_ARGS = {"orpo": ("algo.args.beta=2.0",)}


@NEGATE
@pytest.mark.parametrize("algo", ["kto", "orpo", "simpo", "cpo"])
def test_preference_family_raises_held_out_log_ratio_margin(compose, tiny_dir, tmp_path, monkeypatch, algo,
                                                            negate):
    if negate and algo == "kto":
        from trl import KTOTrainer

        _negate_compute_loss(monkeypatch, KTOTrainer)
    elif negate:
        _negate_preference_term(monkeypatch, algo)
    out, pairs = tmp_path / "run", _write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(False, 64))
    run(compose(f"algo={algo}", *_OFFLINE, f"data.path={pairs}", "algo.args.learning_rate=1e-3",
                "trainer.max_steps=4", *FAMILY_ARGS.get(algo, ()), *_seeds(), output_dir=out))
    tok, policy, held_out = _tokenizer(tiny_dir), out / "stages" / algo / "model", preference_pairs(True, 32)
    margin = (_log_ratio(policy, tiny_dir, tok, held_out, "chosen")
              - _log_ratio(policy, tiny_dir, tok, held_out, "rejected")).mean().item()
    _assert_direction(margin, FAMILY_MIN_MARGIN[algo], negate, f"{algo}: held-out chosen-minus-rejected log-ratio")


# --- online algorithms on a dense toy reward -------------------------------------------------------------------

def early_letters(prompts, completions, **columns):
    """Share of a completion's letters in a..m: about 0.5 under the random model and different for every sample,
    so a few policy-gradient steps move it either way (the conftest's fraction_of_a starts near 0.06 and gained
    +0.14 where this gained +0.33 in otherwise identical 10-step GRPO runs)."""
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


def _online(tmp_path, toy_reward) -> tuple[str, ...]:
    """Prompt-only rows from a file. The harness keeps eval.num_prompts of them out of training and samples the
    starting and the trained policy on them with one seed; its proxy_reward is the toy reward there."""
    rows = [{"prompt": p} for p in _prompts()]
    return ("peft=none", "data=trl", f"data.path={_write_jsonl(tmp_path / 'prompts.jsonl', rows)}", "data.max_rows=96",
            toy_reward, "eval.num_prompts=32", "eval.max_new_tokens=8", *_seeds())


def _reward_gain(metrics: dict) -> float:
    return metrics["eval/proxy_reward"] - metrics["before/proxy_reward"]


# Held-out toy reward, trained minus starting policy (the start scores 0.51..0.57).
# measured: ppo +0.420..+0.473 plain, -0.181..-0.569 negated; grpo +0.343..+0.488, -0.428..-0.552;
# rloo +0.393..+0.444, -0.405..-0.552; online_dpo +0.252..+0.443, -0.206..-0.531.
ONLINE_MIN_GAIN = 0.15

# No KL term in any of the three (ppo kl_coef=0, grpo's default beta=0, rloo beta=0): the check is about the sign of
# the policy-gradient term. At PPO's default kl_coef=0.05 the k1 penalty summed over 8 tokens grew as large as the
# [0, 1] reward and gains fell to +0.08..+0.32; RLOO at its default beta=0.05 gained +0.05..+0.25 in 20 steps.
_RL = ("trainer.per_device_train_batch_size=16", "algo.args.learning_rate=1e-2", "algo.args.max_completion_length=8")
ONLINE_RL = {
    "ppo": [*_RL, "trainer.max_steps=10", "algo.args.kl_coef=0.0"],
    "grpo": [*_RL, "trainer.max_steps=20"],
    "rloo": [*_RL, "trainer.max_steps=20", "algo.args.beta=0.0"],
}


@NEGATE
@pytest.mark.parametrize("algo", sorted(ONLINE_RL))
def test_online_rl_raises_held_out_reward(compose, toy_reward, tmp_path, monkeypatch, algo, negate):
    if negate:
        if algo == "ppo":
            _negate_ppo_policy_loss(monkeypatch)
        else:
            from trl import GRPOTrainer, RLOOTrainer

            _negate_compute_loss(monkeypatch, {"grpo": GRPOTrainer, "rloo": RLOOTrainer}[algo])
    metrics = run(compose(f"algo={algo}", *_online(tmp_path, toy_reward), *ONLINE_RL[algo],
                          output_dir=tmp_path / "run"))
    _assert_direction(_reward_gain(metrics), ONLINE_MIN_GAIN, negate, f"{algo}: held-out toy reward gain")


@NEGATE
def test_online_dpo_raises_its_judges_score(compose, toy_reward, tmp_path, monkeypatch, negate):
    from trl import DPOTrainer

    if negate:
        _negate_compute_loss(monkeypatch, DPOTrainer)
    # beta=0.01 keeps DPO's sigmoid from saturating on each round's fresh, noisy pairs (at 0.1 the gain was
    # +0.06 after 10 steps); 4 rounds of 2 steps gained +0.21..+0.33 but the negated runs only -0.02..-0.26. At 6
    # rounds, over 13 shifts of every sampling seed (docs/testing.md): plain +0.16..+0.52, negated -0.60..-0.18 and
    # one +0.014 (a negated run whose loss stayed at -log 2: nothing learnt in 12 steps). 8 rounds fixed that shift
    # but took a plain run to -0.015 (lr 1e-2 is near the edge of stable there).
    metrics = run(compose("algo=online_dpo", *_online(tmp_path, toy_reward), "algo.judge.kind=reward",
                          "algo.judge.reward=early_letters", "algo.rounds=6", "algo.steps_per_round=2",
                          "trainer.max_steps=-1", "trainer.per_device_train_batch_size=16",
                          "algo.pairs.max_new_tokens=8", "algo.args.max_length=64", "algo.args.beta=0.01",
                          "algo.args.learning_rate=1e-2", output_dir=tmp_path / "run"))
    _assert_direction(_reward_gain(metrics), ONLINE_MIN_GAIN, negate, "online DPO: held-out judge score gain")
