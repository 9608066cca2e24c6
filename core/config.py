"""Typed configuration: nested dataclasses built strictly from plain dicts.

Unknown keys are errors (a typo must not silently fall back to a default); values are checked
against the field's annotated type. Presets are dicts of overrides merged over the defaults.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, get_type_hints

from .errors import ConfigError

T = TypeVar("T")


def _check_value(name: str, tp: Any, value: Any) -> Any:
    """Coerce/check ``value`` against annotation ``tp`` (enough for our configs: scalars, Literal, Optional, tuples)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"Config {name!r} must be a mapping, got {type(value).__name__}.")
        return from_dict(tp, value, prefix=name + ".")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ConfigError(f"Config {name!r} must be one of {choices}, got {value!r}.")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(name, arg, value)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"Config {name!r} has an invalid value {value!r}.")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"Config {name!r} must be a list, got {value!r}.")
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if args:
            value = [_check_value(name, args[0] if len(args) == 1 else args[i], v) for i, v in enumerate(value)]
        return tuple(value) if origin is tuple else list(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"Config {name!r} must be a number, got {value!r}.")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"Config {name!r} must be an integer, got {value!r}.")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"Config {name!r} must be true or false, got {value!r}.")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"Config {name!r} must be a string, got {value!r}.")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; missing keys keep defaults, unknown keys raise ConfigError."""
    data = dict(data or {})
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"Unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
                          f"known keys here: {', '.join(sorted(names))}.")
    kwargs = {k: _check_value(prefix + k, hints[k], v) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict form of a config dataclass (JSON-serialisable)."""
    return dataclasses.asdict(cfg)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (nested dicts merge; other values replace)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out
