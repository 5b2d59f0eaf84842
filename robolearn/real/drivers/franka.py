"""Franka Emika Panda / FR3 through ``franky`` (PyPI ``franky-control``, extra ``franka``).

Contract (on top of :class:`~robolearn.real.drivers.cartesian.CartesianArm`'s):

* **Units and frames.** franky speaks metres and radians. ``joint_pos`` is
  ``robot.current_joint_state.position`` (7). The TCP is
  ``robot.current_cartesian_state.pose.end_effector_pose``, an ``Affine`` in the base frame whose
  ``quaternion`` is ``(x, y, z, w)``; targets go out as absolute ``Affine`` poses. With the
  Franka Hand the end-effector frame is the sim Panda's ``tcp`` site (both 0.1034 m past the
  flange, rotated -45 degrees about z), so ``tool_quat`` stays the identity.
* **Rates.** libfranka closes a 1 kHz loop on the control PC; each action starts an
  asynchronous ``CartesianMotion`` to the new target, which franky blends into the running one
  (motion preemption), with ``relative_dynamics_factor`` (0-1) capping velocity, acceleration
  and jerk. The loop needs a real-time kernel on the control PC.
* **Gripper.** The Franka Hand's ``width`` (m, 0 to ``max_width`` ~0.08) maps to the opening
  fraction; a finger of the sim Panda is half the width. A new gripper command is sent only when
  the target differs from the last command (or, first, the measured width) by more than
  ``gripper_deadband`` (the hand takes ~0.5 s per move): closing is
  a ``grasp`` with ``grasp_force`` newtons and wide epsilons (any object width counts), opening a
  ``move``.
* **Stop and disconnect.** ``stop()`` and ``disconnect()`` call ``robot.stop()`` (decelerate
  the running motion) and ``gripper.stop()``; franky has no explicit close, the connection ends
  with the objects. If this process dies, the 1 kHz command stream stops and the robot's
  communication reflex brakes the arm.
* **Errors.** franky's ``ControlException``, ``CommandException``, ``NetworkException`` ... become
  :class:`RobotError`; after a reflex (collision, joint limit) call ``recover()`` or restart:
  ``connect()`` always runs ``recover_from_errors``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from robolearn.real.drivers.cartesian import ArmState, CartesianArm
from robolearn.real.drivers.geometry import (
    mat_to_quat,
    quat_to_mat,
    wxyz_to_xyzw,
    xyzw_to_wxyz,
)
from robolearn.real.drivers.vendor import import_vendor


class FrankaRobot(CartesianArm):
    """A Franka arm streaming absolute Cartesian motions through franky.

    Args:
        host: the robot's FCI IP address.
        relative_dynamics_factor: share (0, 1] of the robot's velocity/acceleration/jerk limits.
        gripper: drive the Franka Hand.
        gripper_speed: m/s; grasp_force: N; gripper_deadband: m of width change worth a command.
        franky: the vendor module (tests pass a fake); imported otherwise.
        **kwargs: :class:`CartesianArm` settings.
    """

    name = "franka"

    def __init__(
        self,
        host: str,
        *,
        relative_dynamics_factor: float = 0.1,
        gripper: bool = True,
        gripper_speed: float = 0.1,
        grasp_force: float = 20.0,
        gripper_deadband: float = 0.005,
        franky: Any = None,
        **kwargs: Any,
    ):
        if not 0.0 < relative_dynamics_factor <= 1.0:
            raise ValueError(
                f"franka: relative_dynamics_factor must be in (0, 1], got {relative_dynamics_factor}"
            )
        super().__init__(num_joints=7, has_gripper=gripper, **kwargs)
        self.host, self.relative_dynamics_factor = host, relative_dynamics_factor
        self.gripper_speed, self.grasp_force = gripper_speed, grasp_force
        self.gripper_deadband = gripper_deadband
        self._franky = franky or import_vendor("franky", "franka", "franka")
        self._robot: Any = None
        self._gripper: Any = None
        self._sent_width: float | None = None

    def recover(self) -> None:
        """Clear a reflex (collision, joint limit) so that motions are accepted again."""
        with self.vendor_call("recover_from_errors"):
            self._robot.recover_from_errors()

    def _open(self) -> None:
        robot = self._franky.Robot(self.host)
        robot.recover_from_errors()
        robot.relative_dynamics_factor = self.relative_dynamics_factor
        self._robot = robot
        if self.has_gripper:
            self._gripper = self._franky.Gripper(self.host)
        self._sent_width = None

    def _halt(self) -> None:
        if self._robot is not None:
            self._robot.stop()
        if self._gripper is not None:
            self._gripper.stop()

    def _close(self) -> None:
        self._robot = self._gripper = None

    def _read(self) -> ArmState:
        q = np.asarray(self._robot.current_joint_state.position, np.float64)
        ee = self._robot.current_cartesian_state.pose.end_effector_pose
        opening = None
        if self._gripper is not None:
            opening = float(self._gripper.width) / float(self._gripper.max_width)
        return ArmState(
            joint_pos=q,
            tcp_pos=np.asarray(ee.translation, np.float64),
            tcp_rot=quat_to_mat(xyzw_to_wxyz(ee.quaternion)),
            gripper_opening=opening,
            timestamp=time.monotonic(),
        )

    def _command_pose(self, pos: np.ndarray, rot: np.ndarray) -> None:
        f = self._franky
        target = f.Affine(pos.tolist(), wxyz_to_xyzw(mat_to_quat(rot)).tolist())
        self._robot.move(f.CartesianMotion(target, f.ReferenceType.Absolute), asynchronous=True)

    def _command_gripper(self, opening: float) -> None:
        width = opening * float(self._gripper.max_width)
        # Compare with the last command, or with the measured width before the first one.
        last = float(self._gripper.width) if self._sent_width is None else self._sent_width
        if abs(width - last) <= self.gripper_deadband:
            return
        closing = width < last
        if closing:
            self._gripper.grasp_async(width, self.gripper_speed, self.grasp_force, 1.0, 1.0)
        else:
            self._gripper.move_async(width, self.gripper_speed)
        self._sent_width = width
