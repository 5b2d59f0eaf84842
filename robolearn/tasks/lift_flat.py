"""``lift_flat``: lift a wide, flat box that cannot be grasped where it lies.

The box (16 x 16 x 2 cm by default) is wider than the gripper's 8 cm opening in every horizontal
direction, so a top-down grasp closes on nothing. It starts near the table's right-hand edge (the
table is shifted towards +y to put that edge within reach): the robot must first slide the box
until it overhangs the edge, then grasp the overhang across its 2 cm thickness, fingers closing
vertically, and lift. A side edge rather than the edge facing the robot, because the Panda cannot
point its gripper horizontally at table height that close to its own base without flipping its
wrist to a joint limit.

This is the long-horizon task of the privileged-action curriculum (METHODS.md §5), so its dense
reward stays parsimonious: reach + lift + success, nothing that shapes the push. Reach is measured
to the box's nearest surface point, not its centre: the box is twice as wide as the gripper's
opening, so every place where it can be pushed or pinched lies 8 cm or more from its centre, and a
reach to the centre (0.34 there against 1 above the centre) pays the policy to hover over the
middle of the box, away from the skill (docs/benchmarks.md). ``reach_to="center"`` restores the
earlier term. ``lift_paid="pinched"`` pays the lift term only while the box is pinched, so that
neither a box floated by a privileged force nor one tipped against the gripper earns it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robolearn.sim.scene import ObjectSpec, SceneConfig
from robolearn.tasks.base import Task, TaskConfig, closeness

#: Dense-reward weights of the reach, lift and success stages.
REACH_WEIGHT, LIFT_WEIGHT, SUCCESS_WEIGHT = 1.0, 2.0, 5.0


@dataclass(frozen=True)
class LiftFlatConfig(TaskConfig):
    episode_length: int = 100
    box_half_size: tuple[float, float, float] = (0.08, 0.08, 0.01)
    box_mass: float = 0.15
    #: The table's right-hand edge is at ``y = center - half extent`` (default -0.15 m).
    table_center_xy: tuple[float, float] = (0.45, 0.2)
    table_half_extent_xy: tuple[float, float] = (0.35, 0.35)
    #: Box centre placed uniformly in this xy box (default: 13-19 cm from the edge).
    xy_low: tuple[float, float] = (0.42, -0.02)
    xy_high: tuple[float, float] = (0.52, 0.04)
    max_yaw: float = 0.2  # rad, uniform in [-max_yaw, max_yaw]
    lift_height: float = 0.1  # m, box centre above the table top, held, for success
    reach_to: str = "surface"  # the dense reach term's target: the box's "surface" or "center"
    #: When the dense lift term pays: "always" (the box's rise alone) or only while "pinched".
    lift_paid: str = "always"

    def validate(self) -> None:
        super().validate()
        if self.reach_to not in ("surface", "center"):
            raise ValueError(
                f"lift_flat.reach_to must be 'surface' or 'center', got {self.reach_to!r}"
            )
        if self.lift_paid not in ("always", "pinched"):
            raise ValueError(
                f"lift_flat.lift_paid must be 'always' or 'pinched', got {self.lift_paid!r}"
            )

    @property
    def table_edge_y(self) -> float:
        return self.table_center_xy[1] - self.table_half_extent_xy[1]


class LiftFlat(Task):
    name = "lift_flat"
    Config = LiftFlatConfig
    cfg: LiftFlatConfig

    def scene_config(self) -> SceneConfig:
        return SceneConfig(
            objects=(
                ObjectSpec(
                    "box",
                    half_size=self.cfg.box_half_size,
                    mass=self.cfg.box_mass,
                    rgba=(0.25, 0.4, 0.85, 1.0),
                    default_pos=(0.6, 0.0, self.cfg.box_half_size[2]),
                ),
            ),
            table_center_xy=self.cfg.table_center_xy,
            table_half_extent_xy=self.cfg.table_half_extent_xy,
            timestep=self.cfg.timestep,
        )

    def setup(self) -> None:
        self.table_edge = torch.full(
            (self.num_worlds, 1), self.cfg.table_edge_y, device=self.device
        )

    def sample_reset(self, env_ids: torch.Tensor, qpos: torch.Tensor) -> None:
        xy = self.uniform(len(env_ids), self.cfg.xy_low, self.cfg.xy_high)
        self.place_on_table(qpos, "box", env_ids, xy, self.cfg.max_yaw)

    def task_terms(self) -> dict[str, torch.Tensor]:
        box = self.object_pos("box")
        return {
            "box_pos": box,
            "box_quat": self.object_quat("box"),
            "box_to_eef": box - self.eef_pos(),
            "table_edge_y": self.table_edge.clone(),
        }

    def lift_progress(self) -> torch.Tensor:
        """Box centre's rise from resting towards ``lift_height``, clipped to [0, 1], (N,)."""
        rest = self.object_half_size["box"][:, 2]
        rise = self.object_pos("box")[:, 2] - rest
        return (rise / (self.cfg.lift_height - rest)).clamp(0.0, 1.0)

    def reach_distance(self) -> torch.Tensor:
        """(N,) m from the TCP to the box: to its nearest surface point (0 inside), or to its
        centre with ``reach_to="center"``."""
        local = self.in_object_frame("box", self.eef_pos())
        if self.cfg.reach_to == "center":
            return local.norm(dim=-1)
        outside = (local.abs() - self.object_half_size["box"]).clamp(min=0.0)
        return outside.norm(dim=-1)

    def success(self) -> torch.Tensor:
        """The box is above ``lift_height`` *and pinched* between the pads. Height alone counted
        throws (a finger driven between the thin box and the table pops it 10 cm up), and
        :meth:`grasped` a box carried flat on the back of the fingers like a tray
        (docs/benchmarks.md)."""
        return (self.object_pos("box")[:, 2] > self.cfg.lift_height) & self.pinched("box")

    def dense_reward(self, success: torch.Tensor) -> torch.Tensor:
        reach = closeness(self.reach_distance())
        lift = self.lift_progress()
        if self.cfg.lift_paid == "pinched":
            lift = lift * self.pinched("box").float()
        return REACH_WEIGHT * reach + LIFT_WEIGHT * lift + SUCCESS_WEIGHT * success.float()
