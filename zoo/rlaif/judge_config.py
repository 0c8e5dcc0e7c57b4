"""The RLAIF algorithms' `judge:` and `judge_check:` blocks, one dataclass each with help text per field, checked by
zoo.checks.check_block before anything loads (zoo.rlaif.judging.check_judge / check_judge_check add the rules
that span fields or look at files); their defaults are the config groups conf/judge/ and conf/judge_check/ that
the algorithm files pull in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("logprob", "pointwise", "reward")
AT_CHANCE = ("warn", "stop", "off")


@dataclass
class JudgeConfig:
    kind: str | None = field(default="logprob", metadata={
        "help": "logprob: pairwise P(A) vs P(B), both orders averaged (soft labels); pointwise: the expected 1-10 "
                "score of each response, P(a > b) = sigmoid(s_a - s_b); reward: a reward function of the zoo "
                "(`reward`), hard labels, ties 0.5 (null: logprob).", "choices": KINDS})
    model: str | None = field(default=None, metadata={
        "help": "kind=logprob/pointwise: the judge LM. null: the stage's starting weights (frozen); a conf/model "
                "name (e.g. qwen2.5-0.5b), a local model dir or a hub id."})
    constitution: str | None = field(default=None, metadata={
        "help": "A constitution: a file name of conf/constitution/ or a path (null: default); its principles "
                "name the questions."})
    principle: str | None = field(default=None, metadata={
        "help": "kind=logprob/pointwise (required): a principle name of the constitution, or a question written "
                "out."})
    reward: str | None = field(default=None, metadata={
        "help": "kind=reward (required): a reward function name, e.g. sentiment (a gold judge), rbr, reward_model."})
    noise: float | None = field(default=0.0, metadata={
        "help": "Flip each label with this probability (zoo.judges.noisy): a judge of known accuracy 1 - noise on "
                "the pairs its inner judge gets right; 0: no label noise.",
        "check": (lambda v: 0 <= v <= 1, "a flip probability in [0, 1] (0: no label noise)")})


@dataclass
class JudgeCheckConfig:
    pairs: int = field(default=32, metadata={
        "help": "Gold-labelled pairs to score the judge on before it labels (the stage's judge/* metrics); 0: no "
                "check.",
        "check": (lambda v: v >= 0, "an integer >= 0 (0: no check)")})
    at_chance: str = field(default="warn", metadata={
        "help": "When the 95% interval of the judge's accuracy against gold reaches 0.5: warn (a loud banner), "
                "stop (an error before training) or off (log the numbers only).", "choices": AT_CHANCE})
    min_gold_margin: float = field(default=0.0, metadata={
        "help": "Pairs sampled and ranked by the task's gold: keep those whose gold scores differ by more than "
                "this.", "check": (lambda v: v >= 0, "a gold-score margin >= 0")})
    path: str | None = field(default=None, metadata={
        "help": "A .jsonl/.json/.parquet file of {prompt, chosen, rejected} rows to use as the gold pairs "
                "instead."})
