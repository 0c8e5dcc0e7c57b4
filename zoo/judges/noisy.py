"""A judge of known accuracy: any judge whose verdict on each pair is flipped with probability `noise`.

Over a gold rule judge (RuleJudge on the task's gold reward) it is a labeller that is right on a share 1 - noise
of the pairs the gold separates, which is what an RLAIF baseline with a chosen label noise needs
(`judge: {kind: reward, reward: <gold>, noise: 0.2}`). Whether a pair is flipped is drawn from a hash of the seed,
the prompt and the two completions as an unordered pair, so it does not depend on the presentation order (the
judge stays position-consistent), on the batch or on the call: the same pair gets the same label on a resume.
"""

from __future__ import annotations

import hashlib

from zoo.data.pairs import scorer_name


class NoisyJudge:
    def __init__(self, judge, noise: float, seed: int = 0):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise={noise}: a flip probability in [0, 1]")
        self.inner, self.noise, self.seed = judge, float(noise), seed
        self.name = f"{scorer_name(judge)} flipped w.p. {self.noise:g}"

    @property
    def position_consistency(self) -> float | None:
        return getattr(self.inner, "position_consistency", None)

    def flipped(self, prompt, a, b) -> bool:
        first, second = sorted((repr(a), repr(b)))
        key = "\x1f".join((str(self.seed), repr(prompt), first, second)).encode()
        draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0 ** 64  # uniform in [0, 1)
        return draw < self.noise

    def judge(self, prompts, completions_a, completions_b, **columns) -> list[float]:
        probs = self.inner.judge(prompts, completions_a, completions_b, **columns)
        return [1.0 - p if self.flipped(prompt, a, b) else p
                for prompt, a, b, p in zip(prompts, completions_a, completions_b, probs)]
