"""``push``: slide the cube across the table to a target spot.

Success needs the cube on the table within ``success_radius`` of the target in xy; a cube carried
there in the air does not count, so that pushing, not lifting, is what the task rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robolearn.tasks.base import closeness
from robolearn.tasks.cube import CUBE, CubeTargetConfig, CubeTargetTask

#: Height (m) above its resting height below which the cube counts as on the table.
ON_TABLE_TOL = 0.01


@dataclass(frozen=True)
class PushConfig(CubeTargetConfig):
    episode_length: int = 100
    target_xy_low: tuple[float, float] = (0.35, -0.2)
    target_xy_high: tuple[float, float] = (0.65, 0.2)


class Push(CubeTargetTask):
    name = "push"
    Config = PushConfig
    cfg: PushConfig

    def sample_target(self, env_ids: torch.Tensor) -> torch.Tensor:
        xy = self.uniform(len(env_ids), self.cfg.target_xy_low, self.cfg.target_xy_high)
        return torch.cat([xy, self.object_half_size[CUBE][env_ids, 2:3]], dim=-1)

    def target_distance(self) -> torch.Tensor:
        return (self.cube_pos() - self.target)[:, :2].norm(dim=-1)

    def success(self) -> torch.Tensor:
        return super().success() & (self.cube_height() < ON_TABLE_TOL)

    def dense_reward(self, success: torch.Tensor) -> torch.Tensor:
        """TCP near the cube (0.25) and the cube near the target (0.75): at most 1."""
        near = closeness((self.cube_pos() - self.eef_pos()).norm(dim=-1))
        return 0.25 * near + 0.75 * closeness(self.target_distance(), scale=5.0)
