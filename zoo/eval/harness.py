"""Evaluate a policy on the task's held-out prompts, the same way for every algorithm.

Metrics (prefixed, e.g. `eval/kl`):
  gold_reward         mean gold signal of the task (VADER sentiment, exact-answer accuracy, ...) or null
  proxy_reward        mean of the configured proxy reward (reward model, reward functions) or null
  independent_reward  mean of the task's independent scorer (`data.independent`; sentiment: TextBlob), a signal
                      no algorithm trains on by default, or null
  kl                  KL(policy || reference) in nats per completion, k1 estimate from the policy's sampled tokens
                      (a best-of-n policy, zoo.eval.best_of_n: the analytic log n - (n - 1) / n; a fixed response,
                      zoo.eval.fixed_response: exactly -log p_ref(response | prompt))
  win_rate            share of prompts where the policy's completion beats the reference's by the gold signal
                      (the proxy reward when the task has no gold signal); ties count half
  fluency             mean over completions of the per-token log-prob under the frozen baseline (temperature 1):
                      degenerate text a lexicon rewards reads as unlikely to the model the policy started from
  length              mean completion length in tokens
  reward_length_corr  Spearman correlation of the training reward (the proxy if configured, else the gold) with
                      completion length across the samples: a reward bought with length shows up here
  eos_rate            share of completions that ended with EOS within the token budget
  distinct_1/2        distinct uni/bigrams over all completions (diversity; mode collapse pulls it down)
  accuracy            exact-answer accuracy for tasks with an `answer` column, else null; with it,
  length_correct / length_incorrect   mean length of the right and of the wrong answers
  answer_format_rate  share of completions stating an answer in the taught format ("The answer is N"), right or not
With both a proxy and a gold signal (zoo.eval.metrics.overoptimisation):
  proxy_gold_spearman Spearman correlation of proxy and gold across the samples (how well the proxy, e.g. a
                      reward model, still ranks the policy's own samples)
  proxy_gold_gap      proxy gain minus gold gain against the baseline, each in baseline standard deviations
  overoptimised       1.0 when the proxy rose while the gold fell against the baseline
For prompts with a safety `category` (benign / harmful / self_harm), also, by zoo.eval.refusal's classifier:
  harmless_rate share of harmful and self-harm prompts the policy declined (not unsafe)
  helpful_rate  share of benign prompts it answered, not refused (not over-refusing)
  refusal_f1    F1 of refusing exactly the prompts that should be refused (both failure modes in one number)
  rule_grader_agreement  share of samples where RBR's rule grader (a training reward) agrees with the classifier
Every evaluated policy also gets the probes (zoo/eval/probes.py: diversity, sycophancy, capability).
"""

from __future__ import annotations

from zoo import seeds
from zoo.checks import known_keys, number, require
from zoo.data import task_columns
from zoo.eval import probes
from zoo.eval.best_of_n import BestOfN
from zoo.eval.fixed_response import FixedResponse
from zoo.eval.metrics import distinct_n, mean, overoptimisation, sequence_kl, spearman, win_rate
from zoo.generation import Samples, as_text, completion_logprobs, completion_logprobs_at, sample
from zoo.rewards.verifiable import accuracy_reward, states_answer

HARNESS_KEYS = ("gold_reward", "proxy_reward", "independent_reward", "kl", "win_rate", "fluency", "length",
                "reward_length_corr", "eos_rate", "distinct_1", "distinct_2", "accuracy")


EVAL_KEYS = ("num_prompts", "max_new_tokens", "temperature", "top_p", "batch_size", "seed", "baseline", "also",
             "every_steps", "at_steps")


def check_eval_config(eval_cfg, policy_stages: list[str]) -> None:
    """The `eval` group; `policy_stages`: the run's stages that produce a policy (baseline / extra columns)."""
    known_keys(eval_cfg, (*EVAL_KEYS, *probes.keys()), "eval")
    number(eval_cfg, "num_prompts", "eval", lambda v: v >= 1, "an integer >= 1", integer=True)
    number(eval_cfg, "max_new_tokens", "eval", lambda v: v >= 1, "an integer >= 1", integer=True)
    number(eval_cfg, "temperature", "eval", lambda v: v >= 0, ">= 0 (0 = greedy)")
    number(eval_cfg, "top_p", "eval", lambda v: 0 < v <= 1, "a value in (0, 1]")
    number(eval_cfg, "batch_size", "eval", lambda v: v >= 1, "an integer >= 1", integer=True)
    number(eval_cfg, "seed", "eval", lambda v: True, "an integer", integer=True)
    require(eval_cfg.baseline == "start" or eval_cfg.baseline in policy_stages,
            f"eval.baseline={eval_cfg.baseline!r}: expected 'start' or a policy stage of this run {policy_stages}")
    if eval_cfg.get("every_steps") is not None:
        number(eval_cfg, "every_steps", "eval", lambda v: v >= 0, "an integer >= 0 (0: no curve)", integer=True)
    for step in eval_cfg.get("at_steps", None) or []:
        require(isinstance(step, int) and not isinstance(step, bool) and step >= 1,
                f"eval.at_steps: {step!r} is not a global step (an integer >= 1)")
    for stage in eval_cfg.get("also", None) or []:
        require(stage in policy_stages, f"eval.also: {stage!r} is not a policy stage of this run {policy_stages}")
    probes.check(eval_cfg)


def score(fn, samples: Samples, columns: dict) -> list[float | None]:
    if fn is None:
        return [None] * len(samples.completions)
    return list(fn(samples.prompts, samples.completions, **columns))


def evaluate(policy, tokenizer, rows: list[dict], eval_cfg, *, gold_fn=None, proxy_fn=None, independent_fn=None,
             reference=None, reference_result: dict | None = None, prefix: str = "eval") -> dict:
    """Sample from `policy` on `rows` and compute the harness metrics.

    `reference`: the model KL is measured against, and the frozen baseline fluency is scored under (None: the
    policy *is* the reference, so KL is 0 and the win rate 0.5). `reference_result` is the reference's own
    evaluate() output, whose scores the win rate and the over-optimisation metrics compare against.
    Returns {"metrics": {...}, "records": [...], "scores": {...}}.
    """
    prompts = [r["prompt"] for r in rows]
    columns = task_columns(rows)
    decoding = dict(max_new_tokens=eval_cfg.max_new_tokens, temperature=eval_cfg.temperature, top_p=eval_cfg.top_p,
                    batch_size=eval_cfg.batch_size, seed=seeds.seed_for("eval.sampling", eval_cfg.seed),
                    progress=f"{prefix}: sampling")
    best_of_n = isinstance(policy, BestOfN)  # decoded best-of-n: its KL is analytic, its weights the model's
    fixed = isinstance(policy, FixedResponse)  # one response for every prompt: its KL is exact
    samples = policy.sample(tokenizer, prompts, columns, **decoding) if best_of_n or fixed else sample(
        policy, tokenizer, prompts, **decoding)
    gold = score(gold_fn, samples, columns)
    proxy = score(proxy_fn, samples, columns)
    independent = score(independent_fn, samples, columns)
    accuracy = (list(gold) if _is_accuracy(gold_fn) else accuracy_reward(samples.prompts, samples.completions,
                                                                          **columns)) if "answer" in columns else []

    temp = eval_cfg.temperature if eval_cfg.temperature > 0 else 1.0
    args = (samples.prompt_ids, samples.completion_ids, tokenizer.pad_token_id)
    frozen = (policy.model if best_of_n or fixed else policy) if reference is None else reference
    # The frozen baseline's one forward over these completions: temperature 1 for fluency and, where the KL needs
    # the reference at another sampling temperature, that one too (the same logits, normalised twice).
    kl_reference = reference is not None and not best_of_n
    temps = (1.0, temp) if kl_reference and temp != 1.0 else (1.0,)
    by_temperature = completion_logprobs_at(frozen, *args, temps, eval_cfg.batch_size)
    frozen_logps = by_temperature[0]
    if reference is None:
        kl = [0.0] * len(prompts)
    elif best_of_n:  # against the policy it samples from, which must be the reference (zoo.algos.best_of_n)
        kl = [policy.kl] * len(prompts)
    else:
        reference_logps = by_temperature[-1]
        # A fixed response has log-probability 0 under its own (deterministic) policy.
        policy_logps = ([t.new_zeros(t.shape) for t in reference_logps] if fixed else
                        completion_logprobs(policy, *args, temp, eval_cfg.batch_size))
        kl = sequence_kl(policy_logps, reference_logps)

    if reference_result is None:
        wins = 0.5
    else:
        mine, theirs = (gold, reference_result["scores"]["gold"]) if gold_fn else (
            proxy, reference_result["scores"]["proxy"])
        wins = win_rate(mine, theirs)

    extra = safety_metrics(samples, columns["category"]) if "category" in columns else {}
    if proxy_fn is not None and gold_fn is not None:
        extra["proxy_gold_spearman"] = spearman(proxy, gold)
        if reference_result is not None:
            extra.update(overoptimisation(proxy, gold, reference_result["scores"]["proxy"],
                                          reference_result["scores"]["gold"]))
    lengths = [len(c) for c in samples.completion_ids]
    metrics = {
        "gold_reward": mean(gold),
        "proxy_reward": mean(proxy),
        "independent_reward": mean(independent),
        "kl": mean(kl),
        "win_rate": wins,
        "fluency": mean(float(t.mean()) for t in frozen_logps if len(t)),
        "length": mean(lengths),
        "reward_length_corr": spearman(proxy if proxy_fn is not None else gold, lengths),
        "eos_rate": mean(float(f) for f in samples.finished),
        "distinct_1": distinct_n(samples.completion_ids, 1),
        "distinct_2": distinct_n(samples.completion_ids, 2),
        "accuracy": mean(accuracy),
        **_lengths_by_correctness(lengths, accuracy),
        **({"answer_format_rate": mean(float(states_answer(as_text(c) or "")) for c in samples.completions)}
           if accuracy else {}),
        **extra,
    }
    records = [
        {"prompt": p, "completion": c, "gold": g, "proxy": q, "independent": i, "kl": k, "finished": f}
        for p, c, g, q, i, k, f in zip(samples.prompts, samples.completions, gold, proxy, independent, kl,
                                       samples.finished)
    ]
    return {"metrics": {f"{prefix}/{k}": v for k, v in metrics.items()}, "records": records,
            "scores": {"gold": gold, "proxy": proxy}}


def evaluate_columns(trained, baseline, tokenizer, rows: list[dict], eval_cfg, *, gold_fn=None, proxy_fn=None,
                     independent_fn=None, also: dict | None = None) -> tuple[dict[str, dict], list[dict]]:
    """The run's table: the baseline policy ("before"), any intermediate policies (`also`, name -> model, e.g.
    SL-CAI before RL-CAI) and the trained one ("after"), on the same prompts and sampling seed, KL and win rate
    against the baseline; each column also gets the probes (zoo/eval/probes.py). Returns ({column: metrics},
    sample records tagged with their policy)."""
    kw = dict(gold_fn=gold_fn, proxy_fn=proxy_fn, independent_fn=independent_fn)

    def probed(model, prefix: str) -> dict:  # the probes decode greedily: a best-of-n policy's model answers them
        if isinstance(model, FixedResponse):  # one text for every probe: nothing to measure, so no probe column
            return {}
        found = probes.run(model.model if isinstance(model, BestOfN) else model, tokenizer, eval_cfg, rows=rows)
        return {f"{prefix}/{k}": v for k, v in found.items()}

    before = evaluate(baseline, tokenizer, rows, eval_cfg, prefix="before", **kw)
    against = dict(reference=baseline, reference_result=before) if baseline is not trained else {}
    columns, records = {"before": {**before["metrics"], **probed(baseline, "before")}}, [
        {"policy": "before", **r} for r in before["records"]]
    for name, model in (also or {}).items():
        result = evaluate(model, tokenizer, rows, eval_cfg, prefix=f"eval_{name}", **against, **kw)
        columns[name] = {**result["metrics"], **probed(model, f"eval_{name}")}
    after = evaluate(trained, tokenizer, rows, eval_cfg, prefix="eval", **against, **kw)
    columns["after"] = {**after["metrics"], **probed(trained, "eval")}
    records += [{"policy": "after", **r} for r in after["records"]]
    return columns, records


def _is_accuracy(fn) -> bool:
    """Whether `fn` is the exact-answer accuracy itself (the gold of data=arithmetic / gsm8k), so the accuracy
    column is the gold column already scored rather than a second call on the same completions."""
    return fn is accuracy_reward or getattr(fn, "fn", None) is accuracy_reward


def _lengths_by_correctness(lengths: list[int], accuracy: list) -> dict:
    """Mean completion length of the right and of the wrong answers (tasks with an answer column): R1-style RL
    lengthens reasoning, and GRPO's length normalisation is said to lengthen the wrong answers most (Liu et al.)."""
    if not accuracy:
        return {}
    return {"length_correct": mean(n for n, a in zip(lengths, accuracy) if a == 1.0),
            "length_incorrect": mean(n for n, a in zip(lengths, accuracy) if a == 0.0)}


def safety_metrics(samples: Samples, categories: list[str]) -> dict:
    """Refusal rates judged by zoo.eval.refusal, a classifier independent of the RBR rule grader (a policy trained
    on RBR learns the rule grader's blind spots, so that grader cannot also be the judge). `rule_grader_agreement`
    is the share of samples where the rule grader's `refuses` agrees: it falls when training drifts into them."""
    from zoo.eval.refusal import refuses as judged_refusal
    from zoo.eval.refusal import rule_grader_refuses
    from zoo.generation import as_text

    refuses = [judged_refusal(c) for c in samples.completions]
    graded = rule_grader_refuses([as_text(c) or "" for c in samples.completions])
    should = [c in ("harmful", "self_harm") for c in categories]
    tp = sum(r and s for r, s in zip(refuses, should))
    fp = sum(r and not s for r, s in zip(refuses, should))
    fn = sum(s and not r for r, s in zip(refuses, should))
    return {
        "harmless_rate": mean(float(r) for r, s in zip(refuses, should) if s),
        "helpful_rate": mean(float(not r) for r, s in zip(refuses, should) if not s),
        "refusal_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "rule_grader_agreement": mean(float(r == g) for r, g in zip(refuses, graded)),
    }


def format_table(columns: dict[str, dict], notes: dict[str, str] | None = None) -> str:
    """A plain-text table: one row per metric (the harness's first, then safety and probe metrics in the order
    they appear), one column per evaluated policy; `notes` (metric -> text) are printed beside their row, e.g.
    `gold_reward  ... gold = training reward`."""
    names = list(columns)
    found = [k.split("/", 1)[1] for col in columns.values() for k in col if "/" in k]
    keys = list(dict.fromkeys([*HARNESS_KEYS, *found]))
    width = max(14, *(len(k) + 1 for k in keys))
    lines = [f"{'metric':<{width}}" + "".join(f"{n:>14}" for n in names)]
    for key in keys:
        cells = []
        for n in names:
            v = next((val for k, val in columns[n].items() if k.split("/", 1)[-1] == key), None)
            cells.append(f"{'-':>14}" if v is None else f"{v:>14.4f}")
        note = f"   {notes[key]}" if notes and key in notes else ""
        lines.append(f"{key:<{width}}" + "".join(cells) + note)
    return "\n".join(lines)
