"""Scripted ``reach_around`` expert: around the post on a side drawn at random per episode.

At an episode's first step each world draws left or right (50/50) from the expert's own
generator, then moves through two waypoints beside the post, one level with its front and
one level with its back, and on to the target. The draw depends on nothing the policy
observes, so the demos of one start state split evenly between two ways: a bimodal
action distribution.
"""

from __future__ import annotations

import torch

from robolearn.experts.base import ScriptedExpert

# Phases, in order.
BESIDE_FRONT, BESIDE_BACK, TARGET = range(3)
#: Lateral distance (m) of the waypoints from the post's centre line: the hand is 19 cm wide
#: across the direction of travel, so it clears a 3 cm post with about 5 cm to spare.
SIDE_OFFSET = 0.17
#: Distance (m) of the waypoints in front of and behind the post's centre.
WAYPOINT_AHEAD = 0.06
WAYPOINT_RADIUS = 0.03  # m; closer than this, head for the next waypoint
SPEED = 0.6  # fraction of the action range


class ReachAroundExpert(ScriptedExpert):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: +1 left (positive y), -1 right; drawn at each episode's first step.
        self.side = torch.ones(self.num_envs, device=self.device)
        self.undecided = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)

    def reset(self, env_ids: torch.Tensor | None = None) -> None:
        super().reset(env_ids)
        self.undecided[slice(None) if env_ids is None else env_ids] = True

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        eef, target, post = obs["eef_pos"], obs["target_pos"], obs["obstacle_pos"]
        n = len(eef)
        draw = (torch.rand(n, generator=self.generator) < 0.5).to(self.device)
        self.side = torch.where(self.undecided, torch.where(draw, 1.0, -1.0), self.side)
        self.undecided[:] = False

        beside = post[:, 1] + self.side * SIDE_OFFSET
        front = torch.stack([post[:, 0] - WAYPOINT_AHEAD, beside, target[:, 2]], dim=-1)
        back = torch.stack([post[:, 0] + WAYPOINT_AHEAD, beside, target[:, 2]], dim=-1)
        goal = self.by_phase([front, back, target])
        reached = (goal - eef).norm(dim=-1) < WAYPOINT_RADIUS
        self.advance(reached & (self.phase < TARGET))
        goal = self.by_phase([front, back, target])

        yaw = torch.zeros(n, device=eef.device)
        return self.action(
            self.translate(eef, goal, gain=0.8, max_speed=SPEED),
            self.rotate(obs["eef_quat"], self.down_with_yaw(yaw)),
            -torch.ones(n, device=eef.device),
        )
