"""YAML files the zoo reads itself rather than through Hydra's composition (RBR behaviour policies,
constitutions, named model configs): by name under conf/<group>/, or by path."""

from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def load_named_yaml(group: str, name_or_path: str, what: str) -> tuple[Path, dict]:
    """(path, contents) of conf/<group>/<name>.yaml, or of the file `name_or_path` when it has a suffix."""
    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = CONF_DIR / group / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{what} {name_or_path!r}: no file {path} (add conf/{group}/<name>.yaml or give "
                                f"a path)")
    return path, yaml.safe_load(path.read_text()) or {}
