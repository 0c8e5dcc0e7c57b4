"""The frozen scorer language model, in one place: loading it (`load_scorer`, for every judge and grader of the
zoo: the RLAIF judge, the llm_judge reward, RBR's LLM grader) and reading its next-token probabilities over a few
answer tokens (`LogProbScorer`), which is all a judge or grader asks of it."""

from __future__ import annotations

import torch

from zoo.generation import render_prompt


def user_text(prompt) -> str:
    """A prompt as the text a judge quotes: a conversation's messages one per line, a string as is."""
    if isinstance(prompt, list):
        return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
    return prompt


class LogProbScorer:
    """Probabilities of single-token answers (e.g. "A"/"B", "1".."9") as the next token of a chat model."""

    def __init__(self, model, tokenizer, batch_size: int = 8):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    def token_id(self, text: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"judge answer {text!r} is {len(ids)} tokens for this tokenizer; need exactly one")
        return ids[0]

    def choice_probs(self, questions: list[str], choices: list[str]) -> torch.Tensor:
        """[N, len(choices)]: next-token probabilities renormalised over `choices` (one token each)."""
        return self.token_probs(questions, [self.token_id(c) for c in choices])

    @torch.no_grad()
    def token_probs(self, questions: list[str], ids: list[int]) -> torch.Tensor:
        """[N, len(ids)]: next-token probabilities of the token `ids`, renormalised over them, after each question
        asked as a user turn."""
        texts = [render_prompt(self.tokenizer, [{"role": "user", "content": q}]) for q in questions]
        out = []
        device = next(self.model.parameters()).device
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[start: start + self.batch_size], add_special_tokens=False, padding=True,
                                 padding_side="left", return_tensors="pt").to(device)
            logits = self.model(**enc).logits[:, -1].float()
            out.append(torch.softmax(logits[:, ids], dim=-1).cpu())
        return torch.cat(out)


def load_scorer(cfg, name: str | None = None, *, start_path: str | None = None, start=None,
                batch_size: int = 8) -> LogProbScorer:
    """The frozen scorer model `name` (null: the starting weights; a conf/model name such as qwen2.5-0.5b, a local
    dir or a hub id), loaded as every reference model is (zoo.models.load_reference: the run's dtype, eval mode,
    no gradients) with its own tokenizer.

    `start_path`: the starting weights (default: the run's model); `start`: an already-loaded frozen copy of them
    and their tokenizer, (model, tokenizer), reused instead of loading a second copy when `name` is null."""
    from zoo.models import load_reference, load_tokenizer, named_model_path, resolve_model_path

    if not name and start is not None:
        return LogProbScorer(*start, batch_size=batch_size)
    start_path = start_path or resolve_model_path(cfg.model, cfg.paths.cache_dir)
    path = named_model_path(name, start_path, cfg.paths.cache_dir)
    return LogProbScorer(load_reference(cfg, path), load_tokenizer(path), batch_size=batch_size)
