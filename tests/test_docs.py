"""The README is a front page and docs/ holds the reference: the README stays short, every relative link in them
resolves (to a file, and to a heading where it names one), the README names every algorithm, and every
`zoo.train` / `zoo-train` / `zoo.launch` command in their code blocks composes with Hydra's compose API, a multirun
job by job as Hydra's sweeper expands it (sweep-file params included). Nothing is trained."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sweeps import PLUGINS, compose_job, seedless, sweep_jobs  # noqa: E402 - the sweeper's expansion, shared

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300
ENTRY_POINTS = {("python", "-m", "zoo.train"): "train", ("zoo-train",): "train",
                ("python", "-m", "zoo.launch"): "launch", ("zoo-launch",): "launch"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines; reference material goes in docs/"
    assert (ROOT / "docs").is_dir() and len(PAGES) > 5


def test_readme_quotes_the_makefile_commands():
    """The two set-up commands come first, as the Makefile defines them (.ci/run calls `make test`)."""
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: setup$", makefile, re.M) and re.search(r"^test: setup$", makefile, re.M)


def test_readme_names_every_algorithm_and_experiment():
    text = README.read_text()
    for group in ("algo", "experiment"):
        missing = [p.stem for p in sorted((ROOT / "conf" / group).glob("*.yaml")) if f"`{p.stem}`" not in text]
        assert not missing, f"README.md does not name conf/{group}/ {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text.replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    slugs: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = _slug(heading)
        n = slugs.get(slug, 0)
        slugs[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_relative_link_resolves(page):
    broken = []
    for link in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link}: no heading #{anchor} in {_rel(path)}")
    assert not broken, f"{_rel(page)}:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in _links(README)}
    unlinked = [_rel(p) for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def _commands() -> list[tuple[str, str, list[str]]]:
    """(page:line, entry point, argv) of every zoo.train / zoo-train / zoo.launch command in a fenced code block.

    Shell variables set earlier in the same block (`RUN="..."`) are expanded; `...` (the rest of a command line,
    left to the reader) is dropped; a trailing `\\` continues a line; comments end it."""
    out = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        fenced, env, i = False, {}, 0
        while i < len(lines):
            number, line = i + 1, lines[i]
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1] + " " + lines[i]
            i += 1
            if line.startswith("```"):
                fenced, env = not fenced, {}
                continue
            if not fenced or not re.match(r"\s*(python -m zoo\.|zoo-|[A-Z_]+=)", line):
                continue  # prose, output, listings, other tools
            words = shlex.split(line, comments=True)
            if len(words) == 1 and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                name, value = words[0].split("=", 1)
                env[name] = value
                continue
            for prefix, entry in ENTRY_POINTS.items():
                if tuple(words[: len(prefix)]) == prefix:
                    argv = []
                    for word in words[len(prefix):]:
                        if word.startswith("$"):
                            argv += shlex.split(env[word[1:]])
                        elif word != "...":
                            argv.append(word)
                    out.append((f"{_rel(page)}:{number}", entry, argv))
    return out


COMMANDS = _commands()


def test_the_docs_have_commands_to_check():
    entries = [entry for _, entry, _ in COMMANDS]
    assert entries.count("train") >= 20 and entries.count("launch") >= 5
    assert any("-m" in argv for _, _, argv in COMMANDS)


def _jobs(entry: str, argv: list[str]) -> list[list[str]]:
    """What the entry point composes for this command line: one override list, or one per job of a multirun (jobs
    that differ only in their seed: one of them, `seedless`)."""
    from zoo.config import normalize_overrides

    if entry == "launch":
        from zoo.launch import make_plan, split_argv

        keys, argv, extra = split_argv(argv)
        make_plan(keys, extra)  # the launcher keys: an accelerate config that exists, integers where integers go
    if "-m" in argv or "--multirun" in argv:
        return seedless(sweep_jobs([a for a in argv if a not in ("-m", "--multirun")]))
    return [normalize_overrides(argv)]


def _missing_plugin(argv: list[str]) -> str | None:
    """The plugin a `+sweeps=...` of this command needs when it is not installed (ray is an extra of its own)."""
    line = " ".join(argv)
    for name, module in PLUGINS.items():
        if re.search(rf"\b{name}\b", line) and "+sweeps" in line and importlib.util.find_spec(module) is None:
            return module
    return None


@pytest.mark.parametrize("where,entry,argv", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_composes(where, entry, argv):
    """Composed only, never run: the commands name full-size models, GPUs and clusters."""
    module = _missing_plugin(argv)
    if module:
        pytest.skip(f"{module} is not installed")
    job = argv
    try:
        for job in _jobs(entry, argv):
            compose_job(job)
    except Exception as e:  # noqa: BLE001 - Hydra raises several kinds; the command and the message are the point
        pytest.fail(f"{where}: {' '.join(argv)}\ndoes not compose (overrides {job}): {type(e).__name__}: {e}",
                    pytrace=False)
