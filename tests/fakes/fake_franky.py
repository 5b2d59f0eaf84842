"""Fake ``franky`` (franky-control): metres, radians, ``Affine`` with (x, y, z, w) quaternions."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class Exception(RuntimeError):  # noqa: A001 - franky's base exception has this name
    pass


class ControlException(Exception):
    pass


class Affine:
    def __init__(self, translation=(0.0, 0.0, 0.0), quaternion=(0.0, 0.0, 0.0, 1.0)):
        self.translation = np.asarray(translation, dtype=np.float64).reshape(3)
        self.quaternion = np.asarray(quaternion, dtype=np.float64).reshape(4)


class ReferenceType(enum.Enum):
    Absolute = 0
    Relative = 1


class CartesianMotion:
    def __init__(self, target: Affine, reference_type=ReferenceType.Absolute, **kwargs):
        if not isinstance(target, Affine):
            raise TypeError("CartesianMotion(): target must be an Affine")
        self.target, self.reference_type = target, reference_type


@dataclass
class JointState:
    position: np.ndarray


@dataclass
class RobotPose:
    end_effector_pose: Affine


@dataclass
class CartesianState:
    pose: RobotPose


#: Every Robot and Gripper created, so tests can inspect them.
ROBOTS: list[Robot] = []
GRIPPERS: list[Gripper] = []


class Robot:
    def __init__(self, fci_hostname: str):
        self.fci_hostname = fci_hostname
        self.relative_dynamics_factor = 1.0
        self.ee = Affine([0.4, 0.0, 0.3], [1.0, 0.0, 0.0, 0.0])  # pointing down
        self.q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
        self.moves: list[tuple[CartesianMotion, bool]] = []
        self.stopped = 0
        self.recovered = 0
        self.reflex: str | None = None  # set to make the next move raise
        ROBOTS.append(self)

    @property
    def current_joint_state(self) -> JointState:
        return JointState(self.q.copy())

    @property
    def current_cartesian_state(self) -> CartesianState:
        return CartesianState(RobotPose(Affine(self.ee.translation, self.ee.quaternion)))

    def move(self, motion, asynchronous: bool = False) -> None:
        if self.reflex:
            raise ControlException(
                f"libfranka: Move command aborted: motion aborted by reflex! [{self.reflex}]"
            )
        if motion.reference_type is not ReferenceType.Absolute:
            raise NotImplementedError("fake franky models absolute Cartesian motions only")
        self.moves.append((motion, asynchronous))
        self.ee = Affine(motion.target.translation, motion.target.quaternion)

    def stop(self) -> None:
        self.stopped += 1

    def recover_from_errors(self) -> bool:
        self.recovered += 1
        self.reflex = None
        return True


class Gripper:
    def __init__(self, fci_hostname: str):
        self.max_width = 0.08
        self.width = 0.08
        self.object_width: float | None = None  # set to make grasps stop on an object
        self.commands: list[tuple] = []
        self.stopped = 0
        GRIPPERS.append(self)

    def move_async(self, width: float, speed: float):
        self.commands.append(("move", width, speed))
        self.width = float(np.clip(width, 0.0, self.max_width))

    def grasp_async(
        self,
        width: float,
        speed: float,
        force: float,
        epsilon_inner: float = 0.005,
        epsilon_outer: float = 0.005,
    ):
        self.commands.append(("grasp", width, speed, force, epsilon_inner, epsilon_outer))
        self.width = max(width, self.object_width or 0.0)

    def stop(self) -> bool:
        self.stopped += 1
        return True
