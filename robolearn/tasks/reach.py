"""``reach``: move the TCP to a random target point above the table."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robolearn.sim.scene import MarkerSpec, SceneConfig
from robolearn.tasks.base import Task, TaskConfig, closeness


@dataclass(frozen=True)
class ReachConfig(TaskConfig):
    episode_length: int = 60
    target_low: tuple[float, float, float] = (0.35, -0.25, 0.05)
    target_high: tuple[float, float, float] = (0.65, 0.25, 0.35)
    success_radius: float = 0.02


class Reach(Task):
    name = "reach"
    Config = ReachConfig

    def scene_config(self) -> SceneConfig:
        return SceneConfig(markers=(MarkerSpec("target"),), timestep=self.cfg.timestep)

    def setup(self) -> None:
        self.target = torch.zeros(self.num_worlds, 3, device=self.device)

    def sample_reset(self, env_ids: torch.Tensor, qpos: torch.Tensor) -> None:
        self.target[env_ids] = self.uniform(len(env_ids), self.cfg.target_low, self.cfg.target_high)
        self.set_marker("target", env_ids, self.target[env_ids])

    def task_terms(self) -> dict[str, torch.Tensor]:
        return {"target_pos": self.target.clone(), "target_to_eef": self.target - self.eef_pos()}

    def distance(self) -> torch.Tensor:
        return (self.target - self.eef_pos()).norm(dim=-1)

    def dense_reward(self, success: torch.Tensor) -> torch.Tensor:
        return closeness(self.distance())

    def success(self) -> torch.Tensor:
        return self.distance() < self.cfg.success_radius
