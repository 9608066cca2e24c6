"""Typed configuration: nested dataclasses built strictly from plain dicts.

Unknown keys are errors (a typo must not silently fall back to a default); values are checked
against the field's annotated type and, by what their names mean, against their range (:func:`check_range`).
Presets are dicts of overrides merged over the defaults.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any, TypeVar, cast, get_type_hints

from ..runtime.errors import ConfigError

T = TypeVar("T")

#: Integers that may be 0 (off, none, no limit; 0 steps run a stage not at all, e.g. to bake a saved state as it is);
#: every other integer setting counts something and must be >= 1.
MAY_BE_ZERO = frozenset({"steps", "chart_padding", "max_image_size", "preview_every", "warmup", "warmup_steps",
                         "n_hidden_layers", "bg_freqs", "max_text_tokens", "seed"})
#: The largest seed (torch's generators take 64-bit seeds; one below 2**63 works on every device).
MAX_SEED = 2**63 - 1


def check_range(name: str, value: int | float) -> None:
    """Refuse a number outside what its setting can mean: every number finite; integers >= 1 unless
    :data:`MAY_BE_ZERO` (and the seed at most :data:`MAX_SEED`); learning rates, radii, distances and fields of view
    > 0; weights >= 0; probabilities and step fractions in [0, 1]."""
    key = name.rsplit(".", 1)[-1]
    if not math.isfinite(value):
        raise ConfigError(f"Config {name!r} must be a finite number, got {value!r}.")
    if isinstance(value, int):
        low = 0 if key in MAY_BE_ZERO else 1
        if value < low or (key == "seed" and value > MAX_SEED):
            top = f" and at most {MAX_SEED}" if key == "seed" else ""
            raise ConfigError(f"Config {name!r} must be at least {low}{top}, got {value}.")
        return
    if (key.startswith(("lr", "distance_", "fov_")) or ".lr." in name or key.endswith("radius")) and value <= 0:
        raise ConfigError(f"Config {name!r} must be greater than 0, got {value}.")
    if key.endswith("_weight") and value < 0:
        raise ConfigError(f"Config {name!r} must be 0 or more, got {value}.")
    if (key.endswith("_prob") or "percent" in key) and not 0.0 <= value <= 1.0:
        raise ConfigError(f"Config {name!r} must be between 0 and 1, got {value}.")


def _check_value(name: str, tp: Any, value: Any) -> Any:
    """Coerce/check ``value`` against annotation ``tp`` (enough for our configs: scalars, Literal, Optional, tuples)."""
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
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
        kinds = [a for a in typing.get_args(tp) if a is not Ellipsis]
        items: list[Any] = list(value)
        if kinds:
            items = [_check_value(name, kinds[0] if len(kinds) == 1 else kinds[i], v) for i, v in enumerate(items)]
        return tuple(items) if origin is tuple else items
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"Config {name!r} must be a number, got {value!r}.")
        check_range(name, float(value))
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"Config {name!r} must be an integer, got {value!r}.")
        check_range(name, value)
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
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}
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


def read_config_file(path: str | None) -> dict:
    """The overrides in the JSON config file ``path`` (``--config``); {} without one."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Cannot read the config file {path!r}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"The config file {path!r} must hold a JSON object.")
    return data
