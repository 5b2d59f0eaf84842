"""Loading what drivers name by string: vendor packages (optional extras) and user callables."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any


class MissingExtraError(ImportError):
    """A driver's vendor package is not installed; the message names the pip extra."""


def import_vendor(module: str, extra: str, driver: str) -> ModuleType:
    """Import a vendor module, or say which robolearn extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"the {driver} driver needs the Python module {module!r}, which is missing: "
            f"pip install 'robolearn[{extra}]' ({e})"
        ) from e


def resolve_callable(ref: str | Callable[..., Any] | None, what: str) -> Callable[..., Any] | None:
    """A callable, or a ``"package.module:attribute"`` reference to one (as YAML can give it)."""
    if ref is None or callable(ref):
        return ref
    module, sep, attr = str(ref).partition(":")
    if not sep:
        raise ValueError(f"{what}: expected 'package.module:attribute', got {ref!r}")
    try:
        target = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{what}: cannot import {ref!r}: {e}") from e
    if not callable(target):
        raise ValueError(f"{what}: {ref!r} is not callable")
    return target
