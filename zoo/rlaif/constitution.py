"""A constitution: principles (a critique request and a revision request each) plus few-shot examples,
and the chat prompts built from them."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.generation import as_text


@dataclass(frozen=True)
class Principle:
    name: str
    critique: str
    revision: str


@dataclass(frozen=True)
class Constitution:
    principles: tuple[Principle, ...]
    examples: tuple[dict, ...]

    def principle(self, name: str) -> Principle:
        return next(p for p in self.principles if p.name == name)


def load_constitution(name_or_path: str = "default") -> Constitution:
    from zoo.named_yaml import load_named_yaml

    path, raw = load_named_yaml("constitution", name_or_path, "constitution")
    principles = []
    for i, p in enumerate(raw.get("principles") or []):
        missing = {"name", "critique", "revision"} - set(p)
        if missing:
            raise ValueError(f"{path}: principles[{i}]: missing {sorted(missing)}")
        principles.append(Principle(p["name"], p["critique"], p["revision"]))
    if not principles:
        raise ValueError(f"{path}: no principles")
    names = {p.name for p in principles}
    for i, ex in enumerate(raw.get("examples") or []):
        missing = {"prompt", "response", "principle", "critique", "revision"} - set(ex)
        if missing or ex.get("principle") not in names:
            raise ValueError(f"{path}: examples[{i}]: needs prompt/response/critique/revision and a known principle")
    return Constitution(tuple(principles), tuple(raw.get("examples") or []))


def check_constitution(name_or_path, path: str) -> Constitution:
    """Load the constitution a config names, turning a missing or malformed file into a ConfigError at `path`."""
    from zoo.errors import ConfigError

    try:
        return load_constitution(name_or_path or "default")
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"{path}={name_or_path!r}: {e}") from e


def _request_text(prompt) -> str:
    if isinstance(prompt, list):
        return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)
    return f"User: {prompt}"


def _critique_turn(prompt, response, principle: Principle) -> str:
    return (f"{_request_text(prompt)}\nAssistant: {as_text(response)}\n\n"
            f"Critique request: {principle.critique}")


def _revision_turn(principle: Principle) -> str:
    return f"Revision request: {principle.revision}\nWrite only the revised reply."


def _few_shot(constitution: Constitution) -> list[dict]:
    """The worked examples as earlier chat turns: request + response, critique, revision request, revision."""
    turns = []
    for ex in constitution.examples:
        principle = constitution.principle(ex["principle"])
        turns += [{"role": "user", "content": _critique_turn(ex["prompt"], ex["response"], principle)},
                  {"role": "assistant", "content": ex["critique"]},
                  {"role": "user", "content": _revision_turn(principle)},
                  {"role": "assistant", "content": ex["revision"]}]
    return turns


def critique_messages(constitution: Constitution, prompt, response, principle: Principle) -> list[dict]:
    return _few_shot(constitution) + [
        {"role": "user", "content": _critique_turn(prompt, response, principle)}]


def revision_messages(constitution: Constitution, prompt, response, principle: Principle, critique: str) -> list[dict]:
    return critique_messages(constitution, prompt, response, principle) + [
        {"role": "assistant", "content": critique},
        {"role": "user", "content": _revision_turn(principle)}]
