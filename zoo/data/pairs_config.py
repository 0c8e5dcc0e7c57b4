"""The `pairs:` blocks of the preference algorithms, one dataclass each with help text per field, checked by
zoo.checks.check_block before anything loads; their defaults are the config group conf/pairs/ (gold.yaml,
judge.yaml) that the algorithm files pull in.

    GoldPairsConfig   prompts without chosen/rejected: samples from the policy ranked by the task's gold signal
                      (dpo, rm, kto, orpo, simpo, cpo; read by zoo.data.pairs.sample_pairs)
    JudgePairsConfig  two samples per prompt labelled by a judge (rlaif, rlaif_rm, online_dpo; read by
                      zoo.rlaif.judging.sample_and_label)
"""

from __future__ import annotations

from dataclasses import dataclass, field

_TEMPERATURE = (lambda v: v > 0, "a sampling temperature > 0 (greedy samples all tie)")
_TOKENS = (lambda v: v >= 1, "an integer >= 1")


@dataclass
class GoldPairsConfig:
    num_samples: int = field(metadata={
        "help": "Completions sampled per prompt; the best and the worst by the gold signal become chosen and "
                "rejected.", "check": (lambda v: v >= 2, "an integer >= 2 (a pair needs two samples)")})
    max_new_tokens: int = field(metadata={"help": "Tokens sampled per completion.", "check": _TOKENS})
    temperature: float = field(metadata={"help": "Sampling temperature of the completions.", "check": _TEMPERATURE})
    min_margin: float = field(metadata={
        "help": "Drop a prompt whose best and worst gold scores differ by no more than this (ties carry no "
                "preference).", "check": (lambda v: v >= 0, "a gold-score margin >= 0")})
    top_p: float | None = field(default=1.0, metadata={
        "help": "Nucleus sampling threshold (1.0 = off).", "check": (lambda v: 0 < v <= 1, "a value in (0, 1]")})
    batch_size: int | None = field(default=16, metadata={
        "help": "Prompts per generate call.", "check": (lambda v: v >= 1, "an integer >= 1")})


@dataclass
class JudgePairsConfig:
    max_new_tokens: int = field(metadata={"help": "Tokens sampled per completion (two per prompt).",
                                          "check": _TOKENS})
    temperature: float = field(metadata={"help": "Sampling temperature of the two completions.",
                                         "check": _TEMPERATURE})
    min_margin: float = field(metadata={
        "help": "Drop a pair whose position-debiased P(a > b) is within this of 0.5 (the judge cannot tell them "
                "apart).",
        "check": (lambda v: 0 <= v < 0.5, "a margin in [0, 0.5): pairs whose P(a > b) is within it of 0.5 are "
                                           "dropped")})

