"""Sampling and scoring completions: the one place prompts become token ids and back.

Every consumer (the eval harness, preference-pair sampling, online RL) goes through here, so prompts are
rendered the same way TRL renders them (chat template with a generation prompt for conversational rows, the
raw string otherwise) and masks are built from lengths: pad == eos on the embedded model, so a mask derived
from `input_ids != pad_token_id` would hide real EOS tokens.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from zoo import costs, seeds
from zoo.levers import active
from zoo.sampling_levers import fast_generate


def is_conversational(prompt) -> bool:
    return isinstance(prompt, list)


def render_prompt(tokenizer, prompt) -> str:
    if is_conversational(prompt):
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return prompt


def completion_text(prompt, text: str):
    """Wrap decoded text in the prompt's format (an assistant message for conversational prompts)."""
    return [{"role": "assistant", "content": text}] if is_conversational(prompt) else text


def as_text(completion) -> str:
    """Plain text of a completion in either TRL format (string or list of messages)."""
    if isinstance(completion, list):
        return "".join(m["content"] for m in completion if m.get("role") == "assistant")
    return completion


@dataclass
class Samples:
    prompts: list  # as given (str or messages)
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]  # truncated after the first EOS (EOS kept when generated)
    completions: list  # decoded, in the prompt's format
    finished: list[bool]  # generated an EOS before max_new_tokens
    decoding_steps: int = 0  # forward passes `generate` ran, summed over batches (a batch runs to its longest row)
    prompt_padding: int = 0  # pad positions the batches' prompts were left-padded with

    @property
    def texts(self) -> list[str]:
        return [as_text(c) for c in self.completions]


@contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


def plan_batches(lengths: list[int], batch_size: int, by_length: bool = False) -> list[list[int]]:
    """The rows (indices) of each `generate` call: cut in the caller's order, or, `by_length` (trainer.zoo.
    length_buckets), sorted by prompt length first, so a batch's prompts are padded to a near length. The sort is
    stable: the repeats of one prompt stay side by side in their order."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__) if by_length else list(range(len(lengths)))
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


def prompt_padding(lengths: list[int], batches: list[list[int]]) -> int:
    """Pad positions left padding adds: each batch's rows padded to its longest prompt."""
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def truncate_at_eos(ids: list[int], eos_ids: set[int]) -> tuple[list[int], bool]:
    for i, tok in enumerate(ids):
        if tok in eos_ids:
            return ids[: i + 1], True
    return ids, False


def generated_tokens(new_ids, eos: set[int]) -> int:
    """Tokens a batch of `generate` really produced: each row's new ids up to and including its first EOS (the rest
    is padding). `new_ids`: rows of generated ids."""
    return sum(len(truncate_at_eos(row, eos)[0]) for row in new_ids)


@contextmanager
def counting_generate(model, eos: set[int]):
    """Count into the stage's cost (zoo.costs) the tokens every `model.generate` call inside the block produces: the
    zoo's own sampling and a trainer's (TRL's GRPO/RLOO call the same object). The instance attribute is restored
    afterwards, as zoo.levers.fast_generate restores its own."""
    inner = getattr(model, "generate", None)
    if not callable(inner):  # e.g. a reward model
        yield
        return
    original = model.__dict__.get("generate")

    def generate(*args, **kwargs):
        out = inner(*args, **kwargs)
        ids = kwargs.get("input_ids", args[0] if args else None)
        sequences = getattr(out, "sequences", out)
        if ids is not None and hasattr(sequences, "shape"):
            costs.add("generated_tokens", generated_tokens(sequences[:, ids.shape[1]:].tolist(), eos))
        return out

    model.generate = generate
    try:
        yield
    finally:
        if original is None:
            del model.generate
        else:
            model.generate = original


def eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    ids.add(tokenizer.eos_token_id)
    return ids


@torch.no_grad()
def sample(model, tokenizer, prompts: list, *, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
           top_k: int = 0, num_return_sequences: int = 1, batch_size: int = 16, seed: int | None = None,
           progress: str | None = None) -> Samples:
    """Sample completions for `prompts` (each repeated `num_return_sequences` times, in order).

    Batches are cut in the caller's order, or by prompt length under trainer.zoo.length_buckets; the results come
    back in the caller's order either way. Under greedy decoding each prompt gets the same tokens whichever batch it
    lands in (up to float rounding of differently padded batches). Sampled draws come from one stream seeded once
    per call and consumed batch by batch, row by row, so a prompt's draws depend on its batch and row: bucketing
    gives other samples from the same distribution, as any change of batch_size does."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    eos = eos_ids(model, tokenizer)
    flat = [p for p in prompts for _ in range(num_return_sequences)]
    encoded = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in flat]
    do_sample = temperature > 0
    gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=sorted(eos))
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k)
    lengths = [len(e) for e in encoded]
    batches = plan_batches(lengths, batch_size, by_length=active("length_buckets"))
    out_ids: list = [None] * len(flat)
    finished = [False] * len(flat)
    steps = 0
    with _eval_mode(model), fast_generate(model), seeds.drawing(seed):  # the caller's stream is left as it was
        for rows in tqdm(batches, desc=progress, disable=progress is None, leave=False):
            ids, mask = _left_pad([encoded[i] for i in rows], tokenizer.pad_token_id)
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **gen_kwargs)
            new = gen[:, ids.shape[1]:]
            steps += new.shape[1]
            for i, row in zip(rows, new.tolist()):
                out_ids[i], finished[i] = truncate_at_eos(row, eos)
    texts = tokenizer.batch_decode(out_ids, skip_special_tokens=True)
    return Samples(prompts=flat, prompt_ids=encoded, completion_ids=out_ids,
                   completions=[completion_text(p, t) for p, t in zip(flat, texts)], finished=finished,
                   decoding_steps=steps, prompt_padding=prompt_padding(lengths, batches))


def _plain_head(model) -> bool:
    """Whether the logits are the output embedding applied to the last hidden state and nothing more (no final
    soft-capping or logit scaling), so the head may be applied to a subset of positions."""
    config = model.config
    return not getattr(config, "final_logit_softcapping", None) and getattr(config, "logit_scale", 1.0) in (None, 1.0)


def logits_at(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, index: torch.Tensor,
              completion_only: bool = True) -> torch.Tensor:
    """Logits [B, T, V] at positions `index` [B, T] of each row. `completion_only`: run the LM head at those
    positions alone (with a 49k vocabulary the head over every prompt position is much of a forward) rather
    than at every position and gathering; the same numbers to float rounding. PEFT-wrapped models (adapter on
    or disabled) go through their base model's body and head, where the adapter layers live."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    expand = index.unsqueeze(-1)
    if completion_only and _plain_head(base):
        hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return base.get_output_embeddings()(hidden.gather(1, expand.expand(-1, -1, hidden.shape[-1])))
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return logits.gather(1, expand.expand(-1, -1, logits.shape[-1]))


@torch.no_grad()
def per_completion_token(model, prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int, fn,
                         batch_size: int = 16, completion_only: bool = True) -> list[torch.Tensor]:
    """`fn(logits [B, T, V] float32, targets [B, T]) -> [B, T]` at each completion token's position (the logits
    that predicted it), returned per completion (its own length)."""
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    with _eval_mode(model):
        for start in range(0, len(prompt_ids), batch_size):
            p_batch = prompt_ids[start: start + batch_size]
            c_batch = completion_ids[start: start + batch_size]
            seqs = [p + c for p, c in zip(p_batch, c_batch)]
            width, steps = max(len(s) for s in seqs), max(1, max(len(c) for c in c_batch))
            ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            index = torch.zeros((len(seqs), steps), dtype=torch.long)
            targets = torch.zeros((len(seqs), steps), dtype=torch.long)
            for i, (p, c) in enumerate(zip(p_batch, c_batch)):  # right padding: positions stay 0..n-1 for every row
                ids[i, : len(p) + len(c)] = torch.tensor(p + c)
                mask[i, : len(p) + len(c)] = 1
                index[i, : len(c)] = torch.arange(len(p) - 1, len(p) - 1 + len(c))  # token t is predicted at t-1
                targets[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            logits = logits_at(model, ids.to(device), mask.to(device), index.to(device), completion_only).float()
            values = fn(logits, targets.to(device)).cpu()
            out += [values[i, : len(c)] for i, c in enumerate(c_batch)]
    return out


def completion_logprobs(model, prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int,
                        temperature: float = 1.0, batch_size: int = 16,
                        completion_only: bool = True) -> list[torch.Tensor]:
    """Per-token log-probabilities of each completion given its prompt, logits divided by `temperature`.

    Dividing by the sampling temperature scores tokens under the distribution they were sampled from, which
    is what a sampled-token KL estimate needs.
    """
    return completion_logprobs_at(model, prompt_ids, completion_ids, pad_id, (temperature,), batch_size,
                                  completion_only)[0]


def completion_logprobs_at(model, prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int,
                           temperatures: tuple[float, ...], batch_size: int = 16,
                           completion_only: bool = True) -> list[list[torch.Tensor]]:
    """`completion_logprobs` at several temperatures from one forward pass: one list per temperature, each the
    same numbers a call at that temperature alone gives (the same logits, divided and normalised the same way).
    The harness scores the baseline's view of a policy's samples at temperature 1 (fluency) and at the sampling
    temperature (KL): one forward of the baseline instead of two."""
    def logps(logits, targets):
        picked = targets.unsqueeze(-1)
        return torch.stack([torch.log_softmax(logits / t, dim=-1).gather(-1, picked).squeeze(-1)
                            for t in temperatures], dim=-1)

    per_token = per_completion_token(model, prompt_ids, completion_ids, pad_id, logps, batch_size, completion_only)
    return [[t[:, k].contiguous() for t in per_token] for k in range(len(temperatures))]
