"""samples.md: the first held-out prompts with each group's completion side by side (from its first run)."""

from __future__ import annotations

from zoo.compare.runs import Run, prompt_key


def _messages(value: list) -> str:
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in value if isinstance(m, dict))


def _completion_text(value) -> str:
    """A chat completion shows its assistant content (the reply), a plain one its text."""
    if isinstance(value, list):
        assistant = [str(m.get("content", "")) for m in value if isinstance(m, dict) and m.get("role") == "assistant"]
        return "\n".join(assistant) if assistant else _messages(value)
    return "" if value is None else str(value)


def _quote(text: str, indent: str = "") -> str:
    return "\n".join(f"{indent}> {line}" for line in (text.splitlines() or [""]))


def _score(rec: dict, field: str) -> str:
    return f"{field} {rec.get(field)}"


def samples_markdown(groups: dict[str, list[Run]], count: int = 5) -> str:
    """The first `count` held-out prompts: the baseline's completion ("before", from the first group's first run)
    and each group's, from its first run (by dir name), with their gold / independent / proxy scores."""
    first = next(iter(groups.values()))[0]
    prompts = [s.get("prompt") for s in first.samples if s.get("policy") == "after"][:count]
    lines = ["# Samples", "", "The baseline policy's completion (before) and each group's from its first run (by dir "
             "name), with its gold / independent / proxy score."]
    for i, prompt in enumerate(prompts, 1):
        lines += ["", f"## Prompt {i}", "", _quote(_messages(prompt) if isinstance(prompt, list) else str(prompt)), ""]
        columns = [("before", first, "before")] + [(label, runs[0], "after") for label, runs in groups.items()]
        for label, run, policy in columns:
            rec = next((s for s in run.samples if s.get("policy") == policy
                        and prompt_key(s.get("prompt")) == prompt_key(prompt)), None)
            if rec is None:
                lines.append(f"- **{label}**: (this prompt is not in its samples)")
                continue
            scores = ", ".join(_score(rec, f) for f in ("gold", "independent", "proxy") if f in rec)
            lines += [f"- **{label}** ({scores}):", _quote(_completion_text(rec.get("completion")), "  ")]
    return "\n".join(lines) + "\n"
