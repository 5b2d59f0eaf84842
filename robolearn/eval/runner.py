"""Receding-horizon execution of action chunks in N parallel envs, one action queue per env.

A chunking policy predicts ``horizon`` actions from the last ``n_obs_steps`` observations and
executes the first ``n_action_steps`` of them before planning again. In a batched env the worlds
start and end episodes at different times, so each world keeps its own observation history and
action queue; a step plans only for the worlds whose queue ran dry, in one batched
``predict_action`` call, which costs a fraction of planning for all of them every step.
"""

from __future__ import annotations

from typing import Protocol

import torch

from robolearn.policies.base import PolicyConfig
from robolearn.spec import ObsSpec


class ChunkPolicy(Protocol):
    """What evaluation needs of a policy (every :class:`~robolearn.policies.Policy` is one)."""

    cfg: PolicyConfig
    spec: ObsSpec
    obs_keys: tuple[str, ...]

    def predict_action(self, obs: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def reset(self) -> None: ...


class ChunkedPolicyRunner:
    def __init__(self, policy: ChunkPolicy, num_envs: int, device: str | torch.device):
        self.policy, self.num_envs, self.device = policy, num_envs, torch.device(device)
        self.n_obs_steps = policy.cfg.n_obs_steps
        self.n_action_steps = policy.cfg.n_action_steps
        self.history: dict[str, torch.Tensor] = {}  # key -> (N, n_obs_steps, *shape)
        self.queue: torch.Tensor | None = None  # (N, n_action_steps, A)
        self.remaining = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.fresh = torch.ones(num_envs, dtype=torch.bool, device=self.device)

    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Actions (N, A) for the current ``policy``-group observations ``{key: (N, *shape)}``."""
        self._observe(obs)
        need = (self.remaining == 0).nonzero().squeeze(-1)
        if need.numel():
            self._plan(need)
        step = self.n_action_steps - self.remaining
        actions = self.queue[torch.arange(self.num_envs, device=self.device), step]
        self.remaining -= 1
        return actions

    def reset(self, env_ids: torch.Tensor) -> None:
        """Forget history and queued actions of worlds that start a new episode."""
        env_ids = env_ids.to(self.device)
        self.fresh[env_ids] = True
        self.remaining[env_ids] = 0

    def _observe(self, obs: dict[str, torch.Tensor]) -> None:
        for key in self.policy.obs_keys:
            x = obs[key].to(self.device)
            if key not in self.history:
                self.history[key] = x.unsqueeze(1).repeat_interleave(self.n_obs_steps, 1)
                continue
            h = torch.cat([self.history[key][:, 1:], x.unsqueeze(1)], dim=1)
            # A new episode has no past: its window is its first observation repeated, as in
            # the training windows padded at episode starts.
            h[self.fresh] = x[self.fresh].unsqueeze(1)
            self.history[key] = h
        self.fresh[:] = False

    def _plan(self, env_ids: torch.Tensor) -> None:
        window = {k: h[env_ids] for k, h in self.history.items()}
        chunk = self.policy.predict_action(window).to(self.device)
        if (
            chunk.ndim != 3
            or chunk.shape[0] != len(env_ids)
            or chunk.shape[1] < self.n_action_steps
        ):
            raise ValueError(
                f"predict_action returned shape {tuple(chunk.shape)} for {len(env_ids)} envs; "
                f"expected (B, horizon >= {self.n_action_steps}, action_dim)"
            )
        if self.queue is None:
            self.queue = chunk.new_zeros(self.num_envs, self.n_action_steps, chunk.shape[2])
        self.queue[env_ids] = chunk[:, : self.n_action_steps]
        self.remaining[env_ids] = self.n_action_steps
