"""A constant policy: every prompt gets the same response, whatever it asks.

The reference points of a refusal trade-off: "always refuse" is perfectly harmless and never helpful, "never refuse"
(one fixed compliant answer) the reverse. Scored by the same harness as trained policies, on the same prompts, they
mark the two ends a trained policy's harmless and helpful rates sit between, and the refusal F1 a policy must beat to
mean anything (always-refuse's F1 is not 0: it gets every refusable prompt right).

`FixedResponse` stands wherever the harness takes a policy (`zoo.eval.harness.evaluate`), like `BestOfN`. Its
samples are the response's tokens and then EOS, cut at the harness's `max_new_tokens` like any sampled completion.
It is deterministic, so its KL to a reference is exact: KL = -log p_ref(response | prompt), the reference's
log-probability of the whole response (EOS included) under the harness's temperature.
"""

from __future__ import annotations

from zoo.generation import Samples, completion_text, render_prompt


class FixedResponse:
    """`response` as the answer to every prompt; `model` holds the weights the run ended with (unused by it)."""

    def __init__(self, model, response: str):
        if not isinstance(response, str) or not response.strip():
            raise ValueError(f"a fixed-response policy needs a non-empty response, got {response!r}")
        self.model, self.response = model, response

    def sample(self, tokenizer, prompts: list, columns: dict, *, max_new_tokens: int, temperature: float,
               top_p: float, batch_size: int, seed: int | None, progress: str | None = None) -> Samples:
        """The response for each prompt, as `zoo.generation.sample` returns samples (decoding settings unused)."""
        ids = tokenizer(self.response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        finished = len(ids) <= max_new_tokens
        ids = ids[:max_new_tokens]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        return Samples(prompts=list(prompts),
                       prompt_ids=[tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"]
                                   for p in prompts],
                       completion_ids=[list(ids) for _ in prompts],
                       completions=[completion_text(p, text) for p in prompts], finished=[finished] * len(prompts))
