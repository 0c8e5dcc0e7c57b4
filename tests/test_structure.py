"""The shape ../shared/DESIGN.md promises: imports go one way down the layers, no algorithm imports another,
and the files that list the tree (conf/train.yaml's comments, the layout page docs/layout.md) match it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo"

# Top to bottom; a unit may import units of its own layer or below, never above.
LAYERS = [
    # entry: compose, validate, run (one process, or the workers zoo.launch starts), compare
    {"zoo.train", "zoo.launch", "zoo.worker", "zoo.config", "zoo.compare", "zoo.sweep"},
    {"zoo.algos"},  # one module per algorithm
    {"zoo.rl", "zoo.rlaif"},  # the zoo's PPO trainer; AI labelling
    {"zoo.eval"},  # harness
    {"zoo.rewards", "zoo.judges"},  # scorers (rewards may use judges, not the other way)
    {"zoo.data", "zoo.models", "zoo.model_cache", "zoo.generation", "zoo.levers",  # rows, weights, sampling, levers
     "zoo.sampling_levers", "zoo.sampling_weights", "zoo.logprob_head",  # (levers' own modules),
     "zoo.sparse_dropout", "zoo.resume"},  # and what a stage leaves in its run dir for a resumed run
    # leaves (checks: errors only); dist: rank, barriers and sums across the processes zoo.launch starts;
    # costs: a stage's cost in shared units; quiet: the third-party messages the entry points silence
    {"zoo.errors", "zoo.checks", "zoo.files", "zoo.named_yaml", "zoo.tracking", "zoo.dist", "zoo.costs", "zoo.quiet",
     "zoo.seeds"},
]
FORBIDDEN_SAME_LAYER = {("zoo.judges", "zoo.rewards")}
NOT_ALGORITHMS = {"__init__", "base", "experimental", "online", "preference", "reference"}  # shared by several algorithms


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _imports(path: Path) -> set[str]:
    """Every zoo module `path` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("zoo")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("zoo") and not node.level:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _layer(unit: str) -> int:
    found = [i for i, layer in enumerate(LAYERS) if unit in layer]
    assert found, f"{unit} is in no layer of this test (and of DESIGN.md): place it"
    return found[0]


def _units_on_disk() -> set[str]:
    return {_unit(_module(p)) for p in ZOO.rglob("*.py")} - {"zoo"}


def test_every_unit_has_a_layer():
    for unit in _units_on_disk():
        _layer(unit)


def test_imports_go_one_way_down_the_layers():
    wrong = []
    for path in ZOO.rglob("*.py"):
        src = _unit(_module(path))
        if src == "zoo":
            continue
        for imported in _imports(path):
            dst = _unit(imported)
            if dst in (src, "zoo") or dst not in _units_on_disk():
                continue
            if _layer(dst) < _layer(src) or (src, dst) in FORBIDDEN_SAME_LAYER or (
                    _layer(src) == len(LAYERS) - 1 and dst != "zoo.errors"):
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not wrong, "imports that go up (or sideways against the rule):\n" + "\n".join(sorted(wrong))


def test_no_algorithm_imports_another():
    algorithms = {p.stem for p in (ZOO / "algos").glob("*.py")} - NOT_ALGORITHMS
    wrong = []
    for name in algorithms:
        for imported in _imports(ZOO / "algos" / f"{name}.py"):
            parts = imported.split(".")
            if parts[:2] == ["zoo", "algos"] and len(parts) > 2 and parts[2] in algorithms - {name}:
                wrong.append(f"zoo/algos/{name}.py imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_every_algorithm_module_is_registered_and_configured():
    from zoo.algos import REGISTRY

    modules = {p.stem for p in (ZOO / "algos").glob("*.py")} - NOT_ALGORITHMS
    assert {m.__name__.rsplit(".", 1)[-1] for m in REGISTRY.values()} == modules
    configured = {p.stem for p in (ROOT / "conf" / "algo").glob("*.yaml")}
    assert set(REGISTRY) <= configured


@pytest.mark.parametrize("group", ["algo", "data", "experiment"])
def test_train_yaml_comments_list_every_option(group):
    """conf/train.yaml's defaults list is the table of contents: its comments name every file of the group."""
    text = (ROOT / "conf" / "train.yaml").read_text()
    defaults = text[text.index("defaults:"): text.index("\nstages:")]
    block = defaults[: defaults.index(f"- {group}:")].rsplit("- ", 1)[-1]  # the comment lines above the entry
    named = set(re.findall(r"[\w.-]+", " ".join(line.split("#", 1)[-1] for line in block.splitlines()
                                                 if "#" in line)))
    on_disk = {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")}
    assert on_disk <= named, f"conf/train.yaml does not name {sorted(on_disk - named)} of conf/{group}/"


def test_layout_page_matches_the_tree():
    """docs/layout.md (linked from the README) lists every module and package of zoo/, and nothing else."""
    page = (ROOT / "docs" / "layout.md").read_text()
    layout = page[page.index("```") + 3:]
    layout = layout[: layout.index("```")]
    listed = {line.split()[0].rstrip("/") for line in layout.splitlines() if line.strip()}
    on_disk = {f"zoo/{p.name}" for p in ZOO.iterdir() if p.suffix == ".py" and p.name != "__init__.py"}
    on_disk |= {f"zoo/{p.name}" for p in ZOO.iterdir() if p.is_dir() and p.name != "__pycache__"}
    zoo_listed = {x for x in listed if x.startswith("zoo/")}
    assert zoo_listed == on_disk, f"docs/layout.md: missing {sorted(on_disk - zoo_listed)}, stale " \
                                  f"{sorted(zoo_listed - on_disk)}"
