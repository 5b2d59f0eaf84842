"""``Robot``: the one interface every arm driver implements (shaped like LeRobot's).

A robot declares the same :class:`~robolearn.spec.ObsSpec` a training env does, so that a
checkpoint refuses a robot it was not trained for, naming the key. Observations come out as a
dict of numpy arrays keyed by the spec's term names (plus ``"timestamp"``, seconds on
``time.monotonic``, when the observation was taken); actions go in as a numpy vector in the
spec's action units and bounds. ``send_action`` returns the action actually sent, which may
differ from the request (clamped by the driver or a :class:`SafetyLayer`): that is what an
episode recorder stores.

Nothing here imports torch training code (DESIGN.md: ``real`` depends on ``spec`` and data only).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import TypeVar

import numpy as np

from robolearn.spec import ActionSpec, ObsSpec

Observation = dict[str, np.ndarray]
Device = TypeVar("Device", bound="Connectable")


def hold_action(spec: ActionSpec, previous: np.ndarray | None = None) -> np.ndarray:
    """The action that keeps the arm where it is: zero motion, the gripper as last commanded.

    Both action modes (``ee_delta_pose``, ``joint_delta``) are deltas with an absolute gripper
    command last, so holding is zeros plus the previous gripper command (open, -1, when there
    was none): a zero gripper command would half-open a closed gripper and drop the object.
    """
    action = np.zeros(spec.dim, dtype=np.float32)
    action[-1] = spec.low if previous is None else float(previous[-1])
    return action


class RobotError(RuntimeError):
    """A driver fault: connection lost, command refused, hardware error."""


class Connectable(ABC):
    """A device with a connection: a context manager that connects on entry and disconnects
    on exit, whatever ended the block (robots, cameras and teleop devices share it)."""

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def disconnect(self) -> None: ...

    def __enter__(self: Device) -> Device:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()


class Robot(Connectable):
    """Connect, read observations, send actions, disconnect.

    Drivers document their contract in their docstring: units and frames of each observation
    term and of the action, the rates they sustain, and what the arm does on ``disconnect`` or
    when the process dies (it must come to rest, never hold the last velocity command).
    """

    name: str = "robot"
    #: Seconds of the robot's own time per wall-clock second: 1 for real arms; the sim twin
    #: runs faster when driven above its task's control rate (tests). Speeds measured from
    #: observation timestamps are divided by it.
    time_scale: float = 1.0

    @property
    @abstractmethod
    def observation_spec(self) -> ObsSpec:
        """The spec this robot's observations and actions follow (same as the training env's)."""

    @property
    def action_spec(self):
        return self.observation_spec.action

    @property
    @abstractmethod
    def is_connected(self) -> bool: ...

    @abstractmethod
    def connect(self) -> None:
        """Open the connection and bring the arm to a state ready to take actions."""

    @abstractmethod
    def disconnect(self) -> None:
        """Stop the arm and release the connection. Idempotent; safe after a fault."""

    @abstractmethod
    def get_observation(self) -> Observation:
        """The latest observation: spec terms as numpy arrays plus ``"timestamp"``."""

    @abstractmethod
    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Command one action (spec units); returns the action actually sent."""

    def stop(self) -> None:
        """Bring the arm to rest now (fault path). Default: disconnect."""
        self.disconnect()

    def limit_workspace(self, low: tuple[float, ...], high: tuple[float, ...]) -> None:
        """Keep every commanded TCP target inside the box ``low..high`` (task frame, m).

        The safety layer checks each step against the *measured* TCP; a driver that integrates
        its targets (:class:`~robolearn.real.drivers.cartesian.CartesianArm`) can command ahead
        of a lagging arm, so it clamps the absolute target too. Default: nothing to do (the
        target is the measured pose plus the checked step)."""

    def reset(self) -> Observation:
        """Start an episode (the sim twin re-samples its scene; a real arm moves home).

        Drivers that cannot reset on their own raise ``NotImplementedError``; the deploy loop
        then asks the operator to reset the scene.
        """
        raise NotImplementedError(f"{self.name} cannot reset the scene by itself")
