"""``lift``: grasp the cube and hold it above ``lift_height``.

Success needs the cube grasped as well as high, so that a cube flicked into the air does not count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robolearn.tasks.cube import CUBE, CubeConfig, CubeTask


@dataclass(frozen=True)
class LiftConfig(CubeConfig):
    episode_length: int = 50
    lift_height: float = 0.05  # m the cube must rise above where it rested


class Lift(CubeTask):
    name = "lift"
    Config = LiftConfig
    cfg: LiftConfig

    def success(self) -> torch.Tensor:
        return (self.cube_height() > self.cfg.lift_height) & self.grasped(CUBE)

    def dense_reward(self, success: torch.Tensor) -> torch.Tensor:
        """Reach and grasp (0.5), then height while grasped (0.5): 1 at success."""
        progress = (self.cube_height() / self.cfg.lift_height).clamp(0.0, 1.0)
        return self.reach_and_grasp() + 0.5 * self.grasped(CUBE).float() * progress
