"""robolearn: from demonstrations to a deployed manipulation skill, in one stack."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

__version__ = "0.1.0"


def _default_headless_gl() -> None:
    """Choose MuJoCo's OpenGL backend on a headless Linux machine before mujoco is imported.

    MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is imported, and defaults to GLFW, which
    needs a display. Without one, prefer EGL and then OSMesa, whichever library loads. An explicit
    ``MUJOCO_GL`` (or a display) is respected.
    """
    if sys.platform != "linux" or os.environ.get("MUJOCO_GL"):
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    for backend, library in (("egl", "libEGL.so.1"), ("osmesa", "libOSMesa.so.8")):
        try:
            ctypes.CDLL(library)
        except OSError:
            continue
        os.environ["MUJOCO_GL"] = backend
        return


_default_headless_gl()


def __getattr__(name: str) -> Any:
    # Lazy, so that ``import robolearn`` does not pull in torch and the policies.
    if name == "load_policy":
        from robolearn.checkpoint import load_policy

        return load_policy
    raise AttributeError(f"module 'robolearn' has no attribute {name!r}")
