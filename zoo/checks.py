"""Small helpers for validating config blocks before anything loads: each error names the key path."""

from __future__ import annotations

from zoo.errors import ConfigError


def require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def known_keys(block, allowed, path: str) -> None:
    unknown = sorted(set(block or {}) - set(allowed))
    require(not unknown, f"{path}: unknown keys {unknown}; allowed: {sorted(allowed)}")


def number(block, key: str, path: str, ok, expected: str, integer: bool = False) -> None:
    """block[key] is a number (an integer when `integer`) for which ok(value) holds."""
    value = block.get(key)
    kind = int if integer else (int, float)
    require(isinstance(value, kind) and not isinstance(value, bool) and ok(value),
            f"{path}.{key}={value!r}: expected {expected}")
