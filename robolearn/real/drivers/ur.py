"""Universal Robots (UR3e/UR5e/UR10e...) through ``ur-rtde`` (extra ``ur``).

Contract (on top of :class:`~robolearn.real.drivers.cartesian.CartesianArm`'s):

* **Units and frames.** ur-rtde speaks metres and radians; a TCP pose is
  ``[x, y, z, rx, ry, rz]`` in the robot's base frame with a rotation vector, read with
  ``getActualTCPPose`` and commanded with ``servoL``. ``joint_pos`` is ``getActualQ`` (6, rad).
  The TCP is whatever the teach pendant's active TCP is: set it to the fingertip centre.
* **Rates.** The RTDE link runs at the controller's rate (500 Hz on e-Series, 125 Hz on CB3);
  reads are the receive interface's latest sample. Each action is one ``servoL`` to the new
  absolute target with ``servo_time = 1 / control_freq`` and a ``lookahead_time`` smoothing it.
* **Gripper.** ur-rtde drives no gripper; pass ``gripper``, any object with
  ``set_opening(fraction)`` and ``opening() -> fraction`` (1 open, 0 closed), e.g. a thin
  wrapper around a Robotiq socket client. Without one the spec has no ``gripper_qpos`` and the
  gripper action is ignored.
* **Stop and disconnect.** ``stop()`` ends servoing (``servoStop``) and decelerates the TCP
  (``stopL``). ``disconnect()`` does the same, then stops the control script and closes both
  interfaces. If this process dies, ``servoL`` targets are positions: the arm holds the last
  one, and the control script exits when the RTDE connection drops (then the robot stops).
* **Errors.** ur-rtde raises ``RuntimeError`` on a lost connection and returns ``False`` from
  commands the controller refuses (protective stop, e-stop, script not running); both become
  :class:`RobotError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from robolearn.real.drivers.cartesian import ArmState, CartesianArm
from robolearn.real.drivers.geometry import mat_to_rotvec, rotvec_to_mat
from robolearn.real.drivers.vendor import import_vendor
from robolearn.real.robot import RobotError


class Gripper(Protocol):
    """A gripper the UR driver can drive: opening fraction, 1 open, 0 closed."""

    def set_opening(self, fraction: float) -> None: ...

    def opening(self) -> float: ...


class URRobot(CartesianArm):
    """A UR arm streaming ``servoL`` TCP targets over RTDE.

    Args:
        host: the controller's IP address.
        rtde_frequency: RTDE rate (Hz); -1 lets ur-rtde pick the controller's (500 / 125).
        servo_speed, servo_acceleration: ``servoL``'s speed and acceleration arguments
            (unused by the controller today, kept for the documented signature).
        lookahead_time: ``servoL`` smoothing horizon, 0.03-0.2 s.
        gain: ``servoL`` proportional gain, 100-2000.
        stop_deceleration: m/s^2 for ``servoStop``/``stopL``.
        gripper: optional gripper object (see :class:`Gripper`).
        rtde_control, rtde_receive: the vendor modules (tests pass fakes); imported otherwise.
        **kwargs: :class:`CartesianArm` settings.
    """

    name = "ur"

    def __init__(
        self,
        host: str,
        *,
        rtde_frequency: float = -1.0,
        servo_speed: float = 0.25,
        servo_acceleration: float = 1.2,
        lookahead_time: float = 0.1,
        gain: float = 300.0,
        stop_deceleration: float = 2.0,
        gripper: Gripper | None = None,
        rtde_control: Any = None,
        rtde_receive: Any = None,
        **kwargs: Any,
    ):
        if not 0.03 <= lookahead_time <= 0.2 or not 100 <= gain <= 2000:
            raise ValueError(
                f"ur: lookahead_time must be in [0.03, 0.2] s and gain in [100, 2000]; "
                f"got {lookahead_time} and {gain}"
            )
        super().__init__(num_joints=6, has_gripper=gripper is not None, **kwargs)
        self.host, self.rtde_frequency = host, float(rtde_frequency)
        self.servo_speed, self.servo_acceleration = servo_speed, servo_acceleration
        self.lookahead_time, self.gain = lookahead_time, gain
        self.stop_deceleration = stop_deceleration
        self.gripper = gripper
        self._rtde_control = rtde_control or import_vendor("rtde_control", "ur", "ur")
        self._rtde_receive = rtde_receive or import_vendor("rtde_receive", "ur", "ur")
        self._control: Any = None
        self._receive: Any = None

    def _open(self) -> None:
        self._receive = self._rtde_receive.RTDEReceiveInterface(self.host, self.rtde_frequency)
        self._control = self._rtde_control.RTDEControlInterface(self.host, self.rtde_frequency)

    def _halt(self) -> None:
        if self._control is not None:
            self._control.servoStop(self.stop_deceleration)
            self._control.stopL(self.stop_deceleration)

    def _close(self) -> None:
        control, receive = self._control, self._receive
        self._control = self._receive = None
        if control is not None:
            control.stopScript()
            control.disconnect()
        if receive is not None:
            receive.disconnect()

    def _read(self) -> ArmState:
        pose = np.asarray(self._receive.getActualTCPPose(), np.float64)
        q = np.asarray(self._receive.getActualQ(), np.float64)
        stamp = time.monotonic()
        if pose.shape != (6,) or q.shape != (6,):
            raise RobotError(f"ur: RTDE returned a TCP pose of {pose.shape} and q of {q.shape}")
        return ArmState(
            joint_pos=q,
            tcp_pos=pose[:3],
            tcp_rot=rotvec_to_mat(pose[3:]),
            gripper_opening=None if self.gripper is None else float(self.gripper.opening()),
            timestamp=stamp,
        )

    def _command_pose(self, pos: np.ndarray, rot: np.ndarray) -> None:
        pose = [*map(float, pos), *map(float, mat_to_rotvec(rot))]
        self._accepted(
            self._control.servoL,
            pose,
            self.servo_speed,
            self.servo_acceleration,
            1.0 / self.control_freq,
            self.lookahead_time,
            self.gain,
        )

    def _command_gripper(self, opening: float) -> None:
        assert self.gripper is not None
        self.gripper.set_opening(opening)

    def _accepted(self, command: Callable[..., Any], *args: Any) -> None:
        if command(*args) is False:
            raise RobotError(
                f"ur: the controller refused {command.__name__} (protective stop, e-stop or "
                "the control script not running? check the teach pendant)"
            )
