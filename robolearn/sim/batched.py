"""``BatchedSim``: N worlds of one MuJoCo model behind one torch API, whatever the backend.

Tasks read and write the state through torch tensors of shape ``(num_worlds, ...)`` on
:attr:`BatchedSim.device`; they never see a backend's own types. Writable state (``qpos``,
``qvel``, ``ctrl``, ``mocap_pos``, ``mocap_quat``, ``xfrc_applied``) are live views: write into
them, then call :meth:`forward` for the worlds whose positions changed (``reset`` does it for you).
Derived quantities (``xpos``, ``site_xpos``, ``sensordata``, ...) describe the current state after
:meth:`step`, :meth:`reset` and :meth:`forward`.

Per-world model parameters (friction, masses, sizes, damping) go through
:meth:`set_model_field`; later curricula use it to randomise or teach domain parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import mujoco
import torch

#: Model fields that may take per-world values. Geometry that collision detection caches
#: (bounding radii, boxes) is derived by the backend when ``geom_size`` changes.
PER_WORLD_FIELDS = (
    "geom_friction",
    "geom_size",
    "geom_solref",  # contact softness (the privileged-action curriculum relaxes table contacts)
    "body_mass",
    "body_inertia",
    "dof_damping",
    "dof_frictionloss",
    "actuator_gainprm",
    "actuator_biasprm",
)

#: State fields a task may write, and derived fields it may read.
STATE_FIELDS = ("time", "qpos", "qvel", "ctrl", "mocap_pos", "mocap_quat", "xfrc_applied")
DERIVED_FIELDS = (
    "xpos",
    "xquat",
    "xmat",
    "site_xpos",
    "site_xmat",
    "xaxis",
    "xanchor",
    "sensordata",
    "cvel",
)


class BatchedSim(ABC):
    """N copies of ``model``; subclasses implement the stepping."""

    def __init__(self, model: mujoco.MjModel, num_worlds: int, device: torch.device | str):
        if not isinstance(num_worlds, int) or num_worlds <= 0:
            raise ValueError(f"num_worlds must be a positive int, got {num_worlds!r}")
        self.model = model
        self.num_worlds = num_worlds
        self.device = torch.device(device)

    # --- state (writable views) -------------------------------------------------------------
    time: torch.Tensor
    qpos: torch.Tensor
    qvel: torch.Tensor
    ctrl: torch.Tensor
    mocap_pos: torch.Tensor
    mocap_quat: torch.Tensor
    xfrc_applied: torch.Tensor
    # --- derived (read-only views, current after step/reset/forward) ------------------------
    xpos: torch.Tensor
    xquat: torch.Tensor
    xmat: torch.Tensor
    site_xpos: torch.Tensor
    site_xmat: torch.Tensor
    xaxis: torch.Tensor
    xanchor: torch.Tensor
    sensordata: torch.Tensor
    cvel: torch.Tensor

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype:
        """Floating-point type of the views (float64 on ``cpu``, float32 on ``warp``)."""

    @abstractmethod
    def _step(self, substeps: int) -> None:
        """Advance every world by ``substeps`` physics steps (backend-specific)."""

    def step(self, substeps: int = 1) -> torch.Tensor:
        """Advance every world by ``substeps`` physics steps under the current ``ctrl``.

        Returns the (N,) bool mask of worlds whose physics diverged during the step: native
        MuJoCo resets such a world to the model defaults (its clock restarts), Warp leaves
        non-finite state. Either way the caller must reset those worlds; ``VecEnv`` does.
        """
        if substeps < 1:
            raise ValueError(f"substeps must be >= 1, got {substeps}")
        expected = self.time + (substeps - 0.5) * self.model.opt.timestep
        self._step(substeps)
        return (self.time < expected) | ~torch.isfinite(self.qpos).all(dim=-1)

    @abstractmethod
    def forward(self, env_ids: torch.Tensor | None = None) -> None:
        """Recompute derived quantities (kinematics, sensors) from the current state."""

    @abstractmethod
    def _reset_to_home(self, env_ids: torch.Tensor) -> None:
        """Reset the given worlds' full state to the model's ``home`` keyframe."""

    @abstractmethod
    def model_field(self, name: str) -> torch.Tensor:
        """Per-world values of a model field, ``(num_worlds, ...)``; a copy, not a view."""

    @abstractmethod
    def _write_model_field(self, name: str, env_ids: torch.Tensor, values: torch.Tensor) -> None:
        """Write per-world values of a model field (validated by :meth:`set_model_field`)."""

    # --- shared API ---------------------------------------------------------------------------
    def reset(
        self,
        env_ids: torch.Tensor | None = None,
        qpos: torch.Tensor | None = None,
        qvel: torch.Tensor | None = None,
        ctrl: torch.Tensor | None = None,
        mocap_pos: torch.Tensor | None = None,
    ) -> None:
        """Reset worlds to the home keyframe, then overwrite the given state and run forward.

        Every given tensor has one row per entry of ``env_ids`` (all worlds when ``None``).
        """
        env_ids = self.all_ids() if env_ids is None else env_ids.to(self.device, torch.long)
        if env_ids.numel() == 0:
            return
        self._reset_to_home(env_ids)
        for name, value in (
            ("qpos", qpos),
            ("qvel", qvel),
            ("ctrl", ctrl),
            ("mocap_pos", mocap_pos),
        ):
            if value is None:
                continue
            target = getattr(self, name)
            expected = (env_ids.numel(), *target.shape[1:])
            if tuple(value.shape) != expected:
                raise ValueError(
                    f"reset: {name} has shape {tuple(value.shape)}, expected {expected}"
                )
            target[env_ids] = value.to(target.device, target.dtype)
        self.forward(env_ids)

    def set_model_field(
        self, name: str, env_ids: torch.Tensor | None, values: torch.Tensor
    ) -> None:
        """Give worlds ``env_ids`` their own values of model field ``name``.

        ``values`` has shape ``(len(env_ids), *field_shape)``. Takes effect on the next step;
        call it before :meth:`reset` so that the reset's forward pass sees it.
        """
        if name not in PER_WORLD_FIELDS:
            raise KeyError(
                f"model field {name!r} cannot be set per world; choose from {PER_WORLD_FIELDS}"
            )
        env_ids = self.all_ids() if env_ids is None else env_ids.to(self.device, torch.long)
        field_shape = tuple(getattr(self.model, name).shape)
        expected = (env_ids.numel(), *field_shape)
        if tuple(values.shape) != expected:
            raise ValueError(
                f"set_model_field({name!r}): values have shape {tuple(values.shape)}, expected {expected}"
            )
        self._write_model_field(name, env_ids, values)

    def apply_force(
        self, body: str | int, wrench: torch.Tensor, env_ids: torch.Tensor | None = None
    ) -> None:
        """Set the external wrench ``(force xyz, torque xyz)`` in world frame on a body's CoM.

        The wrench stays applied until changed; pass zeros to remove it.
        """
        body_id = self.model.body(body).id if isinstance(body, str) else int(body)
        env_ids = self.all_ids() if env_ids is None else env_ids.to(self.device, torch.long)
        if tuple(wrench.shape) not in ((6,), (env_ids.numel(), 6)):
            raise ValueError(
                f"apply_force: wrench has shape {tuple(wrench.shape)}, expected (6,) or ({env_ids.numel()}, 6)"
            )
        self.xfrc_applied[env_ids, body_id] = wrench.to(self.device, self.dtype)

    def all_ids(self) -> torch.Tensor:
        return torch.arange(self.num_worlds, device=self.device)


BACKENDS = ("cpu", "warp")


def make_sim(
    model: mujoco.MjModel,
    num_worlds: int,
    backend: str = "cpu",
    device: str | None = None,
    **kwargs,
) -> BatchedSim:
    """Create a batched simulator. ``backend`` is ``"cpu"`` (native MuJoCo threads) or ``"warp"``."""
    if backend == "cpu":
        from robolearn.sim.cpu import CpuSim

        return CpuSim(model, num_worlds, **kwargs)
    if backend == "warp":
        from robolearn.sim.warp import WarpSim

        return WarpSim(model, num_worlds, device=device, **kwargs)
    raise ValueError(f"unknown sim backend {backend!r}; choose from {BACKENDS}")
