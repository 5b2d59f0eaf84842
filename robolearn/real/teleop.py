"""Teleoperation devices: a person drives the arm with ``ee_delta_pose`` actions, and marks episodes.

:class:`Teleop` is polled once per control step: :meth:`Teleop.get_action` reads everything the
device produced since the last poll and returns a 7-vector in the robot's action units
(translation and rotation in [-1, 1] of the action range, in the task frame: x away from the
robot base, y to its left, z up; then the gripper, -1 open / +1 closed), and
:meth:`Teleop.events` hands over the episode controls pressed meanwhile.

Episode controls are keys in the terminal for every device (a terminal in cbreak mode: no X
server, and Ctrl-C still interrupts):

====================  =========================================================================
``Enter``             start recording an episode (the robot resets first when it can)
``e``                 end the episode and save it as a successful demonstration
``x``                 end the episode and discard it
``q``                 quit (an episode in progress is discarded)
``space``             toggle the gripper (the SpaceMouse's left button too)
====================  =========================================================================

Devices:

* ``keyboard``: each press of a motion key moves one control step at ``scale`` (translation) or
  ``rot_scale`` (rotation) of the full action; holding a key repeats at the terminal's key
  repeat rate. ``w``/``s`` +x/-x, ``a``/``d`` +y/-y, ``r``/``f`` +z/-z; ``u``/``o``, ``i``/``k``,
  ``j``/``l`` rotate about +x/-x, +y/-y, +z/-z.
* ``spacemouse`` (extra ``spacemouse``: ``pyspacemouse``): the 6-DoF puck, read once per step,
  for an operator facing the same way as the robot (push forward = +x, push left = +y, lift =
  +z; tilt and twist rotate about the same axes), at ``scale`` / ``rot_scale`` of the action
  range at full deflection; ``deadzone`` filters sensor noise.

Key sources are pluggable (``source``: an object or ``"module:factory"``): tests script them.
"""

from __future__ import annotations

import enum
import os
import select
import sys
import termios
import tty
from abc import abstractmethod
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from robolearn.real.drivers.vendor import import_vendor, resolve_callable
from robolearn.real.robot import Connectable


class TeleopEvent(enum.Enum):
    START = "start"
    STOP = "stop"  # end and save (success)
    DISCARD = "discard"
    QUIT = "quit"


EPISODE_KEYS = {
    "\n": TeleopEvent.START,
    "\r": TeleopEvent.START,
    "e": TeleopEvent.STOP,
    "x": TeleopEvent.DISCARD,
    "q": TeleopEvent.QUIT,
}
GRIPPER_KEY = " "


class KeySource(Protocol):
    """Characters typed by the operator, read without blocking."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def read(self) -> str:
        """Everything typed since the last read ("" when nothing)."""
        ...


class TerminalKeys:
    """Keys from this process's terminal in cbreak mode (no echo, no Enter needed, Ctrl-C kept)."""

    def __init__(self, stream: Any = None):
        self.stream = stream or sys.stdin
        self._saved: list[Any] | None = None

    def open(self) -> None:
        if not self.stream.isatty():
            raise ValueError(
                "keyboard teleop needs an interactive terminal (stdin is not a TTY); "
                "run robolearn-collect in a terminal, not through a pipe"
            )
        fd = self.stream.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)

    def close(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    def read(self) -> str:
        fd, chunks = self.stream.fileno(), []
        while select.select([fd], [], [], 0)[0]:
            data = os.read(fd, 1024)
            if not data:
                break
            chunks.append(data.decode(errors="ignore"))
        return "".join(chunks)


def _key_source(source: KeySource | str | None) -> KeySource:
    if source is None:
        return TerminalKeys()
    if isinstance(source, str):
        factory = resolve_callable(source, "teleop.source")
        assert factory is not None
        return factory()
    return source


class Teleop(Connectable):
    """A teleoperation device: motion from :meth:`_motion`, episode keys and gripper shared."""

    device = "teleop"

    def __init__(
        self, scale: float = 0.5, rot_scale: float = 0.5, source: KeySource | str | None = None
    ):
        if not (0 < scale <= 1 and 0 < rot_scale <= 1):
            raise ValueError(
                f"teleop {self.device}: scale and rot_scale must be in (0, 1], "
                f"got {scale} and {rot_scale}"
            )
        self.scale, self.rot_scale = float(scale), float(rot_scale)
        self.keys = _key_source(source)
        self.gripper_closed = False
        self._events: list[TeleopEvent] = []

    @abstractmethod
    def _motion(self, typed: str) -> np.ndarray:
        """(6,) translation and rotation in [-1, 1], given the keys typed this step."""

    def _open_device(self) -> None:
        """Open the motion device (nothing for the keyboard)."""

    def _close_device(self) -> None:
        """Close the motion device."""

    def connect(self) -> None:
        self._open_device()
        try:
            self.keys.open()
        except BaseException:
            self._close_device()
            raise

    def disconnect(self) -> None:
        try:
            self.keys.close()
        finally:
            self._close_device()

    def get_action(self) -> np.ndarray:
        """The action for this control step (7: motion, then gripper -1 open / +1 closed)."""
        typed = self.keys.read()
        for ch in typed:
            if ch in EPISODE_KEYS:
                self._events.append(EPISODE_KEYS[ch])
            elif ch == GRIPPER_KEY:
                self.toggle_gripper()
        motion = np.clip(self._motion(typed), -1.0, 1.0)
        gripper = 1.0 if self.gripper_closed else -1.0
        return np.append(motion, gripper).astype(np.float32)

    def events(self) -> list[TeleopEvent]:
        """Episode controls since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def toggle_gripper(self) -> None:
        self.gripper_closed = not self.gripper_closed


#: motion key -> (axis of the 6-vector, sign)
MOTION_KEYS = {
    "w": (0, 1.0),
    "s": (0, -1.0),
    "a": (1, 1.0),
    "d": (1, -1.0),
    "r": (2, 1.0),
    "f": (2, -1.0),
    "u": (3, 1.0),
    "o": (3, -1.0),
    "i": (4, 1.0),
    "k": (4, -1.0),
    "j": (5, 1.0),
    "l": (5, -1.0),
}


class KeyboardTeleop(Teleop):
    device = "keyboard"

    def _motion(self, typed: str) -> np.ndarray:
        motion = np.zeros(6)
        for ch in typed:
            if ch in MOTION_KEYS:
                axis, sign = MOTION_KEYS[ch]
                motion[axis] = sign * (self.scale if axis < 3 else self.rot_scale)
        return motion


class SpaceMouseTeleop(Teleop):
    """A 3Dconnexion SpaceMouse through ``pyspacemouse`` >= 2 (``open``, ``device.read``).

    The device is opened with pyspacemouse's ROS axis convention (x forward, y left, z up;
    roll, pitch, yaw about them), which is the task frame for an operator facing the same way
    as the robot, so its axes map one to one; button 0 toggles the gripper.
    """

    device = "spacemouse"

    def __init__(
        self,
        scale: float = 1.0,
        rot_scale: float = 1.0,
        deadzone: float = 0.05,
        source: KeySource | str | None = None,
        pyspacemouse: ModuleType | None = None,
    ):
        super().__init__(scale, rot_scale, source)
        if not 0 <= deadzone < 1:
            raise ValueError(f"teleop spacemouse: deadzone must be in [0, 1), got {deadzone}")
        self.deadzone = float(deadzone)
        self._lib = pyspacemouse or import_vendor("pyspacemouse", "spacemouse", "spacemouse")
        self._mouse: Any = None
        self._button_down = False

    def _open_device(self) -> None:
        try:
            self._mouse = self._lib.open(axis_convention=self._lib.AxisConvention.ROS)
        except RuntimeError as e:
            raise ValueError(
                f"teleop spacemouse: {e} (is it plugged in, and may this user read "
                "/dev/hidraw*? see pyspacemouse's udev rule)"
            ) from e

    def _close_device(self) -> None:
        if self._mouse is not None:
            mouse, self._mouse = self._mouse, None
            mouse.close()

    def _motion(self, typed: str) -> np.ndarray:
        state = self._mouse.read()
        pressed = bool(state.buttons and state.buttons[0])
        if pressed and not self._button_down:
            self.toggle_gripper()
        self._button_down = pressed
        raw = np.array([state.x, state.y, state.z, state.roll, state.pitch, state.yaw], float)
        raw = np.where(np.abs(raw) < self.deadzone, 0.0, raw)
        return np.concatenate([raw[:3] * self.scale, raw[3:] * self.rot_scale])


TELEOPS: dict[str, Callable[..., Teleop]] = {
    "keyboard": KeyboardTeleop,
    "spacemouse": SpaceMouseTeleop,
}


def make_teleop(device: str, **kwargs: Any) -> Teleop:
    """A teleop device from its config: ``{device: keyboard|spacemouse, ...its settings}``."""
    if device not in TELEOPS:
        raise ValueError(f"unknown teleop device {device!r}; choose from {sorted(TELEOPS)}")
    try:
        return TELEOPS[device](**kwargs)
    except TypeError as e:
        raise ValueError(f"teleop {device}: bad settings {sorted(kwargs)}: {e}") from e
