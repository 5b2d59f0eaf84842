"""Fake ``pyspacemouse`` >= 2: ``open(axis_convention=...)`` -> device with ``read``/``close``."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class AxisConvention(str, enum.Enum):
    LEGACY = "legacy"
    HID = "hid"
    HID_Z_UP = "hid_z_up"
    ROS = "ros"
    UNITY = "unity"


@dataclass
class SpaceMouseState:
    t: float = -1.0
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    buttons: list[int] = field(default_factory=list)


#: States the next opened device reports, one per read (the last one repeats); None: no device.
STATES: list[SpaceMouseState] | None = []
DEVICES: list[SpaceMouseDevice] = []


class SpaceMouseDevice:
    def __init__(self, states: list[SpaceMouseState], convention: AxisConvention | None):
        self.states, self.convention, self.closed = states, convention, False
        self._i = 0

    def read(self) -> SpaceMouseState:
        state = (
            self.states[min(self._i, len(self.states) - 1)] if self.states else SpaceMouseState()
        )
        self._i += 1
        return state

    def close(self) -> None:
        self.closed = True


def open(
    callback=None,
    dof_callback=None,
    button_callback=None,
    nonblocking=True,
    device=None,
    device_index=0,
    device_spec=None,
    axis_convention=None,
):  # noqa: A001
    if STATES is None:
        raise RuntimeError("No connected or supported devices found.")
    mouse = SpaceMouseDevice(list(STATES), axis_convention)
    DEVICES.append(mouse)
    return mouse
