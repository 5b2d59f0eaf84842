"""rsl_rl (>= 3) view of :class:`VecEnv`, so that rsl_rl's own ``OnPolicyRunner`` trains on our tasks.

Each observation group becomes one flat float32 tensor (its terms concatenated in ``ObsSpec``
order) in a ``TensorDict``; the runner's ``obs_groups`` picks them, e.g.
``{"actor": ["policy"], "critic": ["critic"]}``. ``dones`` are ``terminated | truncated`` and
``extras["time_outs"]`` the truncations, so that PPO bootstraps values at time limits.
``extras["log"]["Episode/success"]`` carries the success flags of the episodes that ended.

rsl_rl is an optional extra (``pip install robolearn[rsl]``); only this module imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from robolearn.envs.vec_env import Obs, VecEnv

try:
    from rsl_rl.env import VecEnv as RslVecEnv
    from tensordict import TensorDict
except ImportError as exc:
    raise ImportError(
        "robolearn.envs.rsl_rl_adapter needs rsl-rl-lib>=3: pip install 'robolearn[rsl]'"
    ) from exc


class RslRlVecEnv(RslVecEnv):
    """Wrap a :class:`VecEnv`; ``groups`` chooses the observation groups (all by default)."""

    def __init__(self, env: VecEnv, groups: Sequence[str] | None = None):
        self.env = env
        self.groups = tuple(groups) if groups is not None else tuple(env.spec.groups)
        unknown = [g for g in self.groups if g not in env.spec.groups]
        if unknown:
            raise ValueError(
                f"unknown observation group {unknown[0]!r}; choose from {sorted(env.spec.groups)}"
            )
        self.num_envs = env.num_envs
        self.num_actions = env.action_dim
        self.max_episode_length = env.max_episode_length
        self.device = env.device
        self.cfg = dataclasses.asdict(env.task.cfg)
        # The runner never resets: it asks for the current observations, so start episodes here.
        obs, _ = env.reset()
        self._obs = self._flatten(obs)

    @property
    def episode_length_buf(self) -> torch.Tensor:
        return self.env.episode_length

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        # ``learn(init_at_random_ep_len=True)`` assigns this to spread time-outs across worlds;
        # write in place so that the core env's truncation sees it.
        self.env.episode_length.copy_(value)

    def get_observations(self) -> TensorDict:
        return self._obs

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self._obs = self._flatten(obs)
        extras: dict = {"time_outs": truncated}
        if "episode" in info:
            extras["log"] = {"Episode/success": info["episode"]["success"].float()}
        return self._obs, reward, (terminated | truncated).long(), extras

    def close(self) -> None:
        self.env.close()

    def _flatten(self, obs: Obs) -> TensorDict:
        flat = {
            group: torch.cat(
                [
                    obs[group][name].reshape(self.num_envs, -1).float()
                    for name in self.env.spec.groups[group]
                ],
                dim=-1,
            )
            for group in self.groups
        }
        return TensorDict(flat, batch_size=[self.num_envs], device=self.device)
