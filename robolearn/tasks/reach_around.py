"""``reach_around``: reach a target directly behind a tall thin post; the straight line is blocked.

A small task with two equally good solutions, for testing that a policy can represent a
multimodal action distribution: the TCP starts in front of a post standing on the table and
must go around it, left or right, to a target just behind it. The post is a fixed obstacle
(:class:`~robolearn.sim.scene.ObstacleSpec`) that the hand collides with, and tall enough that
the hand cannot pass over it at the working height; the arm's upper links clear its top.

The policy observations hold nothing that tells the two ways apart at the start: the TCP
starts on the post's centre line (up to the arm's reset noise) and the target lies behind it,
so the scripted expert (``robolearn/experts/reach_around.py``) picks a side at random. An
average of its two ways drives straight into the post.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robolearn.sim.scene import MarkerSpec, ObstacleSpec, SceneConfig
from robolearn.tasks.base import TaskConfig
from robolearn.tasks.reach import Reach


@dataclass(frozen=True)
class ReachAroundConfig(TaskConfig):
    episode_length: int = 40
    #: Post half sizes (m); it stands on the table, so its centre is at its half height.
    obstacle_half_size: tuple[float, float, float] = (0.015, 0.015, 0.16)
    #: Range of the post's centre (x, y); the TCP starts at about (0.54, 0, 0.23). Fixed by
    #: default: with a min-max normaliser any jitter spans the whole input range, and a
    #: network can then memorise which way each demo went from it instead of facing the two
    #: ways at one start state (so the only variation by default is the arm's reset noise).
    obstacle_xy_low: tuple[float, float] = (0.615, 0.0)
    obstacle_xy_high: tuple[float, float] = (0.615, 0.0)
    #: Target = post centre + offset in x, y; absolute height z.
    target_offset_low: tuple[float, float, float] = (0.075, 0.0, 0.23)
    target_offset_high: tuple[float, float, float] = (0.075, 0.0, 0.23)
    success_radius: float = 0.03

    def validate(self) -> None:
        super().validate()
        if min(self.obstacle_half_size) <= 0:
            raise ValueError(f"obstacle_half_size must be positive, got {self.obstacle_half_size}")
        for lo, hi in (
            (self.obstacle_xy_low, self.obstacle_xy_high),
            (self.target_offset_low, self.target_offset_high),
        ):
            if any(a > b for a, b in zip(lo, hi, strict=True)):
                raise ValueError(f"empty range: low {lo} > high {hi}")


class ReachAround(Reach):
    """Reach's target, distance, reward and success, with a post in the way."""

    name = "reach_around"
    Config = ReachAroundConfig
    cfg: ReachAroundConfig

    def scene_config(self) -> SceneConfig:
        half = self.cfg.obstacle_half_size
        return SceneConfig(
            markers=(MarkerSpec("target"),),
            obstacles=(ObstacleSpec("obstacle", half_size=half, default_pos=(0.6, 0.0, half[2])),),
            timestep=self.cfg.timestep,
        )

    def setup(self) -> None:
        super().setup()
        self.obstacle = torch.zeros(self.num_worlds, 3, device=self.device)
        self.obstacle_mocap = int(self.sim.model.body("obstacle").mocapid[0])

    def sample_reset(self, env_ids: torch.Tensor, qpos: torch.Tensor) -> None:
        n = len(env_ids)
        xy = self.uniform(n, self.cfg.obstacle_xy_low, self.cfg.obstacle_xy_high)
        height = torch.full((n, 1), self.cfg.obstacle_half_size[2], device=self.device)
        self.obstacle[env_ids] = torch.cat([xy, height], dim=-1)
        offset = self.uniform(n, self.cfg.target_offset_low, self.cfg.target_offset_high)
        self.target[env_ids] = torch.cat([xy + offset[:, :2], offset[:, 2:]], dim=-1)
        self.sim.mocap_pos[env_ids, self.obstacle_mocap] = self.obstacle[env_ids].to(self.sim.dtype)
        self.set_marker("target", env_ids, self.target[env_ids])

    def task_terms(self) -> dict[str, torch.Tensor]:
        return {"target_pos": self.target.clone(), "obstacle_pos": self.obstacle.clone()}
