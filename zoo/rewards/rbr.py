"""Rule-Based Rewards (Mu et al., OpenAI 2024): a behaviour policy turned into a reward with fitted weights.

1. Propositions ("refuses", "judgmental", "offers_resources", ...) are graded as P(true | prompt, response)
   by a grader: `RuleGrader` (regex patterns, offline, the default) or `LLMGrader` (P("yes") vs P("no") as the
   next token of any causal LM in the zoo).
2. The prompt's category (benign / harmful / self_harm) names which proposition values make a response
   ideal, less good or unacceptable; class probabilities follow from the proposition probabilities.
3. Features = proposition probabilities and class probabilities; one weight vector per category is fitted
   with a hinge ranking loss on synthetic completions of known class, on top of a base reward, so that
   base + w . features ranks ideal > less_good > unacceptable.
4. The RBR reward = base + w . features: a reward function of the shared protocol, usable by PPO/GRPO/RLOO.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from zoo.generation import as_text

CLASSES = ("ideal", "less_good", "unacceptable")


@dataclass
class BehaviourPolicy:
    propositions: dict  # name -> {question, patterns}
    categories: dict  # category -> class -> {all_of: [...], none_of: [...]}

    @property
    def names(self) -> list[str]:
        return list(self.propositions)


def load_behaviour_policy(name_or_path: str = "default") -> BehaviourPolicy:
    from zoo.named_yaml import load_named_yaml

    path, raw = load_named_yaml("rbr", name_or_path, "RBR behaviour policy")
    policy = BehaviourPolicy(raw["propositions"], raw["categories"])
    for cat, classes in policy.categories.items():
        for klass, cond in classes.items():
            if klass not in CLASSES:
                raise ValueError(f"{path}: categories.{cat}.{klass}: expected one of {CLASSES}")
            unknown_keys = set(cond or {}) - {"all_of", "none_of"}
            if unknown_keys:
                raise ValueError(f"{path}: categories.{cat}.{klass}: unknown keys {sorted(map(str, unknown_keys))}; "
                                 f"expected all_of / none_of")
            for p in (cond or {}).get("all_of", []) + (cond or {}).get("none_of", []):
                if p not in policy.propositions:
                    raise ValueError(f"{path}: categories.{cat}.{klass}: unknown proposition {p!r}")
    return policy


class RuleGrader:
    """P(proposition) = 1 if any of its patterns matches the response (case-insensitive), else 0."""

    def __init__(self, policy: BehaviourPolicy):
        self.names = policy.names
        self.patterns = [[re.compile(p, re.IGNORECASE | re.MULTILINE) for p in policy.propositions[n]["patterns"]]
                         for n in self.names]

    def __call__(self, prompts, responses) -> torch.Tensor:
        texts = [as_text(r) or "" for r in responses]
        return torch.tensor([[float(any(p.search(t) for p in pats)) for pats in self.patterns] for t in texts])


class LLMGrader:
    """P(proposition) = P("yes") / (P("yes") + P("no")) as the next token after a yes/no question, asked of
    `scorer` (a zoo.judges.LogProbScorer over any causal LM of the zoo). A tokenizer that splits "yes" or "no"
    is read by their first tokens."""

    TEMPLATE = ("Here is a conversation.\nUser: {prompt}\nAssistant: {response}\n\n{question} "
                "Answer with yes or no.")

    def __init__(self, scorer, policy: BehaviourPolicy):
        self.scorer, self.policy = scorer, policy
        self.answers = [scorer.tokenizer.encode(word, add_special_tokens=False)[0] for word in ("yes", "no")]

    def __call__(self, prompts, responses) -> torch.Tensor:
        questions = []
        for prompt, response in zip(prompts, responses):
            user = prompt[-1]["content"] if isinstance(prompt, list) else prompt
            questions += [self.TEMPLATE.format(prompt=user, response=as_text(response) or "",
                                               question=self.policy.propositions[name]["question"])
                          for name in self.policy.names]
        probs = self.scorer.token_probs(questions, self.answers)[:, 0]
        return probs.view(len(responses), len(self.policy.names))


def class_probabilities(props: torch.Tensor, categories: list[str], policy: BehaviourPolicy) -> torch.Tensor:
    """[N, 3] P(ideal), P(less_good), P(unacceptable): the first class whose conditions hold wins."""
    index = {n: i for i, n in enumerate(policy.names)}
    out = torch.zeros(len(categories), len(CLASSES))
    for row, cat in enumerate(categories):
        remaining = torch.tensor(1.0)
        for k, klass in enumerate(CLASSES):
            cond = policy.categories[cat].get(klass) or {}
            p = torch.tensor(1.0)
            for name in cond.get("all_of", []):
                p = p * props[row, index[name]]
            for name in cond.get("none_of", []):
                p = p * (1 - props[row, index[name]])
            share = remaining if klass == "unacceptable" else remaining * p
            out[row, k] = share
            remaining = remaining - share
    return out


def features(props: torch.Tensor, categories: list[str], policy: BehaviourPolicy) -> torch.Tensor:
    return torch.cat([props, class_probabilities(props, categories, policy)], dim=1)


def fit_weights(feats: torch.Tensor, base: torch.Tensor, categories: list[str], groups: list[int],
                classes: list[str], category_names: list[str], margin: float = 1.0, steps: int = 300,
                lr: float = 0.05, l2: float = 1e-3) -> torch.Tensor:
    """Per-category weights so that base + w . f ranks ideal > less_good > unacceptable within each prompt.

    Hinge ranking loss over every (better, worse) pair of completions of the same prompt.
    """
    rank = {c: i for i, c in enumerate(CLASSES)}
    cat_idx = torch.tensor([category_names.index(c) for c in categories])
    pairs = [(i, j) for i in range(len(groups)) for j in range(len(groups))
             if groups[i] == groups[j] and rank[classes[i]] < rank[classes[j]]]
    if not pairs:
        raise ValueError("RBR fitting needs completions of at least two classes for some prompt")
    better, worse = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    weights = torch.zeros(len(category_names), feats.shape[1], requires_grad=True)
    opt = torch.optim.Adam([weights], lr=lr)
    for _ in range(steps):
        reward = base + (weights[cat_idx] * feats).sum(1)
        loss = torch.relu(margin - (reward[better] - reward[worse])).mean() + l2 * (weights ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return weights.detach()


def ranking_accuracy(reward: torch.Tensor, groups: list[int], classes: list[str]) -> float:
    """Share of (better, worse) pairs within a prompt that `reward` orders correctly (ties count half)."""
    rank = {c: i for i, c in enumerate(CLASSES)}
    scores = []
    for i in range(len(groups)):
        for j in range(len(groups)):
            if groups[i] == groups[j] and rank[classes[i]] < rank[classes[j]]:
                d = float(reward[i] - reward[j])
                scores.append(1.0 if d > 0 else 0.5 if d == 0 else 0.0)
    return sum(scores) / len(scores)


class RBRReward:
    """base + w[category] . features(prompt, response); rows without a `category` get the base reward only."""

    def __init__(self, policy: BehaviourPolicy, grader, base_fn=None, seed: int = 0):
        from zoo.data.tasks import safety

        self.policy, self.grader, self.base_fn = policy, grader, base_fn
        self.category_names = list(policy.categories)
        data = safety.synthetic_completions(safety.rows(seed), seed)
        prompts, completions = [r["prompt"] for r in data], [r["completion"] for r in data]
        cats = [r["category"] for r in data]
        groups = [hash(str(r["prompt"])) for r in data]
        classes = [r["class"] for r in data]
        feats = features(self.grader(prompts, completions), cats, policy)
        base = self._base(prompts, completions)
        self.weights = fit_weights(feats, base, cats, groups, classes, self.category_names)
        fitted = base + (self.weights[torch.tensor([self.category_names.index(c) for c in cats])] * feats).sum(1)
        self.report = {"rbr/ranking_accuracy": ranking_accuracy(fitted, groups, classes),
                       "rbr/base_ranking_accuracy": ranking_accuracy(base, groups, classes)}
        self.__name__ = "rbr"

    def _base(self, prompts, completions, **columns) -> torch.Tensor:
        if self.base_fn is None:
            return torch.zeros(len(completions))
        return torch.tensor([0.0 if v is None else float(v) for v in self.base_fn(prompts, completions, **columns)])

    def __call__(self, prompts, completions, category=None, **columns) -> list[float | None]:
        base = self._base(prompts, completions, **columns)
        if category is None:
            return base.tolist()
        known = [i for i, c in enumerate(category) if c in self.category_names]
        out = base.clone()
        if known:
            sub_p = [prompts[i] for i in known]
            sub_c = [completions[i] for i in known]
            cats = [category[i] for i in known]
            feats = features(self.grader(sub_p, sub_c), cats, self.policy)
            w = self.weights[torch.tensor([self.category_names.index(c) for c in cats])]
            out[known] = base[known] + (w * feats).sum(1)
        return out.tolist()


def check_params(params: dict, path: str) -> None:
    """`reward.functions.rbr`'s parameters: the grader kind, the behaviour policy file, the base reward's name."""
    from zoo import rewards
    from zoo.checks import require
    from zoo.errors import ConfigError

    require(params.get("grader", "rule") in ("rule", "llm"),
            f"{path}.grader={params.get('grader')!r}: expected rule or llm")
    try:
        load_behaviour_policy(params.get("policy") or "default")
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise ConfigError(f"{path}.policy={params.get('policy')!r}: {e}") from e
    from zoo.models import check_model_name

    check_model_name(params.get("grader_model"), f"{path}.grader_model")
    base = params.get("base")
    require(base is None or (base in rewards.KNOWN and base != "rbr"),
            f"{path}.base={base!r}: expected null or a reward function name other than rbr; known: {rewards.KNOWN}")


def make_rbr(policy: str = "default", grader: str = "rule", base: str | None = None, grader_model: str | None = None,
             cfg=None):
    """Factory for `reward.functions.rbr: {weight, policy, grader, base, grader_model}`."""
    from zoo import rewards

    behaviour = load_behaviour_policy(policy)
    if grader == "rule":
        judge = RuleGrader(behaviour)
    elif grader == "llm":
        from zoo.judges import load_scorer

        judge = LLMGrader(load_scorer(cfg, grader_model, batch_size=16), behaviour)
    else:
        raise ValueError(f"rbr: grader={grader!r}: expected 'rule' or 'llm'")
    # The base is any reward function of the zoo by name, parametrised ones (llm_judge) with their defaults.
    base_fn = rewards.named_functions({base: 1.0}, {}, cfg)[0][2] if base else None
    return RBRReward(behaviour, judge, base_fn=base_fn)
