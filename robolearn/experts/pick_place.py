"""Scripted ``pick_place`` expert: grasp the cube from above, lift it, carry it over the target
and lower it there (a target on the table is approached from above, never by dragging)."""

from __future__ import annotations

import torch

from robolearn.experts.base import ScriptedExpert, box_yaw, rotation_error
from robolearn.utils.rotations import quat_to_mat, yaw_of_mat

OPEN, CLOSED = -1.0, 1.0
# Phases, in order; each names where the TCP goes and what the gripper does.
ABOVE, DESCEND, CLOSE, LIFT, CARRY, PLACE = range(6)
GRIPPER = torch.tensor([OPEN, OPEN, CLOSED, CLOSED, CLOSED, CLOSED])
HOVER = 0.08  # m above the cube's centre while lining up
LIFT_Z = 0.08  # m, TCP height the cube is first lifted to, clear of the table
CLOSE_STEPS = 4  # control steps for the fingers to close on the cube
TURN_TOL = 0.1  # rad of misalignment allowed before descending onto the cube


class PickPlaceExpert(ScriptedExpert):
    """Per-world phase machine; a world whose fingers close on nothing, or lose the cube, starts
    over from ``ABOVE``. Subclasses change where the cube goes by overriding :meth:`cube_goal`."""

    def cube_goal(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, 3) where the cube's centre should end up."""
        return obs["target_pos"]

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        eef, cube = obs["eef_pos"], obs["cube_pos"]
        hover = torch.tensor([0.0, 0.0, HOVER], device=eef.device)
        lifted = torch.cat([eef[:, :2], torch.full_like(eef[:, 2:], LIFT_Z)], dim=-1)
        # Once held, the cube moves with the TCP: move the TCP by the cube's remaining offset,
        # first over the goal at no lower than the cube is now, then onto it.
        cube_goal = self.cube_goal(obs)
        over = torch.cat([cube_goal[:, :2], torch.maximum(cube_goal[:, 2:], cube[:, 2:])], dim=-1)
        goal = self.by_phase(
            [cube + hover, cube, cube, lifted, eef + over - cube, eef + cube_goal - cube]
        )

        # Fingers close across the cube's faces until it is held, then keep their yaw.
        eef_yaw = yaw_of_mat(quat_to_mat(obs["eef_quat"]))
        yaw = torch.where(self.phase <= CLOSE, box_yaw(obs["cube_quat"]), eef_yaw)
        orientation = self.down_with_yaw(yaw)

        err = goal - eef
        turn = rotation_error(obs["eef_quat"], orientation).norm(dim=-1)
        done = self.by_phase(
            [
                (err[:, :2].norm(dim=-1) < 0.01) & (turn < TURN_TOL),
                err.norm(dim=-1) < 0.008,
                self.timer >= CLOSE_STEPS,
                err[:, 2].abs() < 0.02,
                err[:, :2].norm(dim=-1) < 0.01,
                False,
            ]
        )
        lost = (obs["gripper_qpos"].sum(-1) < 0.01) | (obs["cube_to_eef"].norm(dim=-1) > 0.05)
        action = self.action(
            self.translate(eef, goal),
            self.rotate(obs["eef_quat"], orientation),
            GRIPPER.to(eef.device)[self.phase],
        )
        self.advance(done, restart=(self.phase >= LIFT) & lost)
        return action
