"""``PrivilegedActionWrapper``: simulation-only privileges scaled by a level β (METHODS.md §5).

Mao et al. (2025) make long-horizon, contact-rich skills learnable from a parsimonious reward by
letting the policy cheat in simulation, then taking the cheats away. Two privileges, both scaled
by β ∈ [0, 1] and both gone at β = 0:

* **virtual force.** The policy's action has ``P`` extra dimensions (force along ``force_axes``,
  plus torque xyz when ``max_torque > 0``) in [-1, 1]. They become a world-frame wrench on the
  task's object, ``β·max_force·a`` (``β·max_torque·a`` for torques), through ``xfrc_applied``,
  held for the whole control step. At β = 0 the wrench is written as exact zeros. A force in the
  table's plane only (``force_axes="xy"``) can slide the object but never carry it.
* **relaxed constraints.** The robot may sink into the table. MuJoCo mixes the contact
  parameters of two geoms of equal priority, but a *direct* ``solref`` (``−stiffness,
  −damping``) on either side wins outright (the element-wise minimum). So the table's ``solref``
  becomes direct, per world (``geom_solref`` is a per-world field on both backends), with a
  stiffness interpolated in log-space from the nominal robot–table contact's (β = 0) down to
  ``min_stiffness_ratio`` times it (β = 1), critically damped. Objects keep their own contact
  parameters against the table (they have the higher priority), so only the robot is relaxed.
  At β = 0 the model's own ``solref`` is written back: physics is bit-identical to the env
  without the wrapper.

  With ``wrench_per_world="uniform"`` each world draws a share u ~ U(0, 1) at every reset and
  its wrench is bounded by u·β·max instead. A wrench that can do a step of the task alone (a
  torque that stands ``lift_flat``'s box on its edge) otherwise teaches nothing about doing it
  without: the policy leans on it until β takes it below that threshold, and collapses there
  (docs/benchmarks.md). With a share per world, every level also holds worlds where the wrench
  falls short and the fingers must finish the step, so the policy meets β = 0's physics from
  the start. The policy does not observe its share.

  With ``relax_near_edge > 0`` the relaxation is a *region* instead: the table is fully relaxed
  (``min_stiffness_ratio``) in the worlds whose object centre lies within ``β·relax_near_edge`` of
  the table top's nearest edge, and nominal elsewhere. On ``lift_flat`` the fingers can then get
  under the box where it lies while the region covers it, and as β falls the box must be pushed
  ever nearer the edge first, until at β = 0 only a real overhang can be grasped: the curriculum
  shapes the push-to-the-edge phase that a uniformly softened table skips (docs/benchmarks.md).

The reward is the env's, untouched: β changes what the policy can do, never what it is paid.

The first ``A`` action dimensions are the deployed action: the wrapped env's own spec (action dim
``A``) is the export's, :attr:`spec` the training one (``A + P``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from robolearn.envs.vec_env import Obs, VecEnv
from robolearn.envs.wrapper import EnvWrapper
from robolearn.spec import ObsSpec


@dataclass(frozen=True)
class PrivilegedActionConfig:
    object: str = ""  # object body the virtual force acts on; empty: the task's first object
    max_force: float = 5.0  # N at β = 1 (a 0.15 kg box weighs 1.5 N)
    force_axes: str = "xyz"  # world axes the force acts along; "xy": it slides, never lifts
    max_torque: float = 0.0  # N·m at β = 1; 0: no torque dimensions
    relax_table: bool = True  # soften robot–table contacts with β
    min_stiffness_ratio: float = 1e-3  # robot–table contact stiffness at β = 1, over nominal
    relax_near_edge: float = 0.0  # m; > 0: relax only where the object is within β·this of an edge
    #: "same": every world's wrench is bounded by β·max; "uniform": each world draws u ~ U(0, 1)
    #: at its reset and is bounded by u·β·max, so that every level holds weakly helped worlds.
    wrench_per_world: str = "same"

    def validate(self) -> None:
        if self.max_force < 0 or self.max_torque < 0:
            raise ValueError(
                f"privileged.max_force/max_torque must be >= 0, got {self.max_force}/{self.max_torque}"
            )
        axes = self.force_axes
        if not axes or set(axes) - set("xyz") or len(set(axes)) != len(axes):
            raise ValueError(
                f"privileged.force_axes must be distinct letters of 'xyz', got {axes!r}"
            )
        if self.relax_near_edge < 0:
            raise ValueError(
                f"privileged.relax_near_edge must be >= 0 m, got {self.relax_near_edge}"
            )
        if self.wrench_per_world not in ("same", "uniform"):
            raise ValueError(
                "privileged.wrench_per_world must be 'same' or 'uniform', "
                f"got {self.wrench_per_world!r}"
            )
        if not 0.0 < self.min_stiffness_ratio <= 1.0:
            raise ValueError(
                f"privileged.min_stiffness_ratio must be in (0, 1], got {self.min_stiffness_ratio}"
            )


class PrivilegedActionWrapper(EnvWrapper):
    """A :class:`VecEnv` whose actions carry ``P`` privileged dimensions after the ``A`` real ones."""

    def __init__(self, env: VecEnv, cfg: PrivilegedActionConfig | None = None, beta: float = 1.0):
        self.cfg = cfg or PrivilegedActionConfig()
        self.cfg.validate()
        super().__init__(env)
        task = env.task
        objects = [o.name for o in task.scene.objects]
        if not objects:
            raise ValueError(
                f"privileged action: task {task.name!r} has no object body for the virtual force "
                "to act on; use a task with an object (e.g. lift, lift_flat)"
            )
        name = self.cfg.object or objects[0]
        if name not in objects:
            raise ValueError(
                f"privileged.object {name!r}: task {task.name!r} has objects {objects}"
            )
        self.object_name, self.object_body = name, task.obj_body[name]
        self.deploy_action_dim = env.action_dim
        torques = 3 if self.cfg.max_torque > 0 else 0
        self.privileged_dim = len(self.cfg.force_axes) + torques
        self.action_dim = self.deploy_action_dim + self.privileged_dim
        limits = [self.cfg.max_force] * len(self.cfg.force_axes) + [self.cfg.max_torque] * torques
        self._limits = torch.tensor(limits, device=env.device, dtype=env.sim.dtype)
        #: Wrench columns the privileged dimensions drive: the force axes, then the torques.
        self._wrench_columns = ["xyz".index(a) for a in self.cfg.force_axes] + [3, 4, 5][:torques]
        table = env.model.geom("table")
        self._table = table.id
        self._table_center = torch.as_tensor(table.pos[:2], device=env.device).float()
        self._table_half_extent = torch.as_tensor(table.size[:2], device=env.device).float()
        self._nominal_solref = torch.as_tensor(env.model.geom_solref).clone()
        self._nominal_stiffness = self._robot_table_stiffness()
        #: (N,) bool: worlds whose robot-table contacts are relaxed, as last written to the model.
        self.table_relaxed = torch.zeros(env.num_envs, dtype=torch.bool, device=env.device)
        #: (N,) each world's share of the wrench bound: ones, or redrawn at its resets.
        self.wrench_share = torch.ones(env.num_envs, device=env.device, dtype=env.sim.dtype)
        # Own stream (seeded from the env's), so the env's own draws are those of the plain env.
        self._share_generator = torch.Generator().manual_seed(env.generator.initial_seed() + 1)
        self._draw_wrench_share(env.sim.all_ids())
        self.set_privilege(beta)

    # --- privilege level -------------------------------------------------------------------------
    def set_privilege(self, beta: float) -> None:
        """Set β for all worlds; takes effect at the next step."""
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"privilege level must be in [0, 1], got {beta}")
        self.beta = float(beta)
        if self.cfg.relax_table:
            self._write_table(self.env.sim.all_ids(), self.relaxed_worlds())

    @property
    def relaxes_a_region(self) -> bool:
        return self.cfg.relax_table and self.cfg.relax_near_edge > 0

    def relaxed_worlds(self) -> torch.Tensor:
        """(N,) bool: the worlds whose robot-table contacts should be relaxed now."""
        n, device = self.num_envs, self.env.device
        if not self.cfg.relax_table or self.beta == 0:
            return torch.zeros(n, dtype=torch.bool, device=device)
        if not self.relaxes_a_region:
            return torch.ones(n, dtype=torch.bool, device=device)
        return self.edge_distance() <= self.beta * self.cfg.relax_near_edge

    def edge_distance(self) -> torch.Tensor:
        """(N,) m from the object's centre to the table top's nearest edge (< 0 beyond it)."""
        xy = self.env.task.object_pos(self.object_name)[:, :2]
        inside = self._table_half_extent - (xy - self._table_center).abs()
        return inside.min(dim=-1).values

    def relaxed_table_solref(self) -> torch.Tensor:
        """The table's direct ``solref`` (2,) where it is relaxed at the current β: stiffness
        interpolated in log-space by β, or the softest (β = 1) inside a region."""
        exponent = 1.0 if self.relaxes_a_region else self.beta
        stiffness = self._nominal_stiffness * self.cfg.min_stiffness_ratio**exponent
        return torch.tensor([-stiffness, -2.0 * math.sqrt(stiffness)], dtype=torch.float64)

    def _write_table(self, env_ids: torch.Tensor, wanted: torch.Tensor) -> None:
        """Give worlds ``env_ids`` the table solref that ``wanted`` (N,) bool asks for."""
        relaxed = wanted[env_ids]
        solref = self._nominal_solref.repeat(len(env_ids), 1, 1)
        solref[relaxed.cpu(), self._table] = self.relaxed_table_solref().to(solref)
        self.env.sim.set_model_field("geom_solref", env_ids, solref)
        self.table_relaxed[env_ids] = relaxed

    def _robot_table_stiffness(self) -> float:
        """Stiffness ``1/(timeconst·dampratio)²`` of the finger-pad–table contact, mixed as
        MuJoCo mixes it: the pads are what the policy pushes into the table."""
        model, table = self.env.model, self._table
        pad = model.geom("left_pad").id
        mix = model.geom_solmix[table] / (model.geom_solmix[table] + model.geom_solmix[pad])
        timeconst, dampratio = mix * model.geom_solref[table] + (1 - mix) * model.geom_solref[pad]
        return float(1.0 / (timeconst * dampratio) ** 2)

    # --- VecEnv API ------------------------------------------------------------------------------
    @property
    def spec(self) -> ObsSpec:
        """The training spec: the env's, with the action widened by the privileged dimensions."""
        spec = self.env.spec
        return dataclasses.replace(
            spec,
            action=dataclasses.replace(spec.action, dim=self.action_dim),
            extras={**spec.extras, "privileged_action_dim": self.privileged_dim},
        )

    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        if seed is not None:  # reseeded with the env, so that a seeded reset repeats the shares
            self._share_generator.manual_seed(seed + 1)
        self._draw_wrench_share(self.env.sim.all_ids())
        return self.env.reset(seed)

    def _draw_wrench_share(self, env_ids: torch.Tensor) -> None:
        if self.cfg.wrench_per_world == "uniform" and len(env_ids):
            u = torch.rand(len(env_ids), generator=self._share_generator)
            self.wrench_share[env_ids] = u.to(self.wrench_share)

    def step(
        self, action: torch.Tensor
    ) -> tuple[Obs, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        expected = (self.num_envs, self.action_dim)
        if not isinstance(action, torch.Tensor) or tuple(action.shape) != expected:
            found = (
                tuple(action.shape) if isinstance(action, torch.Tensor) else type(action).__name__
            )
            raise ValueError(
                f"privileged action has shape {found}, expected {expected} "
                f"({self.deploy_action_dim} env + {self.privileged_dim} privileged dimensions)"
            )
        privileged = action[:, self.deploy_action_dim :]
        if not torch.isfinite(privileged).all():
            raise ValueError("privileged action dimensions contain NaN/Inf")
        wrench = self.virtual_wrench(privileged)
        self.env.sim.apply_force(self.object_body, wrench)
        if self.relaxes_a_region:  # the objects moved (or were reset): update their worlds
            wanted = self.relaxed_worlds()
            changed = (wanted != self.table_relaxed).nonzero().flatten()
            if len(changed):
                self._write_table(changed, wanted)
        obs, reward, terminated, truncated, info = self.env.step(
            action[:, : self.deploy_action_dim]
        )
        info["virtual_wrench"] = wrench
        if "episode" in info:  # the finished worlds were reset: their next episode's share
            self._draw_wrench_share(info["episode"]["env_ids"])
        return obs, reward, terminated, truncated, info

    def virtual_wrench(self, privileged: torch.Tensor) -> torch.Tensor:
        """``(N, 6)`` world-frame wrench for privileged actions ``(N, P)``; exact zeros at β = 0."""
        wrench = torch.zeros(len(privileged), 6, device=self.env.device, dtype=self.env.sim.dtype)
        if self.beta > 0:
            bound = self.beta * self._limits
            if self.cfg.wrench_per_world == "uniform":
                bound = bound * self.wrench_share[:, None]
            scaled = bound * privileged.to(wrench).clamp(-1.0, 1.0)
            wrench[:, self._wrench_columns] = scaled
        return wrench
