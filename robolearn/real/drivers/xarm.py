"""UFACTORY xArm 5/6/7 and Lite 6 through ``xarm-python-sdk`` (extra ``xarm``).

Contract (on top of :class:`~robolearn.real.drivers.cartesian.CartesianArm`'s):

* **Units and frames.** The SDK is used in its default units, **millimetres and degrees**
  (``is_radian=False`` everywhere, explicitly): TCP poses are ``[x, y, z, roll, pitch, yaw]`` in
  the base frame with ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``, read with ``get_position`` and
  commanded with ``set_servo_cartesian``; ``joint_pos`` is ``get_servo_angle`` converted to
  radians (the first ``num_joints`` values). Everything robolearn sees is in metres and radians.
* **Rates.** Servo mode (``set_mode(1)``) executes only the latest target, as fast as the
  arm's limits allow: keep each step small (``max_pos_delta`` and the safety layer's per-step
  cap; the default 5 cm per 50 ms step is 1 m/s, so cap it lower on a real arm).
* **Gripper.** The xArm Gripper's position is in pulses, 0 (closed) to 850 (open), commanded
  with ``set_gripper_position(wait=False)`` and read with ``get_gripper_position``; ``gripper_qpos``
  reports it on the sim Panda's finger scale.
* **Stop and disconnect.** ``stop()`` calls ``emergency_stop()`` (the arm halts and leaves
  the motion state: ``connect()`` again re-enables it). ``disconnect()`` does the same, then
  ``disconnect()``. If this process dies, the controller keeps the last servo target, a
  position: the arm stops there.
* **Errors.** Every SDK call returns a code; a nonzero code becomes :class:`RobotError` with the
  controller's ``error_code`` and ``warn_code`` (see the xArm manual, chapter "error codes").
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from robolearn.real.drivers.cartesian import ArmState, CartesianArm
from robolearn.real.drivers.geometry import mat_to_rpy, rpy_to_mat
from robolearn.real.drivers.vendor import import_vendor
from robolearn.real.robot import RobotError

MM = 1000.0  # mm per m
GRIPPER_OPEN_PULSES = 850.0
SERVO_MODE, READY_STATE = 1, 0


class XArmRobot(CartesianArm):
    """An xArm streaming servo-mode Cartesian targets.

    Args:
        host: the control box's IP address.
        num_joints: 5, 6 or 7 (xArm7 by default).
        gripper: drive the xArm Gripper.
        gripper_speed: pulses/s (the SDK's unit, r/min on some firmware; 5000 is the default).
        xarm_wrapper: the vendor module ``xarm.wrapper`` (tests pass a fake); imported otherwise.
        **kwargs: :class:`CartesianArm` settings.
    """

    name = "xarm"

    def __init__(
        self,
        host: str,
        *,
        num_joints: int = 7,
        gripper: bool = True,
        gripper_speed: float = 5000.0,
        xarm_wrapper: Any = None,
        **kwargs: Any,
    ):
        if num_joints not in (5, 6, 7):
            raise ValueError(f"xarm: num_joints must be 5, 6 or 7, got {num_joints}")
        super().__init__(num_joints=num_joints, has_gripper=gripper, **kwargs)
        self.host, self.gripper_speed = host, gripper_speed
        self._wrapper = xarm_wrapper or import_vendor("xarm.wrapper", "xarm", "xarm")
        self._arm: Any = None

    def _open(self) -> None:
        arm = self._wrapper.XArmAPI(self.host, is_radian=False)
        self._arm = arm
        arm.clean_warn()
        arm.clean_error()
        self._ok(arm.motion_enable(enable=True), "motion_enable")
        self._ok(arm.set_mode(SERVO_MODE), "set_mode(1)")
        self._ok(arm.set_state(READY_STATE), "set_state(0)")
        if self.has_gripper:
            self._ok(arm.set_gripper_enable(True), "set_gripper_enable")
            self._ok(arm.set_gripper_mode(0), "set_gripper_mode(0)")

    def _halt(self) -> None:
        if self._arm is not None:
            self._arm.emergency_stop()

    def _close(self) -> None:
        arm, self._arm = self._arm, None
        if arm is not None:
            arm.disconnect()

    def _read(self) -> ArmState:
        code, pose = self._arm.get_position(is_radian=False)
        self._ok(code, "get_position")
        code, angles = self._arm.get_servo_angle(is_radian=False)
        self._ok(code, "get_servo_angle")
        opening = None
        if self.has_gripper:
            code, pulses = self._arm.get_gripper_position()
            self._ok(code, "get_gripper_position")
            opening = float(np.clip(pulses / GRIPPER_OPEN_PULSES, 0.0, 1.0))
        pose = np.asarray(pose, np.float64)
        return ArmState(
            joint_pos=np.deg2rad(np.asarray(angles, np.float64)[: self.num_joints]),
            tcp_pos=pose[:3] / MM,
            tcp_rot=rpy_to_mat(np.deg2rad(pose[3:6])),
            gripper_opening=opening,
            timestamp=time.monotonic(),
        )

    def _command_pose(self, pos: np.ndarray, rot: np.ndarray) -> None:
        pose = [*(pos * MM), *np.rad2deg(mat_to_rpy(rot))]
        code = self._arm.set_servo_cartesian([float(v) for v in pose], is_radian=False)
        self._ok(code, "set_servo_cartesian")

    def _command_gripper(self, opening: float) -> None:
        code = self._arm.set_gripper_position(
            opening * GRIPPER_OPEN_PULSES, wait=False, speed=self.gripper_speed
        )
        self._ok(code, "set_gripper_position")

    def _ok(self, code: int, call: str) -> None:
        if code != 0:
            arm = self._arm
            raise RobotError(
                f"xarm: {call} returned code {code} (controller error_code "
                f"{getattr(arm, 'error_code', '?')}, warn_code {getattr(arm, 'warn_code', '?')}; "
                "see the xArm manual's error codes, clear them and connect again)"
            )
