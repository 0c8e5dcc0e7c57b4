"""pass@k for tasks with an exact answer (an `answer` column): n samples per held-out prompt at the harness's
temperature, and the unbiased estimator of Chen et al. (2021), pass@k = E_prompts[1 - C(n - c, k) / C(n, k)] with
c of the n samples correct. Reports pass_at_1 and pass_at_<k> from the same samples (R1-style RL is claimed to
raise pass@1 while pass@k, what the policy can reach at all, stays put or falls). Off for tasks without answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb

from zoo import seeds
from zoo.checks import check_block
from zoo.eval.metrics import mean

KEY = "pass_at_k"


@dataclass
class PassAtKConfig:
    """The `eval.pass_at_k` section."""

    prompts: int = field(metadata={"help": "The first N held-out prompts with an answer (0: off).",
                                   "check": (lambda v: v >= 0, "an integer >= 0 (0: off)")})
    samples: int = field(metadata={"help": "n: samples per prompt (the estimator needs n >= k).",
                                   "check": (lambda v: v >= 1, "an integer >= 1")})
    k: int = field(metadata={"help": "The k of pass@k (pass@1 is always reported too).",
                             "check": (lambda v: v >= 1, "an integer >= 1")})


def check_config(section, path: str) -> None:
    from zoo.checks import require

    values = check_block(section, PassAtKConfig, path)
    require(values["samples"] >= values["k"], f"{path}.samples={values['samples']}: expected >= k={values['k']} (the "
                                              f"estimator draws k of the n samples)")


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that k of the n samples, c of them correct, drawn without replacement include a correct one."""
    return 1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k)


def measure(policy, tokenizer, section, *, eval_cfg, rows) -> dict:
    from zoo.data import task_columns
    from zoo.generation import sample
    from zoo.rewards.verifiable import accuracy_reward

    rows = [r for r in rows if r.get("answer") is not None][: int(section.prompts)]
    n, k = int(section.samples), int(section.k)
    if not rows:
        return {}
    samples = sample(policy, tokenizer, [r["prompt"] for r in rows], max_new_tokens=eval_cfg.max_new_tokens,
                     temperature=eval_cfg.temperature or 1.0, top_p=eval_cfg.top_p, num_return_sequences=n,
                     batch_size=eval_cfg.batch_size, seed=seeds.seed_for("eval.sampling", eval_cfg.seed))
    right = accuracy_reward(samples.prompts, samples.completions, **task_columns(rows, repeat=n))
    counts = [int(sum(right[i * n:(i + 1) * n])) for i in range(len(rows))]
    return {"pass_at_1": mean(pass_at_k(n, c, 1) for c in counts),
            f"pass_at_{k}": mean(pass_at_k(n, c, k) for c in counts)}
