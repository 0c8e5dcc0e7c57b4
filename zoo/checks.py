"""Validating config blocks before anything loads, in one place: a block checked against a dataclass whose fields
carry help text (`check_block`: the zoo's own blocks, and through `check_value` the TRL configs of `algo.args`),
plain key lists (`known_keys`), and single values (`number`, `require`). Every error names the key path; an
unknown key gets a did-you-mean and the allowed keys, in a few lines.

A block's dataclass declares, per field, in `metadata`:
    help     what the key means (shown beside a did-you-mean, and in docs/configs.md)
    check    (ok, expected): a value rule, e.g. (lambda v: v > 0, "a sampling temperature > 0")
    choices  the allowed values of a string field (a `Literal[...]` hint does the same)
A field without a default is required.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from typing import Any, Callable

from zoo.errors import ConfigError

Rule = tuple[Callable[[Any], bool], str]
_MAX_LISTED = 30  # longer key lists (a TRL config's ~100 fields) are not printed in full


def require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def did_you_mean(key: str, allowed, helps: dict[str, str] | None = None) -> str:
    """The suffix "; did you mean <closest>?" (and the closest key's help on a line of its own, from `helps`), or ""."""
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
    if not close:
        return ""
    help_text = _first_sentence((helps or {}).get(close[0], ""))
    return f"; did you mean {close[0]}?" + (f"\n  {close[0]}: {help_text}" if help_text else "")


def unknown_key(path: str, key: str, allowed, helps: dict[str, str] | None = None, owner: str = "") -> ConfigError:
    """The error for `path.key` that is not one of `allowed`: did-you-mean, then the allowed keys (when few)."""
    allowed = sorted(str(a) for a in allowed)
    what = f"{owner} has no field {key!r}" if owner else "unknown key"
    listed = f"\n  allowed: {', '.join(allowed)}" if len(allowed) <= _MAX_LISTED else ""
    return ConfigError(f"{path}.{key}: {what}{did_you_mean(key, allowed, helps)}{listed}")


def known_keys(block, allowed, path: str) -> None:
    """Every key of `block` is one of `allowed`; the first one that is not fails with a did-you-mean."""
    unknown = sorted(str(k) for k in set(block or {}) - set(allowed))
    if unknown:
        raise unknown_key(path, unknown[0], allowed)


def number(block, key: str, path: str, ok, expected: str, integer: bool = False) -> None:
    """block[key] is a number (an integer when `integer`) for which ok(value) holds."""
    value = block.get(key)
    kind = int if integer else (int, float)
    require(isinstance(value, kind) and not isinstance(value, bool) and ok(value),
            f"{path}.{key}={value!r}: expected {expected}")


def helps(schema) -> dict[str, str]:
    """{field name: help text} of a dataclass."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(schema)}


def check_block(block, schema, path: str) -> dict:
    """`block` (a mapping, DictConfig or None) checked against the dataclass `schema`: no unknown key (did-you-mean),
    every required field present, each value of the field's type, among its choices and within its `check` rule.
    Returns the block's values, coerced (an int for a float field), with the defaults of the absent fields."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(block, DictConfig):
        block = OmegaConf.to_container(block, resolve=True)
    block = dict(block or {})
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    hints = typing.get_type_hints(schema)
    unknown = sorted(str(k) for k in set(block) - set(fields))
    if unknown:
        raise unknown_key(path, unknown[0], fields, helps(schema))
    values = {}
    for name, f in fields.items():
        if name in block:
            values[name] = check_value(f"{path}.{name}", f, hints[name], block[name], f.metadata.get("check"))
        elif f.default is not dataclasses.MISSING:
            values[name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[name] = f.default_factory()
        else:
            raise ConfigError(f"{path}.{name}: required ({_first_sentence(f.metadata.get('help', ''))})")
    return values


def check_value(path: str, field: dataclasses.Field, hint, value, rule: Rule | None = None):
    """`value` of dataclass field `field` (type `hint`) at `path`, coerced; its choices and `rule` checked. A value
    of the wrong type is reported with the rule's range when there is one."""
    given = value
    try:
        value = _check_type(path, value, hint)
    except ConfigError as e:
        if rule is None:
            raise
        raise ConfigError(f"{e}; allowed: {rule[1]}") from None
    allowed = choices_of(field, hint)
    if allowed and value is not None:
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v not in allowed:
                raise ConfigError(f"{path}={v!r}: unknown value{did_you_mean(v, allowed) or ';'} allowed: {allowed}")
    if rule is not None and value is not None:
        ok, expected = rule
        if not ok(value):
            raise ConfigError(f"{path}={given!r}: expected {expected}")
    return value


def choices_of(field: dataclasses.Field, hint) -> list[str] | None:
    """The allowed values of a string field: a Literal hint, `metadata["choices"]`, or TRL's "Possible values are"
    help text."""
    if typing.get_origin(hint) is typing.Literal:
        return [str(a) for a in typing.get_args(hint)]
    if field.metadata.get("choices"):  # declared by the dataclass (TRL's KTO/CPO loss types, samplers, ...)
        return [str(c) for c in field.metadata["choices"]]
    help_text = field.metadata.get("help", "")
    m = re.search(r"Possible values are:?(.*?)(?:\.\s|\.$|$)", help_text, re.S)
    if not m:
        return None
    found = re.findall(r"`'?([\w-]+)'?`", m.group(1))
    return found or None


def _first_sentence(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    m = re.match(r"(.+?)\.(\s|$)", text)
    text = m.group(1) if m else text
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_type(path: str, value, hint):
    """Return `value` coerced to `hint` (ints to floats, a str to a one-item list), or raise ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(path, value, arg)
            except ConfigError:
                pass
        raise ConfigError(f"{path}={value!r}: expected {_describe(hint)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}={value!r}: expected one of {list(args)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str) and args and args[0] is str:
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}={value!r}: expected a list")
        inner = args[0] if args else Any
        return [_check_type(f"{path}[{i}]", v, inner) for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}={value!r}: expected a mapping")
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [e.value for e in hint]
        if value not in allowed and not isinstance(value, hint):
            raise ConfigError(f"{path}={value!r}: expected one of {allowed}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}={value!r}: expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}={value!r}: expected an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r}: expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}={value!r}: expected a string")
        return value
    return value


def _describe(hint) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "null")
