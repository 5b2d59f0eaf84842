"""Build (nested, frozen) dataclass configs from plain dicts with errors that name the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, path: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``data``; unknown keys and bad types raise ``ValueError``."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(
            f"unknown config key {path + unknown[0]!r} for {cls.__name__}; valid keys: {sorted(known)}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        key = f"{path}{name}"
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"config key {key!r} must be a mapping, got {value!r}")
            kwargs[name] = from_dict(hint, value, key + ".")
        else:
            kwargs[name] = _coerce(hint, value, key)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # ``X | None`` and friends
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                if dataclasses.is_dataclass(option) and isinstance(value, dict):
                    return from_dict(option, value, key + ".")
                return _coerce(option, value, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(
            errors[0] if len(errors) == 1 else f"config key {key!r}: {'; or '.join(errors)}"
        )
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"config key {key!r} must be a list, got {value!r}")
        args = typing.get_args(hint)
        if args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ValueError(f"config key {key!r} must have {len(args)} entries, got {len(value)}")
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, key) for v in value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"config key {key!r} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"config key {key!r} must be a string, got {value!r}")
        return value
    return value
