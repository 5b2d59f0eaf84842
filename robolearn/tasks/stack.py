"""``stack``: pick cube A and place it on cube B.

Success means A *rests* on B on its own: A's bottom face lies on B's top face (within
``height_tol``), A's centre is over B's top face, A is (nearly) still, and the gripper no longer
holds A. Requiring the release makes success a stable end state rather than a moment of the carry,
as in robosuite's Stack, so that a sparse-reward learner is not paid for hovering A above B; the
speed bound keeps a cube that is dropped through that band from counting.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robolearn.sim.scene import ObjectSpec, SceneConfig
from robolearn.tasks.base import Task, TaskConfig, closeness


@dataclass(frozen=True)
class StackConfig(TaskConfig):
    episode_length: int = 80
    cube_a_half_size: float = 0.02
    cube_b_half_size: float = 0.025
    #: Both cubes are placed uniformly in this xy box, at least ``min_separation`` apart.
    xy_low: tuple[float, float] = (0.4, -0.15)
    xy_high: tuple[float, float] = (0.6, 0.15)
    min_separation: float = 0.1
    max_yaw: float = 0.785  # rad, uniform in [-max_yaw, max_yaw] per cube
    height_tol: float = 0.01  # m, gap allowed between A's bottom and B's top
    max_speed: float = 0.05  # m/s, A's speed below which it counts as resting


class Stack(Task):
    name = "stack"
    Config = StackConfig
    cfg: StackConfig

    def scene_config(self) -> SceneConfig:
        a, b = self.cfg.cube_a_half_size, self.cfg.cube_b_half_size
        return SceneConfig(
            objects=(
                ObjectSpec("cube_a", half_size=(a, a, a), default_pos=(0.5, -0.1, a)),
                ObjectSpec(
                    "cube_b",
                    half_size=(b, b, b),
                    rgba=(0.2, 0.75, 0.25, 1.0),
                    default_pos=(0.5, 0.1, b),
                ),
            ),
            timestep=self.cfg.timestep,
        )

    def sample_reset(self, env_ids: torch.Tensor, qpos: torch.Tensor) -> None:
        n = len(env_ids)
        low, high = self.cfg.xy_low, self.cfg.xy_high
        xy_a = self.uniform(n, low, high)
        xy_b = self.redraw_where(  # where the cubes would overlap or touch
            self.uniform(n, low, high),
            lambda redraw: self.uniform(int(redraw.sum()), low, high),
            lambda b: (xy_a - b).norm(dim=-1) < self.cfg.min_separation,
            f"cube_b at least min_separation={self.cfg.min_separation} m from cube_a",
        )
        for name, xy in (("cube_a", xy_a), ("cube_b", xy_b)):
            self.place_on_table(qpos, name, env_ids, xy, self.cfg.max_yaw)

    def task_terms(self) -> dict[str, torch.Tensor]:
        a, b, eef = self.object_pos("cube_a"), self.object_pos("cube_b"), self.eef_pos()
        return {
            "cube_a_pos": a,
            "cube_a_quat": self.object_quat("cube_a"),
            "cube_b_pos": b,
            "cube_b_quat": self.object_quat("cube_b"),
            "cube_a_to_eef": a - eef,
            "cube_a_to_cube_b": a - b,
        }

    def _a_over_b(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(xy distance of A's centre from B's, gap between A's bottom and B's top), (N,) each."""
        offset = self.object_pos("cube_a") - self.object_pos("cube_b")
        gap = (
            offset[:, 2]
            - self.object_half_size["cube_a"][:, 2]
            - self.object_half_size["cube_b"][:, 2]
        )
        return offset[:, :2].norm(dim=-1), gap

    def on_b(self) -> torch.Tensor:
        """A's bottom is on B's top face and A's centre is over it, (N,) bool."""
        xy_dist, gap = self._a_over_b()
        over = xy_dist < self.object_half_size["cube_b"][:, 0]
        return over & (gap.abs() < self.cfg.height_tol)

    def success(self) -> torch.Tensor:
        dof = self.obj_dof["cube_a"]
        still = self.sim.qvel[:, dof : dof + 3].float().norm(dim=-1) < self.cfg.max_speed
        return self.on_b() & still & ~self.grasped("cube_a")

    def dense_reward(self, success: torch.Tensor) -> torch.Tensor:
        """Staged like robosuite's Stack: max of reach+grasp, lift+align, and the stacked bonus.

        Each stage is worth more than the one before, so the maximum only grows as the task
        progresses and no stage pays for undoing an earlier one.
        """
        a = self.object_pos("cube_a")
        grasped = self.grasped("cube_a").float()
        reach = 0.25 * closeness((a - self.eef_pos()).norm(dim=-1))
        xy_dist, gap = self._a_over_b()
        lifted = grasped * (gap > 0).float()
        align = lifted * (1.0 + 0.5 * closeness(xy_dist))
        stacked = 2.0 * success.float()
        return torch.stack([reach + 0.25 * grasped, align, stacked], dim=-1).max(dim=-1).values
