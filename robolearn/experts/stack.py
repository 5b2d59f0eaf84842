"""Scripted ``stack`` expert: grasp cube A from above, carry it over cube B, set it down, let go."""

from __future__ import annotations

import torch

from robolearn.experts.base import ScriptedExpert, box_yaw

OPEN, CLOSED = -1.0, 1.0
# Phases, in order; each names where the TCP goes and what the gripper does.
ABOVE_A, DOWN_TO_A, CLOSE, LIFT, OVER_B, LOWER, RELEASE, RETREAT = range(8)
GRIPPER = torch.tensor([OPEN, OPEN, CLOSED, CLOSED, CLOSED, CLOSED, OPEN, OPEN])
#: Speed limits per phase (fractions of the action's range): a held cube pivots between the pads
#: when the arm starts or stops at full speed.
SPEED = torch.tensor([1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 1.0, 1.0])
HOVER = 0.08  # m above a cube's centre while lining up
CLEARANCE = 0.03  # m between A's bottom and B's top while carrying
CLOSE_STEPS = 4  # control steps for the fingers to close (or open) on a 4 cm cube


class StackExpert(ScriptedExpert):
    """Per-world phase machine; a world whose fingers close on nothing, or lose A, restarts from
    ``ABOVE_A``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.a_half = torch.zeros(self.num_envs, 1, device=self.device)
        self.yaw = torch.zeros(self.num_envs, device=self.device)

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        eef, a, b = obs["eef_pos"], obs["cube_a_pos"], obs["cube_b_pos"]
        up = torch.tensor([0.0, 0.0, 1.0], device=eef.device)
        # A's half size (its centre height while it rests on the table) and the gripper yaw that
        # fits A's faces are taken before the grasp and held while A is carried; B's top is twice
        # its centre height.
        approaching = self.phase <= DOWN_TO_A
        self.a_half = torch.where(approaching[:, None], a[:, 2:3], self.a_half)
        self.yaw = torch.where(approaching, box_yaw(obs["cube_a_quat"]), self.yaw)
        a_half, b_top = self.a_half, 2 * b[:, 2:3]
        # Where A must go, expressed as a TCP goal: move the TCP by A's displacement.
        grip_offset = eef - a
        carry = torch.cat([b[:, :2], b_top + a_half + CLEARANCE], dim=-1) + grip_offset
        place = torch.cat([b[:, :2], b_top + a_half], dim=-1) + grip_offset
        goal = self.by_phase(
            [
                a + HOVER * up,
                a,
                a,
                torch.cat([eef[:, :2], carry[:, 2:]], dim=-1),
                carry,
                place,
                eef,
                eef + HOVER * up,
            ]
        )
        err = (goal - eef).norm(dim=-1)
        xy_err = (goal - eef)[:, :2].norm(dim=-1)
        done = self.by_phase(
            [
                xy_err < 0.01,
                err < 0.008,
                self.timer >= CLOSE_STEPS,
                err < 0.02,
                xy_err < 0.008,
                err < 0.005,
                self.timer >= CLOSE_STEPS,
                torch.zeros_like(err, dtype=torch.bool),
            ]
        )
        holding = (self.phase >= LIFT) & (self.phase <= LOWER)
        lost = (obs["gripper_qpos"].sum(-1) < 0.01) | (obs["cube_a_to_eef"].norm(dim=-1) > 0.05)
        action = self.action(
            self.translate(eef, goal, gain=0.8, max_speed=SPEED.to(eef.device)[self.phase, None]),
            self.rotate(obs["eef_quat"], self.down_with_yaw(self.yaw)),
            GRIPPER.to(eef.device)[self.phase],
        )
        self.advance(done, restart=holding & lost)
        return action
