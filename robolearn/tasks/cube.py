"""Shared parts of the single-cube tasks (``lift``, ``push``, ``pick_place``).

:class:`CubeTask` places one cube at a random position and yaw on the table and observes it;
:class:`CubeTargetTask` adds a goal position for the cube, shown as a marker and drawn at least
``min_target_distance`` from the cube so that no episode starts solved.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch

from robolearn.sim.scene import MarkerSpec, ObjectSpec, SceneConfig
from robolearn.tasks.base import Task, TaskConfig, closeness

CUBE = "cube"


@dataclass(frozen=True)
class CubeConfig(TaskConfig):
    cube_half_size: float = 0.02
    #: The cube's centre is drawn uniformly in this xy box (table top at z = 0).
    cube_xy_low: tuple[float, float] = (0.4, -0.15)
    cube_xy_high: tuple[float, float] = (0.6, 0.15)
    #: Yaw uniform in [-max, max]; pi/4 already covers every distinct pose of a cube.
    cube_max_yaw: float = 0.785


class CubeTask(Task):
    """One cube, placed at a random xy and yaw on the table; policy terms: its pose and offset."""

    cfg: CubeConfig

    def scene_config(self) -> SceneConfig:
        h = self.cfg.cube_half_size
        return SceneConfig(
            objects=(ObjectSpec(CUBE, half_size=(h, h, h), default_pos=(0.5, 0.0, h)),),
            markers=self.markers(),
            timestep=self.cfg.timestep,
        )

    def markers(self) -> tuple[MarkerSpec, ...]:
        """Visual markers of the scene; tasks with a goal show it."""
        return ()

    def sample_reset(self, env_ids: torch.Tensor, qpos: torch.Tensor) -> None:
        xy = self.uniform(len(env_ids), self.cfg.cube_xy_low, self.cfg.cube_xy_high)
        self.place_on_table(qpos, CUBE, env_ids, xy, self.cfg.cube_max_yaw)

    def task_terms(self) -> dict[str, torch.Tensor]:
        cube = self.cube_pos()
        return {
            "cube_pos": cube,
            "cube_quat": self.object_quat(CUBE),
            "cube_to_eef": cube - self.eef_pos(),
        }

    def cube_pos(self) -> torch.Tensor:
        return self.object_pos(CUBE)

    def cube_height(self) -> torch.Tensor:
        """(N,) height of the cube's centre above where it rests on the table."""
        return self.cube_pos()[:, 2] - self.object_half_size[CUBE][:, 2]

    def reach_and_grasp(self) -> torch.Tensor:
        """(N,) shaping in [0, 0.5]: TCP near the cube, plus 0.25 while it is grasped."""
        near = closeness((self.cube_pos() - self.eef_pos()).norm(dim=-1))
        return 0.25 * near + 0.25 * self.grasped(CUBE).float()


@dataclass(frozen=True)
class CubeTargetConfig(CubeConfig):
    min_target_distance: float = 0.1  # m between the cube's start and its target
    success_radius: float = 0.03  # m between the cube's centre and the target


class CubeTargetTask(CubeTask):
    """A cube and a goal position for its centre; policy terms add the goal and the offset to it."""

    cfg: CubeTargetConfig

    @abstractmethod
    def sample_target(self, env_ids: torch.Tensor) -> torch.Tensor:
        """(len(env_ids), 3) candidate target positions of the cube's centre."""

    @abstractmethod
    def target_distance(self) -> torch.Tensor:
        """(N,) distance of the cube from its target that ``success_radius`` bounds."""

    def markers(self) -> tuple[MarkerSpec, ...]:
        return (MarkerSpec("target", radius=self.cfg.cube_half_size),)

    def setup(self) -> None:
        self.target = torch.zeros(self.num_worlds, 3, device=self.device)

    def sample_reset(self, env_ids: torch.Tensor, qpos: torch.Tensor) -> None:
        super().sample_reset(env_ids, qpos)
        adr = self.obj_qpos[CUBE]
        cube = qpos[:, adr : adr + 3].float()
        target = self.redraw_where(
            self.sample_target(env_ids),
            lambda redraw: self.sample_target(env_ids[redraw]),
            lambda t: (t - cube).norm(dim=-1) < self.cfg.min_target_distance,
            f"target at least min_target_distance={self.cfg.min_target_distance} m from the cube",
        )
        self.target[env_ids] = target
        self.set_marker("target", env_ids, target)

    def task_terms(self) -> dict[str, torch.Tensor]:
        terms = super().task_terms()
        terms["target_pos"] = self.target.clone()
        terms["cube_to_target"] = terms["cube_pos"] - self.target
        return terms

    def success(self) -> torch.Tensor:
        return self.target_distance() < self.cfg.success_radius
