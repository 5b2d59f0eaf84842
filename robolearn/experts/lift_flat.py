"""Scripted ``lift_flat`` expert: push the box over the table's edge, then grasp the overhang.

The box is too wide for a top-down grasp, so the expert first slides it, fingers closed and
pointing down, until its centre of mass is just inside the edge and a strip overhangs. Then it
turns the gripper to point along +y with the fingers closing vertically, slides the open fingers
around the overhang's 2 cm thickness from outside the table, closes and lifts. Positions are
relative to the observed table edge, so the script follows a re-configured table.
"""

from __future__ import annotations

import torch

from robolearn.experts.base import DOWN, ScriptedExpert, rotation_error

OPEN, CLOSED = -1.0, 1.0
ABOVE_PUSH, DOWN_TO_PUSH, PUSH, RAISE, BESIDE_HIGH, BESIDE_LOW, INSERT, CLOSE, LIFT = range(9)
GRIPPER = torch.tensor([CLOSED, CLOSED, CLOSED, CLOSED, OPEN, OPEN, OPEN, CLOSED, CLOSED])
#: Speed limits per phase (fractions of the action's range): the push is slow so that the box
#: stops where the fingers stop instead of sliding on over the edge.
SPEED = torch.tensor([1.0, 1.0, 0.3, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
#: Gripper pointing along +y (towards the table from beyond its edge), fingers closing along z.
SIDE = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
PUSH_START = 0.11  # m from the box centre to the pushing fingers: beyond faces up to 19 cm apart
PUSH_Z = 0.015  # m, TCP height while pushing: fingertips just above the table
COM_INSIDE = 0.03  # m, the box's centre stops this far inside the edge: it overhangs but stays
GRASP_DEPTH = 0.02  # m, TCP this far outside the edge: fingertips stop short of the table
APPROACH = 0.12  # m outside the edge where the open gripper lines up with the box
HIGH = 0.1  # m, travel height between pushing and grasping
CLOSE_STEPS = 5


class LiftFlatExpert(ScriptedExpert):
    """Per-world phase machine; fingers that close on nothing send a world back to the push."""

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        eef, box = obs["eef_pos"], obs["box_pos"]
        edge = obs["table_edge_y"][:, 0]
        x, y, z = box.unbind(-1)

        push_goal = eef[:, 1] - (y - (edge + COM_INSIDE))
        goal = self.by_phase(
            [
                at(x, y + PUSH_START, 3 * PUSH_Z),
                at(x, y + PUSH_START, PUSH_Z),
                at(x, push_goal, PUSH_Z),
                at(x, y + PUSH_START, HIGH),
                at(x, edge - APPROACH, HIGH),
                at(x, edge - APPROACH, z),
                at(x, edge - GRASP_DEPTH, z),
                at(x, edge - GRASP_DEPTH, z),
                at(x, edge - GRASP_DEPTH, 2 * HIGH),
            ]
        )
        down, side = DOWN.to(eef).expand(len(eef), 3, 3), SIDE.to(eef).expand(len(eef), 3, 3)
        rot_goal = self.by_phase([down, down, down, down, side, side, side, side, side])
        err = (goal - eef).norm(dim=-1)
        turned = rotation_error(obs["eef_quat"], rot_goal).norm(dim=-1) < 0.05
        never = torch.zeros_like(err, dtype=torch.bool)
        done = self.by_phase(
            [
                err < 0.015,
                err < 0.008,
                y <= edge + COM_INSIDE + 0.005,
                err < 0.02,
                (err < 0.02) & turned,
                err < 0.008,
                err < 0.005,
                self.timer >= CLOSE_STEPS,
                never,
            ]
        )
        missed = (self.phase == LIFT) & (obs["gripper_qpos"].sum(-1) < 0.005)
        action = self.action(
            self.translate(eef, goal, gain=0.8, max_speed=SPEED.to(eef.device)[self.phase, None]),
            self.rotate(obs["eef_quat"], rot_goal),
            GRIPPER.to(eef.device)[self.phase],
        )
        self.advance(done, restart=missed)
        return action


def at(x: torch.Tensor, y: torch.Tensor | float, z: torch.Tensor | float) -> torch.Tensor:
    """(N, 3) points from per-world coordinates (N,) or constants."""
    y, z = (torch.as_tensor(c, dtype=x.dtype, device=x.device) for c in (y, z))
    return torch.stack(torch.broadcast_tensors(x, y, z), dim=-1)
