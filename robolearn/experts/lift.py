"""Scripted ``lift`` expert: the ``pick_place`` expert with a goal straight above the cube."""

from __future__ import annotations

import torch

from robolearn.experts.pick_place import PickPlaceExpert

#: Height (m) the expert lifts the cube's centre to. The expert cannot see the task's
#: ``lift_height``; this clears it for a 2 cm cube up to ``lift_height`` = 0.12.
LIFT_GOAL_Z = 0.15


class LiftExpert(PickPlaceExpert):
    def cube_goal(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        cube = obs["cube_pos"]
        return torch.cat([cube[:, :2], torch.full_like(cube[:, 2:], LIFT_GOAL_Z)], dim=-1)
