"""Robot drivers by name: the sim twin and vendor arms/cameras (optional extras).

:data:`DRIVERS` maps a name to ``"module:Class"``; modules are imported only when a driver is
built, so that a missing vendor package (an optional extra) fails only the driver that needs it,
with a message saying what to install. A driver may also be named by its ``"module:Class"``
path directly (a driver outside robolearn).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from robolearn.real.robot import Robot

DRIVERS: dict[str, str] = {
    "sim": "robolearn.real.drivers.sim:SimRobot",
    "ur": "robolearn.real.drivers.ur:URRobot",  # extra `ur` (ur-rtde)
    "franka": "robolearn.real.drivers.franka:FrankaRobot",  # extra `franka` (franky-control)
    "xarm": "robolearn.real.drivers.xarm:XArmRobot",  # extra `xarm` (xarm-python-sdk)
}


def driver_class(driver: str) -> type[Robot]:
    """The :class:`Robot` subclass a registry name or ``"module:Class"`` path names."""
    target = DRIVERS.get(driver, driver)
    if ":" not in target:
        raise ValueError(
            f"unknown robot driver {driver!r}; choose from {sorted(DRIVERS)} "
            "or give 'package.module:Class'"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise ValueError(f"robot driver {driver!r}: no module {module_name!r}") from e
        raise ImportError(
            f"robot driver {driver!r} needs the package {e.name!r}, which is not installed; "
            "install the driver's optional extra (see pyproject.toml, "
            "[project.optional-dependencies])"
        ) from e
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Robot)):
        raise ValueError(f"robot driver {driver!r}: {target} is not a Robot subclass")
    return cls


def make_robot(
    driver: str, kwargs: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None
) -> Robot:
    """Build (not connect) the driver named ``driver`` with ``kwargs``.

    ``defaults`` fill in the arguments the driver's constructor accepts and ``kwargs`` leave
    out, so that a caller can offer context (the sim twin takes the checkpoint's ``task``,
    ``task_overrides`` and the control ``rate_hz`` this way) to whichever driver wants it.
    """
    cls = driver_class(driver)
    accepted = inspect.signature(cls).parameters
    merged = {k: v for k, v in (defaults or {}).items() if k in accepted} | dict(kwargs or {})
    try:
        return cls(**merged)
    except TypeError as e:
        raise ValueError(f"robot driver {driver!r}: bad arguments {sorted(merged)}: {e}") from e
