"""Locate the data folders that ship with robolearn (``sim/`` models, ``conf/`` Hydra tree).

In the source tree they are the top-level ``sim/`` and ``conf/`` folders; an installed package
carries them as ``robolearn._sim`` and ``robolearn._conf`` (see ``pyproject.toml``). Resolving
through the import system makes both work from any working directory.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    # Running from a source checkout that was never installed.
    fallback = (
        Path(__file__).resolve().parents[1]
        / {"robolearn._sim": "sim", "robolearn._conf": "conf", "robolearn._real": "real"}[package]
    )
    if not fallback.is_dir():
        raise FileNotFoundError(
            f"cannot find robolearn's data package {package!r} (looked at {fallback})"
        )
    return fallback


def sim_asset(relative: str) -> Path:
    """Absolute path of a file under ``sim/``, e.g. ``sim_asset("robots/panda.xml")``."""
    path = _package_dir("robolearn._sim") / relative
    if not path.is_file():
        raise FileNotFoundError(f"robolearn sim asset not found: {path}")
    return path


def conf_dir() -> Path:
    """Absolute path of the Hydra config tree."""
    return _package_dir("robolearn._conf")


def real_config(name: str) -> Path:
    """Absolute path of a robot's safety config under ``real/``, e.g. ``real_config("sim_panda.yaml")``."""
    path = _package_dir("robolearn._real") / name
    if not path.is_file():
        raise FileNotFoundError(f"robolearn real-robot config not found: {path}")
    return path
