"""The ``cpu`` backend: native MuJoCo, N worlds stepped by ``mujoco.batch.Batch`` threads.

``Batch`` keeps each world's state as one row of an array and steps the worlds on a pool of
threads that release the GIL, each thread with its own scratch ``MjData``. Its ``bind`` arrays are
the state rows themselves (derived fields are copied out after every call), so the torch views
here are zero-copy float64 tensors. A non-persistent batch needs ~4 kB per world instead of the
~170 kB of a full ``MjData`` each, and measured as fast here. See ``scripts/bench/sim_throughput.py`` for how close this comes to the raw
threaded ceiling.
"""

from __future__ import annotations

import os
import warnings

import mujoco
import numpy as np
import torch
from mujoco.batch import Batch

from robolearn.sim.batched import DERIVED_FIELDS, STATE_FIELDS, BatchedSim

_SETCONST_INPUTS = frozenset(getattr(mujoco.MjModel, "_setconst_inputs", ()))


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    # Output fields are read-only numpy arrays that Batch refreshes in place after every call;
    # torch warns on sharing non-writable memory, which is what we want here (we never write).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


class CpuSim(BatchedSim):
    def __init__(self, model: mujoco.MjModel, num_worlds: int, num_threads: int | None = None):
        super().__init__(model, num_worlds, "cpu")
        threads = num_threads or len(os.sched_getaffinity(0))
        self._batch = Batch(model, num_worlds, nthread=min(threads, num_worlds), persistent=False)
        self._home_key = model.key("home").id if model.nkey else -1
        for name in STATE_FIELDS + DERIVED_FIELDS:
            setattr(self, name, _as_tensor(self._batch.bind(name)))
        # 3x3 matrices are stored flat by MuJoCo; expose them as (N, n, 3, 3) views.
        self.xmat = self.xmat.view(num_worlds, -1, 3, 3)
        self.site_xmat = self.site_xmat.view(num_worlds, -1, 3, 3)
        self._batch.reset(keyframe=self._home_key)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64

    @property
    def num_threads(self) -> int:
        return self._batch.nthread

    def _step(self, substeps: int) -> None:
        # stage=VEL makes positions, velocities and sensors describe the new state.
        self._batch.step(nstep=substeps, stage=mujoco.mjtStage.mjSTAGE_VEL)

    def forward(self, env_ids: torch.Tensor | None = None) -> None:
        self._batch.forward(None if env_ids is None else env_ids.cpu().numpy())

    def _reset_to_home(self, env_ids: torch.Tensor) -> None:
        self._batch.reset(
            env_ids.cpu().numpy(), keyframe=self._home_key, stage=mujoco.mjtStage.mjSTAGE_NONE
        )

    def model_field(self, name: str) -> torch.Tensor:
        per_world = self._batch.expanded(name)
        if per_world is None:
            shared = getattr(self.model, name)
            per_world = np.broadcast_to(shared, (self.num_worlds, *shared.shape))
        return torch.tensor(np.array(per_world))

    def _write_model_field(self, name: str, env_ids: torch.Tensor, values: torch.Tensor) -> None:
        ids = env_ids.cpu().numpy()
        self._batch.expand(name)[ids] = values.cpu().numpy()
        if name == "geom_size":
            self._update_collision_bounds(ids)
        if name in _SETCONST_INPUTS:
            self._batch.set_const(ids)

    def _update_collision_bounds(self, ids: np.ndarray) -> None:
        """Keep the broad phase's bounding sphere and box in step with new box/sphere sizes."""
        size = self._batch.expand("geom_size")[ids]
        rbound = self._batch.expand("geom_rbound")
        aabb = self._batch.expand("geom_aabb")
        for kind, radius, half in (
            (mujoco.mjtGeom.mjGEOM_BOX, lambda s: np.linalg.norm(s, axis=-1), lambda s: s),
            (
                mujoco.mjtGeom.mjGEOM_SPHERE,
                lambda s: s[..., 0],
                lambda s: np.repeat(s[..., :1], 3, -1),
            ),
        ):
            geoms = np.flatnonzero(self.model.geom_type == kind)
            rbound[np.ix_(ids, geoms)] = radius(size[:, geoms])
            aabb[np.ix_(ids, geoms, np.arange(3, 6))] = half(size[:, geoms])
