"""Mode collapse: how alike a policy's samples for one prompt are, and how peaked its next-token distribution is.

  self_bleu      mean over prompts and samples of BLEU (sacrebleu, 0..1) of one sample against the prompt's other
                 k-1 samples: 1 when every sample is the same text, near 0 for unrelated texts
  token_entropy  mean entropy (nats) of the policy's next-token distribution (temperature 1) over the tokens of
                 its own samples: a collapsed policy puts nearly all mass on one token
Both use the first `prompts` held-out prompts, `samples_per_prompt` samples each, at the harness's temperature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from zoo import seeds
from zoo.checks import check_block
from zoo.eval.metrics import mean

KEY = "diversity"


@dataclass
class DiversityConfig:
    """The `eval.diversity` section."""

    prompts: int = field(metadata={"help": "The first N held-out prompts (0: off).",
                                   "check": (lambda v: v >= 0, "an integer >= 0 (0: off)")})
    samples_per_prompt: int = field(metadata={"help": "Samples per prompt that self-BLEU compares.",
                                              "check": (lambda v: v >= 2, "an integer >= 2")})


def check_config(section, path: str) -> None:
    check_block(section, DiversityConfig, path)


def self_bleu(groups: list[list[str]]) -> float | None:
    """Mean sentence BLEU (0..1) of each text against the other texts of its group."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU(effective_order=True)
    scores = [bleu.sentence_score(text, group[:i] + group[i + 1:]).score / 100
              for group in groups if len(group) > 1 for i, text in enumerate(group)]
    return mean(scores)


def entropies(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each row's softmax distribution."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def token_entropy(model, prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int,
                  batch_size: int) -> float | None:
    from zoo.generation import per_completion_token

    per_token = per_completion_token(model, prompt_ids, completion_ids, pad_id, lambda logits, _: entropies(logits),
                                     batch_size)
    return mean(float(v) for t in per_token for v in t)


def measure(policy, tokenizer, section, *, eval_cfg, rows) -> dict:
    from zoo.generation import sample

    n, k = int(section.prompts), int(section.samples_per_prompt)
    if n == 0 or not rows:
        return {}
    prompts = [r["prompt"] for r in rows[:n]]
    samples = sample(policy, tokenizer, prompts, max_new_tokens=eval_cfg.max_new_tokens,
                     temperature=eval_cfg.temperature or 1.0, top_p=eval_cfg.top_p, num_return_sequences=k,
                     batch_size=eval_cfg.batch_size, seed=seeds.seed_for("eval.sampling", eval_cfg.seed))
    texts = samples.texts
    groups = [texts[i * k: (i + 1) * k] for i in range(len(prompts))]
    return {
        "self_bleu": self_bleu(groups),
        "token_entropy": token_entropy(policy, samples.prompt_ids, samples.completion_ids, tokenizer.pad_token_id,
                                       eval_cfg.batch_size),
    }
