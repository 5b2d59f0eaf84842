"""``PrivilegedActionWrapper``: simulation-only privileges scaled by a level β (METHODS.md §5).

Mao et al. (2025) make long-horizon, contact-rich skills learnable from a parsimonious reward by
letting the policy cheat in simulation, then taking the cheats away. Two privileges, both scaled
by β ∈ [0, 1] and both gone at β = 0:

* **virtual force.** The policy's action has ``P`` extra dimensions (force xyz, plus torque xyz
  when ``max_torque > 0``) in [-1, 1]. They become a world-frame wrench on the task's object,
  ``β·max_force·a`` (``β·max_torque·a`` for torques), through ``xfrc_applied``, held for the whole
  control step. At β = 0 the wrench is written as exact zeros.
* **relaxed constraints.** The robot may sink into the table. MuJoCo mixes the contact
  parameters of two geoms of equal priority, but a *direct* ``solref`` (``−stiffness,
  −damping``) on either side wins outright (the element-wise minimum). So the table's ``solref``
  becomes direct, per world (``geom_solref`` is a per-world field on both backends), with a
  stiffness interpolated in log-space from the nominal robot–table contact's (β = 0) down to
  ``min_stiffness_ratio`` times it (β = 1), critically damped. Objects keep their own contact
  parameters against the table (they have the higher priority), so only the robot is relaxed.
  At β = 0 the model's own ``solref`` is written back: physics is bit-identical to the env
  without the wrapper.

The reward is the env's, untouched: β changes what the policy can do, never what it is paid.

The first ``A`` action dimensions are the deployed action; :attr:`deploy_spec` is the env's own
spec (action dim ``A``) for export, :attr:`spec` the training one (``A + P``).
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
    max_torque: float = 0.0  # N·m at β = 1; 0: no torque dimensions
    relax_table: bool = True  # soften robot–table contacts with β
    min_stiffness_ratio: float = 1e-3  # robot–table contact stiffness at β = 1, over nominal

    def validate(self) -> None:
        if self.max_force < 0 or self.max_torque < 0:
            raise ValueError(
                f"privileged.max_force/max_torque must be >= 0, got {self.max_force}/{self.max_torque}"
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
        self.object_body = task.obj_body[name]
        self.deploy_action_dim = env.action_dim
        self.privileged_dim = 6 if self.cfg.max_torque > 0 else 3
        self.action_dim = self.deploy_action_dim + self.privileged_dim
        limits = [self.cfg.max_force] * 3 + [self.cfg.max_torque] * (self.privileged_dim - 3)
        self._limits = torch.tensor(limits, device=env.device, dtype=env.sim.dtype)
        self._table = env.model.geom("table").id
        self._nominal_solref = torch.as_tensor(env.model.geom_solref).clone()
        self._nominal_stiffness = self._robot_table_stiffness()
        self.set_privilege(beta)

    # --- privilege level -------------------------------------------------------------------------
    def set_privilege(self, beta: float) -> None:
        """Set β for all worlds; takes effect at the next step."""
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"privilege level must be in [0, 1], got {beta}")
        self.beta = float(beta)
        if self.cfg.relax_table:
            self.env.sim.set_model_field(
                "geom_solref", None, self.table_solref(self.beta).repeat(self.num_envs, 1, 1)
            )

    def table_solref(self, beta: float) -> torch.Tensor:
        """The model's ``geom_solref`` ``(ngeom, 2)`` with the table's relaxed for level β."""
        solref = self._nominal_solref.clone()
        if beta > 0:
            stiffness = self._nominal_stiffness * self.cfg.min_stiffness_ratio**beta
            solref[self._table] = torch.tensor([-stiffness, -2.0 * math.sqrt(stiffness)])
        return solref

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

    @property
    def deploy_spec(self) -> ObsSpec:
        """The deployed spec (action dim ``A``): what an exported policy must produce."""
        return self.env.spec

    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        return self.env.reset(seed)

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
        obs, reward, terminated, truncated, info = self.env.step(
            action[:, : self.deploy_action_dim]
        )
        info["privilege"] = self.beta
        info["virtual_wrench"] = wrench
        return obs, reward, terminated, truncated, info

    def virtual_wrench(self, privileged: torch.Tensor) -> torch.Tensor:
        """``(N, 6)`` world-frame wrench for privileged actions ``(N, P)``; exact zeros at β = 0."""
        wrench = torch.zeros(len(privileged), 6, device=self.env.device, dtype=self.env.sim.dtype)
        if self.beta > 0:
            scaled = self.beta * self._limits * privileged.to(wrench).clamp(-1.0, 1.0)
            wrench[:, : self.privileged_dim] = scaled
        return wrench
