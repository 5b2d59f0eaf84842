"""Scripted experts: batched, closed-loop ``obs -> action`` controllers that produce demos.

They read only the ``policy`` observation group (what a learned policy sees) and emit actions in
the env's normalised ``ee_delta_pose`` space. Multi-phase experts keep a per-world phase; the
caller resets it with :meth:`ScriptedExpert.reset` for worlds that start a new episode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from robolearn.tasks.control import ControlConfig
from robolearn.utils.rotations import (
    axis_angle_to_mat,
    mat_to_axis_angle,
    quat_to_mat,
    wrap_angle,
    yaw_of_mat,
)

#: TCP orientation of the home posture: gripper pointing down, fingers closing along world y.
DOWN = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


class ScriptedExpert(ABC):
    #: Task settings this expert's demonstrations are collected under where they differ from the
    #: task's own (a caller's explicit task overrides still win). A stricter success criterion than
    #: the evaluated one makes demos finish with a margin that a cloned policy's error can use up.
    demo_task_overrides: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self,
        num_envs: int,
        device: torch.device | str,
        control: ControlConfig | None = None,
        seed: int = 0,
    ):
        self.num_envs, self.device = num_envs, torch.device(device)
        #: Host generator of experts that randomise (e.g. which way around an obstacle), so that
        #: a collection seed gives the same choices on any device.
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        self.control = control or ControlConfig()
        if self.control.action_mode != "ee_delta_pose":
            raise ValueError(
                f"scripted experts emit ee_delta_pose actions, the task uses {self.control.action_mode!r}"
            )
        self.phase = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.timer = torch.zeros(num_envs, dtype=torch.long, device=self.device)

    def reset(self, env_ids: torch.Tensor | None = None) -> None:
        ids = slice(None) if env_ids is None else env_ids
        self.phase[ids] = 0
        self.timer[ids] = 0

    @abstractmethod
    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Actions (N, 7) for the ``policy`` observation group ``obs``."""

    # --- phase machine -----------------------------------------------------------------------
    def by_phase(self, per_phase: list[torch.Tensor | float]) -> torch.Tensor:
        """Each world's entry of ``per_phase[phase]``; entries broadcast to a common (N, ...)."""
        options = torch.broadcast_tensors(
            *(torch.as_tensor(v, device=self.device) for v in per_phase)
        )
        return torch.stack(options)[self.phase, torch.arange(self.num_envs, device=self.device)]

    def advance(self, done: torch.Tensor, restart: torch.Tensor | None = None) -> None:
        """Move worlds whose phase is ``done`` (N,) bool to the next phase, and worlds flagged
        ``restart`` back to phase 0 (recovery, e.g. from a missed grasp). ``timer`` counts the
        control steps spent in the current phase, for phases that wait (gripper closing)."""
        phase = torch.where(done, self.phase + 1, self.phase)
        if restart is not None:
            phase = torch.where(restart, 0, phase)
        self.timer = torch.where(phase != self.phase, 0, self.timer + 1)
        self.phase = phase

    # --- building blocks ---------------------------------------------------------------------
    def translate(
        self,
        eef_pos: torch.Tensor,
        goal: torch.Tensor,
        gain: float = 1.0,
        max_speed: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        """Normalised translation towards ``goal``: proportional, saturated at ``max_speed``."""
        step = gain * (goal - eef_pos) / self.control.max_pos_delta
        norm = step.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        return step * torch.clamp(max_speed / norm, max=1.0)

    def rotate(
        self, eef_quat: torch.Tensor, goal_mat: torch.Tensor, gain: float = 1.0
    ) -> torch.Tensor:
        """Normalised rotation vector turning the TCP towards ``goal_mat`` (N, 3, 3)."""
        err = rotation_error(eef_quat, goal_mat)
        return (gain * err / self.control.max_rot_delta).clamp(-1.0, 1.0)

    def down_with_yaw(self, yaw: torch.Tensor) -> torch.Tensor:
        """Gripper pointing down, rotated by ``yaw`` about world z, (N, 3, 3)."""
        zero = torch.zeros_like(yaw)
        rz = axis_angle_to_mat(torch.stack([zero, zero, yaw], dim=-1))
        return rz @ DOWN.to(yaw)

    def action(
        self, translation: torch.Tensor, rotation: torch.Tensor, gripper: torch.Tensor
    ) -> torch.Tensor:
        return torch.cat([translation.clamp(-1, 1), rotation, gripper.reshape(-1, 1)], dim=-1)


def box_yaw(quat: torch.Tensor) -> torch.Tensor:
    """Yaw (N,) of a box's side faces, folded into [-pi/4, pi/4] by its four-fold symmetry, so that
    a gripper aligning its fingers with the box's faces turns the least. Read from whichever of the
    box's x and y axes lies flatter, so that it holds for a cube that has tumbled onto any face."""
    m = quat_to_mat(quat)
    x_flatter = m[..., 2, 0].abs() <= m[..., 2, 1].abs()
    yaw = torch.where(x_flatter, yaw_of_mat(m), torch.atan2(m[..., 1, 1], m[..., 0, 1]))
    return 0.25 * wrap_angle(4 * yaw)


def rotation_error(eef_quat: torch.Tensor, goal_mat: torch.Tensor) -> torch.Tensor:
    """World-frame rotation vector (N, 3) from the TCP's orientation to ``goal_mat``; its norm is
    the angle left to turn, which phases that must finish turning before moving on check."""
    return mat_to_axis_angle(goal_mat @ quat_to_mat(eef_quat).transpose(-1, -2))
