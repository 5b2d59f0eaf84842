"""The ``warp`` backend: MuJoCo Warp (``mujoco_warp``), all N worlds in one batched ``Data``.

Every state and derived field is a warp array with a leading ``nworld`` dimension; the torch
attributes here are zero-copy views of them (``wp.to_torch``, float32) on the sim's device: CUDA
when torch sees a GPU, else Warp's CPU device (slow to compile, fine for parity tests).

Stepping. :meth:`step` runs ``substeps`` calls of ``mjw.step`` and then the position and velocity
stages (``mjw.step1``) at the new state, so that, as on the ``cpu`` backend (``Batch.step`` with
``stage=mjSTAGE_VEL``), positions, velocities and position/velocity sensors describe the state
after the step, while acceleration-stage sensors (touch) keep the values of the last substep. The
whole sequence is recorded once per ``substeps`` value as a Warp graph (a CUDA graph on a GPU;
on the CPU device Warp replays its recorded launches in C++, which measured 36x faster than
launching the kernels of a step from Python at 4 worlds and ~4x at 64) and replayed on every call. :meth:`forward` (full
``mjw.forward``, for all worlds: a warp kernel covers every world anyway) is recorded the same way.

Reset. ``_reset_to_home`` writes the ``home`` keyframe's rows (or the model defaults when there is
none) into the selected worlds with torch indexing: ``qpos``, ``qvel``, ``act``, ``ctrl``, mocap
poses, ``time``, and zeros for ``qacc_warmstart``, ``qacc``, ``act_dot``, ``qfrc_applied``,
``xfrc_applied``, ``sensordata``, ``userdata`` and the overflow flags, i.e. what
``mjw.reset_data_keyframe`` writes, without its per-call kernel definitions (~7 ms a call).
Contacts, constraints and all derived fields are recomputed by the forward pass that
:meth:`BatchedSim.reset` runs next. Models with sleeping, actuator/sensor history or plasticity
(none of robolearn's scenes) are rejected, since this reset would not clear their state.

Per-world model fields. ``mjw.Model`` arrays whose spec starts with ``*`` may have a leading
dimension of 1 (shared by all worlds, indexed ``worldid % shape[0]`` by every kernel) or
``nworld``. A field stays shared until :meth:`set_model_field` first writes it; it is then
expanded to ``(nworld, ...)`` and re-assigned on the model (recorded graphs are dropped and
re-recorded, since they hold the old arrays). Constants derived from the written field are
recomputed for all worlds with ``mjw.set_const`` (its table): ``geom_size`` -> geom bounding
boxes and spheres (``geom_aabb``, ``geom_rbound``); ``body_mass`` -> subtree masses, qpos0
kinematic references and the inverse weights (``body_invweight0``, ``dof_invweight0``,
``actuator_acc0``) that set constraint impedances; ``body_inertia`` -> the inverse weights.
The derived outputs are expanded to ``(nworld, ...)`` first, so that worlds do not overwrite each
other's values. ``geom_friction``, ``dof_damping``, ``dof_frictionloss`` and the actuator gain/bias
parameters are read directly by the kernels and need nothing else. Not updated: constants that
MuJoCo Warp keeps unbatched (``dof_M0``, ``flexedge_invweight0``) and anything the host
``MjModel`` in :attr:`model` holds: it keeps the nominal values (renderers use it).

Sizing. Contacts live in one pool of ``nconmax * nworld`` entries shared by all worlds
(``nconmax`` is the average per world); constraint rows are a hard ``njmax`` per world. The
defaults (32 and 128) cover the scripted experts with room to spare: at most 64 rows per world
for lift and pick_place, 88 for stack (elliptic cones: 4 rows per contact), and ~16 contacts per
world on average; raise them for busier scenes. A world that runs out of constraint rows sets
bits in :attr:`overflow` (and MuJoCo Warp prints a warning); its constraint forces are then
incomplete, and :meth:`step` reports it with the diverged worlds. The shared contact pool is
different: when it fills, MuJoCo Warp (4.0.0) skips the remaining contacts of whichever worlds
come last, flags no world, and only ``nacon > naconmax`` tells; nothing here checks that yet.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import mujoco
import numpy as np
import torch

from robolearn.sim.batched import DERIVED_FIELDS, STATE_FIELDS, BatchedSim

#: Per-world contact pool (average) and constraint rows (hard limit) per world; see module doc.
DEFAULT_NCONMAX = 32
DEFAULT_NJMAX = 128

_MISSING = (
    "the 'warp' sim backend needs mujoco_warp and warp-lang; install the extra with "
    "`pip install robolearn[warp]` (or `pip install mujoco-warp warp-lang`)"
)

# set_const groups to rerun after a per-world write (mujoco_warp's set_const docstring).
_FIXED, _KIN0, _INERT0 = 1, 2, 4
_SETCONST_GROUPS = {
    "geom_size": _FIXED,
    "body_mass": _FIXED | _KIN0 | _INERT0,
    "body_inertia": _INERT0,
}
# Model fields each group writes; expanded per world before the group runs.
_SETCONST_OUTPUTS = {
    _FIXED: ("body_subtreemass", "geom_aabb", "geom_rbound"),
    _KIN0: (
        "tendon_length0",
        "eq_data",
        "cam_pos0",
        "cam_poscom0",
        "cam_mat0",
        "light_pos0",
        "light_poscom0",
        "light_dir0",
    ),
    _INERT0: ("dof_invweight0", "body_invweight0", "tendon_invweight0", "actuator_acc0"),
}


def _import_warp():
    try:
        import mujoco_warp as mjw
        import warp as wp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(_MISSING) from err
    wp.init()  # idempotent; device lookups below need the runtime
    return wp, mjw


@functools.cache
def _copy_columns_kernel():
    wp, _ = _import_warp()

    @wp.kernel(enable_backward=False)
    def copy_columns(
        src: wp.array2d(dtype=wp.float32),
        cols: wp.array(dtype=wp.int32),
        dst: wp.array2d(dtype=wp.float32),
    ):
        world, i = wp.tid()
        col = cols[i]
        dst[world, col] = src[world, col]

    return copy_columns


def _torch_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} requested, but torch sees no CUDA GPU")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"the warp backend runs on 'cpu' or 'cuda' devices, got {device}")
    return device


class WarpSim(BatchedSim):
    """``num_worlds`` copies of ``model`` in one MuJoCo Warp ``Data``; float32 torch views.

    Args:
        model: the compiled MuJoCo model (its ``home`` keyframe is the reset state).
        num_worlds: number of worlds N.
        device: torch device; ``None`` picks ``cuda`` when available, else ``cpu`` (Warp's CPU
            device).
        nconmax: average contacts per world (the pool holds ``nconmax * N``).
        njmax: constraint rows per world.
        use_graphs: record ``step``/``forward`` as Warp graphs and replay them (default). Turn off
            to debug kernels one launch at a time.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        num_worlds: int,
        device: torch.device | str | None = None,
        nconmax: int | None = None,
        njmax: int | None = None,
        use_graphs: bool = True,
    ):
        wp, mjw = _import_warp()
        super().__init__(model, num_worlds, _torch_device(device))
        self._wp, self._mjw = wp, mjw
        self._check_supported(model)
        try:
            self._wp_device = wp.device_from_torch(self.device)
        except Exception as err:
            raise RuntimeError(f"warp cannot use device {self.device}: {err}") from err
        self.nconmax = DEFAULT_NCONMAX if nconmax is None else int(nconmax)
        self.njmax = DEFAULT_NJMAX if njmax is None else int(njmax)
        with wp.ScopedDevice(self._wp_device):
            self._m = mjw.put_model(model)
            self._d = mjw.make_data(
                model, nworld=num_worlds, nconmax=self.nconmax, njmax=self.njmax
            )
        self._use_graphs = use_graphs
        self._graphs: dict[Any, Any] = {}

        d = self._d
        for name in STATE_FIELDS + DERIVED_FIELDS:
            setattr(self, name, wp.to_torch(getattr(d, name)))
        #: (N,) int32 bitmask of mujoco_warp ``OverflowType`` flags; nonzero: a buffer ran out.
        self.overflow = wp.to_torch(d.overflow)
        self._reset_views = {
            name: wp.to_torch(getattr(d, name))
            for name in (
                "act",
                "qacc_warmstart",
                "qacc",
                "act_dot",
                "qfrc_applied",
                "userdata",
                "eq_active",
            )
        }
        self._home = self._home_rows(model)

        # Acceleration-stage sensors (touch, force, ...) keep their last-substep values through the
        # trailing position/velocity pass of step(), as on the cpu backend.
        acc = [
            np.arange(adr, adr + dim)
            for adr, dim, stage in zip(
                model.sensor_adr, model.sensor_dim, model.sensor_needstage, strict=True
            )
            if stage == mujoco.mjtStage.mjSTAGE_ACC
        ]
        self._acc_cols = None
        if acc:
            cols = np.concatenate(acc).astype(np.int32)
            self._acc_cols = wp.array(cols, dtype=wp.int32, device=self._wp_device)
            self._sensor_scratch = wp.zeros_like(d.sensordata)

        self._reset_to_home(self.all_ids())
        self.forward()

    # --- construction helpers --------------------------------------------------------------
    @staticmethod
    def _check_supported(model: mujoco.MjModel) -> None:
        unsupported = []
        if model.opt.enableflags & mujoco.mjtEnableBit.mjENBL_SLEEP:
            unsupported.append("sleeping")
        if getattr(model, "nhistory", 0):
            unsupported.append("actuator/sensor history (delays)")
        if getattr(model, "nplastic", 0):
            unsupported.append("plasticity")
        if unsupported:
            raise NotImplementedError(
                f"WarpSim does not reset {', '.join(unsupported)}; use the 'cpu' backend"
            )

    def _home_rows(self, model: mujoco.MjModel) -> dict[str, torch.Tensor]:
        """The reset state of one world, float32 on the device."""
        key = model.key("home").id if model.nkey else -1
        mocap_bodies = np.flatnonzero(model.body_mocapid >= 0)
        mocap_bodies = mocap_bodies[np.argsort(model.body_mocapid[mocap_bodies])]
        if key >= 0:
            rows = {
                "qpos": model.key_qpos[key],
                "qvel": model.key_qvel[key],
                "act": model.key_act[key],
                "ctrl": model.key_ctrl[key],
                "mocap_pos": model.key_mpos[key].reshape(model.nmocap, 3),
                "mocap_quat": model.key_mquat[key].reshape(model.nmocap, 4),
                "time": model.key_time[key],
            }
        else:
            rows = {
                "qpos": model.qpos0,
                "qvel": np.zeros(model.nv),
                "act": np.zeros(model.na),
                "ctrl": np.zeros(model.nu),
                "mocap_pos": model.body_pos[mocap_bodies],
                "mocap_quat": model.body_quat[mocap_bodies],
                "time": np.float64(0.0),
            }
        out = {
            k: torch.as_tensor(np.asarray(v), dtype=torch.float32, device=self.device)
            for k, v in rows.items()
        }
        out["eq_active"] = torch.as_tensor(model.eq_active0.astype(bool), device=self.device)
        return out

    # --- BatchedSim ---------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def _step(self, substeps: int) -> None:
        self._launch(("step", substeps), functools.partial(self._step_body, substeps))

    def step(self, substeps: int = 1) -> torch.Tensor:
        # A world that ran out of contact/constraint space has wrong physics: report it with the
        # diverged worlds so that the env resets it.
        return super().step(substeps) | (self.overflow != 0)

    def forward(self, env_ids: torch.Tensor | None = None) -> None:
        # One kernel launch covers every world, so env_ids only documents the caller's intent;
        # a forward pass changes no state, so the other worlds are unaffected.
        self._launch("forward", functools.partial(self._mjw.forward, self._m, self._d))

    def _reset_to_home(self, env_ids: torch.Tensor) -> None:
        ids = env_ids.to(self.device, torch.long)
        home, v = self._home, self._reset_views
        for name in ("qpos", "qvel", "ctrl", "mocap_pos", "mocap_quat"):
            getattr(self, name)[ids] = home[name]
        v["act"][ids] = home["act"]
        self.time[ids] = home["time"]
        v["eq_active"][ids] = home["eq_active"]
        for name in ("qacc_warmstart", "qacc", "act_dot", "qfrc_applied", "userdata"):
            v[name][ids] = 0
        self.xfrc_applied[ids] = 0
        self.sensordata[ids] = 0
        self.overflow[ids] = 0

    def model_field(self, name: str) -> torch.Tensor:
        shape = tuple(getattr(self.model, name).shape)
        arr = getattr(self._m, name, None)
        if not self._is_batched_field(name) or arr is None:
            host = torch.as_tensor(np.asarray(getattr(self.model, name)), device=self.device)
            return host.expand(self.num_worlds, *shape).clone()
        values = self._wp.to_torch(arr).reshape(arr.shape[0], *shape)
        return values.expand(self.num_worlds, *shape).clone()

    def _write_model_field(self, name: str, env_ids: torch.Tensor, values: torch.Tensor) -> None:
        if not self._is_batched_field(name):
            raise KeyError(f"mujoco_warp keeps model field {name!r} shared by all worlds")
        shape = tuple(getattr(self.model, name).shape)
        target = self._wp.to_torch(self._expand(name)).view(self.num_worlds, *shape)
        target[env_ids.to(self.device, torch.long)] = values.to(self.device, torch.float32)
        groups = _SETCONST_GROUPS.get(name, 0)
        if name == "geom_size" and self.model.nwrap:
            groups = _FIXED | _KIN0 | _INERT0  # tendons wrapping geoms depend on their sizes
        if groups:
            for group, outputs in _SETCONST_OUTPUTS.items():
                if groups & group:
                    for out in outputs:
                        self._expand(out)
            with self._wp.ScopedDevice(self._wp_device):
                self._sync_torch_to_warp()
                self._mjw.set_const(self._m, self._d, groups=self._mjw.SetConstGroup(groups))
                self._sync_warp_to_torch()

    # --- internals ----------------------------------------------------------------------------
    def _step_body(self, substeps: int) -> None:
        mjw, m, d = self._mjw, self._m, self._d
        for _ in range(substeps):
            mjw.step(m, d)
        if self._acc_cols is not None:
            self._wp.copy(self._sensor_scratch, d.sensordata)
        mjw.step1(m, d)  # positions, velocities and their sensors at the new state
        if self._acc_cols is not None:
            self._wp.launch(
                _copy_columns_kernel(),
                dim=(self.num_worlds, self._acc_cols.shape[0]),
                inputs=[self._sensor_scratch, self._acc_cols],
                outputs=[d.sensordata],
            )

    def _launch(self, key: Any, body) -> None:
        """Run ``body`` (warp launches only), replaying its recorded graph when there is one."""
        wp = self._wp
        with wp.ScopedDevice(self._wp_device):
            self._sync_torch_to_warp()
            graph = self._graphs.get(key) if self._use_graphs else None
            if graph is None and self._use_graphs:
                try:
                    with wp.ScopedCapture() as capture:
                        body()
                    graph = self._graphs[key] = capture.graph
                except Exception as err:  # pragma: no cover - platform dependent
                    warnings.warn(
                        f"WarpSim: graph capture failed ({err}); launching kernels one by one",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    self._use_graphs, self._graphs = False, {}
            if graph is not None:
                wp.capture_launch(graph)
            else:
                body()
            self._sync_warp_to_torch()

    def _sync_torch_to_warp(self) -> None:
        # Warp's default CUDA stream is a blocking stream, ordered with torch's (legacy) default
        # stream; only a non-default torch stream needs an explicit event.
        if self.device.type == "cuda":
            stream = torch.cuda.current_stream(self.device)
            if stream != torch.cuda.default_stream(self.device):
                self._wp.get_stream(self._wp_device).wait_stream(self._wp.stream_from_torch(stream))

    def _sync_warp_to_torch(self) -> None:
        if self.device.type == "cuda":
            stream = torch.cuda.current_stream(self.device)
            if stream != torch.cuda.default_stream(self.device):
                stream.wait_stream(self._wp.stream_to_torch(self._wp.get_stream(self._wp_device)))

    def _is_batched_field(self, name: str) -> bool:
        spec = self._mjw.Model.__annotations__.get(name)
        shape = getattr(spec, "shape", ())
        return isinstance(spec, self._wp.array) and bool(shape) and shape[0] == "*"

    def _expand(self, name: str):
        """The model's array for ``name`` with one row per world, expanding it on first use."""
        wp = self._wp
        arr = getattr(self._m, name)
        if arr.shape[0] == self.num_worlds or arr.size == 0:
            return arr
        expanded = wp.empty(
            (self.num_worlds, *arr.shape[1:]), dtype=arr.dtype, device=self._wp_device
        )
        dst = wp.to_torch(expanded)
        dst.copy_(wp.to_torch(arr).expand_as(dst))
        expanded._is_batched = True
        setattr(self._m, name, expanded)
        self._graphs.clear()  # recorded graphs hold the old array
        return expanded
