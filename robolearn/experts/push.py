"""Scripted ``push`` expert: closed fingers pushed flat against the cube face that looks towards the
target, steered so that the push line runs through the cube's centre.

The gripper's yaw lines its pads up with that face (the cube's yaw modulo 90°), so that the contact
is face-on-face; a push up to 45° off the face normal then carries the cube along by friction.
A world whose cube has drifted off the push line, or turned too far, lifts and lines up again.
"""

from __future__ import annotations

import math

import torch

from robolearn.experts.base import ScriptedExpert, box_yaw
from robolearn.utils.rotations import wrap_angle

CLOSED = 1.0
# Phases, in order.
ABOVE, DESCEND, PUSH = range(3)
#: Speed limit per phase (fraction of the action range): a fast descent overshoots onto the table.
SPEED = torch.tensor([1.0, 0.4, 0.5])
PAD_HALF_WIDTH = 0.011  # m, half the pads' extent along the TCP's x axis, the pushing direction
STANDOFF = 0.05  # m between pads and cube while lining up: room for a cloned policy's xy error
# as it descends, which otherwise lands the fingers on the cube's edge and tips it
HOVER = 0.05  # m above the cube's top while lining up
#: TCP height above the cube's centre while pushing: the fingers' upper links (1.9 cm above the
#: TCP) then clear the cube's top, and the pads' lower edge (1.2 cm below it) stays under the
#: cube's centre of mass, so that the cube slides rather than tips.
PUSH_RISE = 0.004
LEAD = 0.02  # m the TCP is driven past the contact point each step while pushing
MAX_LATERAL = 0.012  # m the TCP may stray from the push line before lining up again
MAX_TURN = math.radians(50)  # push direction's deviation from the pushed face's normal


class PushExpert(ScriptedExpert):
    #: Demos push the cube to within 1 cm of the target, not just inside the task's 3 cm: a policy
    #: cloned from demos that stop at the 3 cm edge parks the cube just outside it (56-80% success
    #: vs 86-89% over 400 episodes with these; docs/benchmarks.md, issue 3).
    demo_task_overrides = {"success_radius": 0.01}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: World-frame yaw of the face normal being pushed, chosen while lining up.
        self.face_yaw = torch.zeros(self.num_envs, device=self.device)

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        eef, cube, target = obs["eef_pos"], obs["cube_pos"], obs["target_pos"]
        to_target = (target - cube)[:, :2]
        distance = to_target.norm(dim=-1, keepdim=True)
        push_dir = to_target / distance.clamp_min(1e-6)
        push_yaw = torch.atan2(push_dir[:, 1], push_dir[:, 0])

        # The cube's face normals lie at its yaw plus multiples of 90°; push the one nearest the
        # target direction, and keep it once the pads are in contact.
        cube_yaw = box_yaw(obs["cube_quat"])
        nearest = cube_yaw + (math.pi / 2) * torch.round((push_yaw - cube_yaw) / (math.pi / 2))
        self.face_yaw = torch.where(self.phase == ABOVE, nearest, self.face_yaw)
        turn = wrap_angle(push_yaw - self.face_yaw)

        # Where the TCP touches the face on the line through the cube's centre along push_dir.
        half = cube[:, 2:3]  # a resting cube's centre height is its half size
        reach = (half + PAD_HALF_WIDTH) / torch.cos(turn).clamp_min(0.5)[:, None]
        contact = cube[:, :2] - push_dir * reach
        low = half + PUSH_RISE
        goal = self.by_phase(
            [
                _xyz(contact - push_dir * STANDOFF, 2 * half + HOVER),
                _xyz(contact - push_dir * STANDOFF, low),
                _xyz(contact + push_dir * distance.clamp(max=LEAD), low),
            ]
        )

        err = goal - eef
        offset = (eef - cube)[:, :2]
        lateral = (offset[:, 0] * push_dir[:, 1] - offset[:, 1] * push_dir[:, 0]).abs()
        done = self.by_phase([err[:, :2].norm(dim=-1) < 0.01, err[:, 2].abs() < 0.005, False])
        lost = (lateral > MAX_LATERAL) | (turn.abs() > MAX_TURN)
        # Near the target the direction is noise; let the pads rest there instead of re-planning.
        restart = (self.phase == PUSH) & lost & (distance[:, 0] > 0.01)
        action = self.action(
            self.translate(eef, goal, gain=0.7, max_speed=SPEED.to(eef.device)[self.phase, None]),
            # The pads are symmetric under a half turn: use the equivalent yaw nearest zero.
            self.rotate(obs["eef_quat"], self.down_with_yaw(0.5 * wrap_angle(2 * self.face_yaw))),
            torch.full_like(distance[:, 0], CLOSED),
        )
        self.advance(done, restart=restart)
        return action


def _xyz(xy: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return torch.cat([xy, z], dim=-1)
