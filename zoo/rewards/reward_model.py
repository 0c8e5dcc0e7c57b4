"""A trained reward model (sequence classifier with a scalar head) as a reward function."""

from __future__ import annotations

import torch

from zoo.generation import as_text, render_prompt


def scored_text(tokenizer, prompt, completion) -> str:
    """What a reward model reads: the prompt as the policy saw it, the completion, EOS (training and scoring alike)."""
    return render_prompt(tokenizer, prompt) + as_text(completion) + tokenizer.eos_token


class RewardModelReward:
    def __init__(self, path: str, cfg, batch_size: int = 16):
        from zoo.models import load_reward_model

        bundle = load_reward_model(cfg, str(path))
        self.model = bundle.model.eval().requires_grad_(False)
        self.tokenizer = bundle.tokenizer
        self.batch_size = batch_size
        self.__name__ = "reward_model"

    @torch.no_grad()
    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        tok = self.tokenizer
        texts = [scored_text(tok, p, c) for p, c in zip(prompts, completions)]
        scores: list[float | None] = []
        device = next(self.model.parameters()).device
        for start in range(0, len(texts), self.batch_size):
            enc = tok(texts[start: start + self.batch_size], add_special_tokens=False, padding=True,
                      padding_side="right", return_tensors="pt").to(device)
            scores += self.model(**enc).logits[:, 0].float().tolist()
        return scores
