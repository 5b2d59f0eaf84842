"""Gymnasium views of :class:`VecEnv`: a ``gymnasium.vector.VectorEnv`` and a one-world ``gymnasium.Env``.

Observations are one observation group (``policy`` unless told otherwise) as a ``Dict`` of
float32 ``Box`` terms, numpy on the CPU; actions are ``Box(-1, 1)`` float32. The core env resets
finished worlds in the same step, so the vector view declares ``AutoresetMode.SAME_STEP`` and lays
out its infos exactly as ``gymnasium.vector.SyncVectorEnv`` does in that mode:

* ``infos["final_obs"]``: object array with the last observation of each finished world (``None``
  elsewhere), ``infos["_final_obs"]`` the mask of finished worlds;
* ``infos["final_info"]``: the final step's info of the finished worlds (``success``, ``diverged``
  and the ``episode`` statistics ``return``/``length``/``success``), masked by ``_final_info``;
* top-level ``success``/``diverged`` are masked to the worlds that did not finish (a finished
  world's top-level info is that of its new episode's reset, which has none). Statistics live in
  ``final_info["episode"]`` so that gymnasium's vector ``RecordEpisodeStatistics`` can still add
  its top-level ``episode``.

Seeding: one torch generator drives all worlds, so ``reset(seed=s)`` reproduces the whole batch
but is not the same as seeding world ``i`` with ``s + i`` as ``SyncVectorEnv`` does.

Importing this module registers ``robolearn/<Task>-v0`` ids (e.g. ``robolearn/Reach-v0``) for
``gymnasium.make`` (one world) and ``gymnasium.make_vec`` (the batched env, no subprocesses).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from robolearn.envs.vec_env import VecEnv
from robolearn.spec import ObsSpec
from robolearn.tasks import TASKS

NumpyObs = dict[str, np.ndarray]


def group_space(spec: ObsSpec, group: str) -> spaces.Dict:
    """The unbatched ``Dict`` space of one observation group (terms are unbounded float32)."""
    if group not in spec.groups:
        raise ValueError(f"unknown observation group {group!r}; choose from {sorted(spec.groups)}")
    return spaces.Dict(
        {
            name: spaces.Box(
                -np.inf, np.inf, spec.terms[name].shape, np.dtype(spec.terms[name].dtype)
            )
            for name in spec.groups[group]
        }
    )


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A fresh numpy copy: gymnasium users keep what they are given (replay buffers, video), so a
    returned array must never alias a tensor the env will write again."""
    return tensor.detach().to("cpu", copy=True).numpy()


def _masked(info: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    """Add gymnasium's ``_key`` mask beside every key, recursively, as ``VectorEnv._add_info`` does."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        out[key] = _masked(value, mask) if isinstance(value, dict) else value
        out[f"_{key}"] = mask.copy()
    return out


def _to_action(action: Any, device: torch.device) -> torch.Tensor:
    """Numpy (or anything array-like) to a torch action; float64 is narrowed to float32, other
    dtypes pass through so that :meth:`VecEnv.step` rejects them with its own message."""
    tensor = torch.as_tensor(np.asarray(action), device=device)
    return tensor.float() if tensor.is_floating_point() else tensor


def _check_options(options: dict[str, Any] | None) -> None:
    if options:
        raise ValueError(f"reset options are not supported, got {sorted(options)}")


class GymnasiumVectorEnv(gymnasium.vector.VectorEnv):
    """``gymnasium.vector.VectorEnv`` over a :class:`VecEnv` (same-step autoreset, numpy I/O)."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, env: VecEnv, group: str = "policy"):
        self.env, self.group = env, group
        self.num_envs = env.num_envs
        self.single_observation_space = group_space(env.spec, group)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.single_action_space = spaces.Box(-1.0, 1.0, (env.action_dim,), np.float32)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._terms = tuple(self.single_observation_space.keys())

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NumpyObs, dict[str, Any]]:
        if seed is not None and not isinstance(seed, int | np.integer):
            raise ValueError(
                f"seed must be an int or None (one generator drives every world), got {seed!r}"
            )
        _check_options(options)
        seed = None if seed is None else int(seed)
        super().reset(seed=seed)
        obs, _ = self.env.reset(seed=seed)
        return self._numpy_obs(obs[self.group]), {}

    def step(
        self, actions: Any
    ) -> tuple[NumpyObs, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(
            _to_action(actions, self.env.device)
        )
        done = _to_numpy(terminated | truncated)
        step_info = {"success": _to_numpy(info["success"]), "diverged": _to_numpy(info["diverged"])}
        # Like SyncVectorEnv: a finished world's top-level info is its reset's (empty) info.
        infos = {} if done.all() else _masked(step_info, ~done)
        if done.any():
            final = self._numpy_obs(info["final_obs"][self.group])
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = {name: value[i] for name, value in final.items()}
            infos |= {"final_obs": final_obs, "_final_obs": done}
            final_info = step_info | {"episode": self._episode_stats(info["episode"])}
            infos |= {"final_info": _masked(final_info, done), "_final_info": done.copy()}
        return (
            self._numpy_obs(obs[self.group]),
            _to_numpy(reward),
            _to_numpy(terminated),
            _to_numpy(truncated),
            infos,
        )

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()

    def _numpy_obs(self, group: dict[str, torch.Tensor]) -> NumpyObs:
        return {name: _to_numpy(group[name]) for name in self._terms}

    def _episode_stats(self, episode: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Scatter the core env's per-finished-world statistics into full-batch arrays."""
        ids = _to_numpy(episode["env_ids"])
        stats = {
            "return": np.zeros(self.num_envs, np.float32),
            "length": np.zeros(self.num_envs, np.int64),
            "success": np.zeros(self.num_envs, bool),
        }
        for key, array in stats.items():
            array[ids] = _to_numpy(episode[key])
        return stats


class GymnasiumEnv(gymnasium.Env[NumpyObs, np.ndarray]):
    """One world as a ``gymnasium.Env``: ``step`` returns the episode's last observation when it
    ends, and the caller resets, as the single-env API expects."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, task: str = "reach", group: str = "policy", **vec_env_kwargs: Any):
        self.env = VecEnv(task, 1, **vec_env_kwargs)
        self.group = group
        self.observation_space = group_space(self.env.spec, group)
        self.action_space = spaces.Box(-1.0, 1.0, (self.env.action_dim,), np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NumpyObs, dict[str, Any]]:
        _check_options(options)
        super().reset(seed=seed)
        obs, _ = self.env.reset(seed=seed)
        return self._numpy_obs(obs), {}

    def step(self, action: Any) -> tuple[NumpyObs, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(
            _to_action(action, self.env.device).reshape(1, -1)
        )
        step_info: dict[str, Any] = {
            "success": bool(info["success"][0]),
            "diverged": bool(info["diverged"][0]),
        }
        if "final_obs" in info:  # the core env already started the next episode
            obs = info["final_obs"]
            step_info["episode"] = {
                k: info["episode"][k][0].item() for k in ("return", "length", "success")
            }
        return (
            self._numpy_obs(obs),
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            step_info,
        )

    def close(self) -> None:
        self.env.close()

    def _numpy_obs(self, obs: dict[str, dict[str, torch.Tensor]]) -> NumpyObs:
        return {name: _to_numpy(obs[self.group][name][0]) for name in self.observation_space}


def make_vector_env(
    num_envs: int = 1, task: str = "reach", group: str = "policy", **vec_env_kwargs: Any
) -> GymnasiumVectorEnv:
    """``gymnasium.make_vec``'s entry point: the batched env, not N copies of a single one."""
    return GymnasiumVectorEnv(VecEnv(task, num_envs, **vec_env_kwargs), group)


def gym_id(task: str) -> str:
    """``"pick_place"`` -> ``"robolearn/PickPlace-v0"``."""
    return "robolearn/" + "".join(part.title() for part in task.split("_")) + "-v0"


def register_envs() -> None:
    """Register every task in :data:`robolearn.tasks.TASKS` with gymnasium (idempotent)."""
    for task in TASKS:
        if gym_id(task) not in gymnasium.registry:
            gymnasium.register(
                gym_id(task),
                entry_point=f"{__name__}:GymnasiumEnv",
                vector_entry_point=f"{__name__}:make_vector_env",
                kwargs={"task": task},
            )


register_envs()
