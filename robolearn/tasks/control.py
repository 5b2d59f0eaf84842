"""Action modes: map normalised actions in [-1, 1] to the arm's joint-position servos.

* ``ee_delta_pose`` (7): TCP translation (3) and rotation vector (3) in the world frame, scaled by
  ``max_pos_delta`` / ``max_rot_delta`` per control step, plus gripper. Batched damped-least-squares
  differential IK with a null-space pull towards the home posture, so that redundancy does not
  drift into joint limits over long episodes. ``max_rot_delta=0`` ignores the rotation dims: a
  position-only arm (Meta-World's xyz + gripper), whose orientation drifts only with the IK's
  linearisation (< 0.25 rad over 40 random full-scale steps).
* ``joint_delta`` (8): per-joint position change scaled by ``max_joint_delta``, plus gripper.

Gripper: -1 fully open, +1 fully closed (robosuite's convention). The Jacobian comes from the
joint axes and anchors the backend already computes, so the same code runs on both backends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robolearn.sim.batched import BatchedSim
from robolearn.sim.scene import (
    ARM_JOINTS,
    FINGER_JOINTS,
    HOME_QPOS,
    joint_dof_indices,
    joint_qpos_indices,
)

ACTION_MODES = ("ee_delta_pose", "joint_delta")
FINGER_OPEN = 0.04


@dataclass(frozen=True)
class ControlConfig:
    action_mode: str = "ee_delta_pose"
    max_pos_delta: float = 0.05  # m per control step
    max_rot_delta: float = 0.25  # rad per control step
    max_joint_delta: float = 0.1  # rad per control step
    max_target_lead: float = 0.2  # rad the servo target may run ahead of the measured joint
    ik_damping: float = 0.05
    nullspace_gain: float = 0.05


def action_dim(mode: str) -> int:
    if mode not in ACTION_MODES:
        raise ValueError(f"unknown action_mode {mode!r}; choose from {ACTION_MODES}")
    return 7 if mode == "ee_delta_pose" else 8


class ArmController:
    def __init__(self, sim: BatchedSim, cfg: ControlConfig):
        self.sim, self.cfg = sim, cfg
        self.dim = action_dim(cfg.action_mode)
        model, dev, dt = sim.model, sim.device, sim.dtype
        self.qpos_idx = torch.as_tensor(joint_qpos_indices(model, ARM_JOINTS), device=dev)
        self.finger_qpos_idx = torch.as_tensor(joint_qpos_indices(model, FINGER_JOINTS), device=dev)
        self.dof_idx = torch.as_tensor(joint_dof_indices(model, ARM_JOINTS), device=dev)
        self.jnt_ids = torch.as_tensor([model.joint(n).id for n in ARM_JOINTS], device=dev)
        self.arm_act = torch.as_tensor([model.actuator(n).id for n in ARM_JOINTS], device=dev)
        self.finger_act = torch.as_tensor([model.actuator(n).id for n in FINGER_JOINTS], device=dev)
        self.tcp = model.site("tcp").id
        limits = torch.as_tensor(model.jnt_range[self.jnt_ids.cpu().numpy()], device=dev, dtype=dt)
        margin = 0.02
        self.q_low, self.q_high = limits[:, 0] + margin, limits[:, 1] - margin
        self.q_home = torch.as_tensor(HOME_QPOS[:7], device=dev, dtype=dt)
        self.eye7 = torch.eye(7, device=dev, dtype=dt)
        self.eye6 = torch.eye(6, device=dev, dtype=dt)

    def jacobian(self) -> torch.Tensor:
        """(N, 6, 7) geometric Jacobian of the TCP: rows are linear then angular velocity."""
        axis = self.sim.xaxis[:, self.jnt_ids]  # (N, 7, 3)
        anchor = self.sim.xanchor[:, self.jnt_ids]
        p = self.sim.site_xpos[:, self.tcp].unsqueeze(1)
        jp = torch.linalg.cross(axis, p - anchor, dim=-1)
        return torch.cat([jp, axis], dim=-1).transpose(1, 2)

    def arm_qpos(self) -> torch.Tensor:
        return self.sim.qpos[:, self.qpos_idx]

    def ik_step(self, twist: torch.Tensor) -> torch.Tensor:
        """Joint displacement (N, 7) realising a TCP displacement ``twist`` (N, 6), DLS + null space."""
        jac = self.jacobian()
        jt = jac.transpose(1, 2)
        lam2 = self.cfg.ik_damping**2
        jjt = jac @ jt + lam2 * self.eye6
        pinv = jt @ torch.linalg.solve(jjt, self.eye6.expand_as(jjt))  # (N, 7, 6)
        dq = (pinv @ twist.unsqueeze(-1)).squeeze(-1)
        null = self.eye7 - pinv @ jac
        pull = self.cfg.nullspace_gain * (self.q_home - self.arm_qpos())
        return dq + (null @ pull.unsqueeze(-1)).squeeze(-1)

    def apply(self, action: torch.Tensor) -> None:
        """Write servo targets for a batch of normalised actions ``(N, dim)``."""
        a = action.to(self.sim.dtype)
        q = self.arm_qpos()
        if self.cfg.action_mode == "ee_delta_pose":
            twist = torch.cat(
                [a[:, :3] * self.cfg.max_pos_delta, a[:, 3:6] * self.cfg.max_rot_delta], dim=-1
            )
            dq = self.ik_step(twist)
        else:
            dq = a[:, :7] * self.cfg.max_joint_delta
        # Integrate the previous servo target rather than the measured posture, so that the arm
        # moves by the commanded amount per step despite servo lag; bounding the lead over the
        # measured posture stops wind-up when the arm is blocked (pushing on the table).
        ctrl = self.sim.ctrl
        lead = self.cfg.max_target_lead
        target = torch.clamp(ctrl[:, self.arm_act] + dq, q - lead, q + lead)
        ctrl[:, self.arm_act] = torch.clamp(target, self.q_low, self.q_high)
        finger = FINGER_OPEN * 0.5 * (1.0 - a[:, -1:].clamp(-1, 1))
        ctrl[:, self.finger_act] = finger.expand(-1, 2)
