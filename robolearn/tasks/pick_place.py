"""``pick_place``: bring the cube to a target position, in the air or on the table elsewhere.

With probability ``air_target_prob`` the target floats ``target_height`` above the table, as in
Fetch's PickAndPlace; otherwise it lies on the table, where a push could also reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robolearn.tasks.base import closeness
from robolearn.tasks.cube import CUBE, CubeTargetConfig, CubeTargetTask


@dataclass(frozen=True)
class PickPlaceConfig(CubeTargetConfig):
    episode_length: int = 120
    target_xy_low: tuple[float, float] = (0.35, -0.2)
    target_xy_high: tuple[float, float] = (0.65, 0.2)
    air_target_prob: float = 0.5
    #: Range of an air target's height above the cube's resting height, m.
    target_height: tuple[float, float] = (0.05, 0.2)


class PickPlace(CubeTargetTask):
    name = "pick_place"
    Config = PickPlaceConfig
    cfg: PickPlaceConfig

    def sample_target(self, env_ids: torch.Tensor) -> torch.Tensor:
        n = len(env_ids)
        xy = self.uniform(n, self.cfg.target_xy_low, self.cfg.target_xy_high)
        lift = self.uniform(n, self.cfg.target_height[:1], self.cfg.target_height[1:])
        in_air = self.uniform(n, [0.0], [1.0]) < self.cfg.air_target_prob
        z = self.object_half_size[CUBE][env_ids, 2:3] + torch.where(in_air, lift, 0.0)
        return torch.cat([xy, z], dim=-1)

    def target_distance(self) -> torch.Tensor:
        return (self.cube_pos() - self.target).norm(dim=-1)

    def dense_reward(self, success: torch.Tensor) -> torch.Tensor:
        """Reach and grasp (0.5) plus the cube near the target (0.5): 1 when held at the target."""
        return self.reach_and_grasp() + 0.5 * closeness(self.target_distance(), scale=5.0)
