"""Execution of action chunks in N parallel envs, each world with its own history and plans.

A chunking policy predicts ``horizon`` actions from the last ``n_obs_steps`` observations. Two
ways to execute them (``chunking``), the same two the real-robot control loop offers, so that a
deployment mode can be evaluated in simulation first:

* ``receding``: execute the first ``n_action_steps`` of a chunk, then plan again. In a batched env
  the worlds start and end episodes at different times, so each world keeps its own action queue;
  a step plans only for the worlds whose queue ran dry, in one batched ``predict_action`` call.
* ``ensemble``: ACT's temporal ensembling: plan for every world every step and execute the
  weighted mean of every live chunk's prediction for this step, weights ``exp(-m · i)`` with
  ``i = 0`` the oldest chunk (:func:`ensemble_weights`). ``horizon / n_action_steps`` times the
  planning of ``receding``; smoother actions.
"""

from __future__ import annotations

from typing import Protocol

import torch

from robolearn.policies.base import PolicyConfig
from robolearn.spec import ObsSpec

CHUNKING = ("receding", "ensemble")


def check_chunking(chunking: str, ensemble_m: float) -> None:
    """Refuse an unknown chunking or a negative ensembling rate (eval, deploy and the runner)."""
    if chunking not in CHUNKING:
        raise ValueError(f"chunking {chunking!r}: choose from {CHUNKING}")
    if ensemble_m < 0:
        raise ValueError(f"ensemble_m must be >= 0, got {ensemble_m}")


def ensemble_weights(count: torch.Tensor, m: float, horizon: int) -> torch.Tensor:
    """Temporal-ensembling weights ``(B, horizon)`` by chunk age (0: planned this step) for
    worlds holding ``count`` live chunks: ``exp(-m · i)``, ``i = 0`` the oldest live chunk, 0 for
    ages without a chunk."""
    age = torch.arange(horizon, device=count.device)
    i = (count[:, None] - 1 - age).clamp_min(0).float()
    return torch.exp(-m * i) * (age < count[:, None])


class ChunkPolicy(Protocol):
    """What evaluation needs of a policy (every :class:`~robolearn.policies.Policy` is one)."""

    cfg: PolicyConfig
    spec: ObsSpec
    obs_keys: tuple[str, ...]

    def predict_action(self, obs: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def reset(self) -> None: ...


class ChunkedPolicyRunner:
    def __init__(
        self,
        policy: ChunkPolicy,
        num_envs: int,
        device: str | torch.device,
        chunking: str = "receding",
        ensemble_m: float = 0.01,
    ):
        check_chunking(chunking, ensemble_m)
        self.policy, self.num_envs, self.device = policy, num_envs, torch.device(device)
        self.chunking, self.ensemble_m = chunking, ensemble_m
        self.n_obs_steps = policy.cfg.n_obs_steps
        # Ensembling plans every step: a chunk then serves at most `horizon` steps.
        self.n_action_steps = 1 if chunking == "ensemble" else policy.cfg.n_action_steps
        self.history: dict[str, torch.Tensor] = {}  # key -> (N, n_obs_steps, *shape)
        self.queue: torch.Tensor | None = None  # (N, n_action_steps, A)
        self.remaining = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.fresh = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        self.all_envs = torch.arange(num_envs, device=self.device)
        # ensemble: chunks[w, k] = world w's chunk planned k steps ago; live[w] = how many exist
        self.chunks: torch.Tensor | None = None  # (N, horizon, horizon, A)
        self.live = torch.zeros(num_envs, dtype=torch.long, device=self.device)

    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Actions (N, A) for the current ``policy``-group observations ``{key: (N, *shape)}``."""
        self._observe(obs)
        if self.chunking == "ensemble":
            return self._ensembled()
        need = (self.remaining == 0).nonzero().squeeze(-1)
        if need.numel():
            self._plan(need)
        step = self.n_action_steps - self.remaining
        actions = self.queue[self.all_envs, step]
        self.remaining -= 1
        return actions

    def reset(self, env_ids: torch.Tensor) -> None:
        """Forget history and queued actions of worlds that start a new episode."""
        env_ids = env_ids.to(self.device)
        self.fresh[env_ids] = True
        self.remaining[env_ids] = 0
        self.live[env_ids] = 0

    def _ensembled(self) -> torch.Tensor:
        chunk = self._predict(self.all_envs)  # (N, H, A)
        horizon = chunk.shape[1]
        if self.chunks is None:
            self.chunks = chunk.new_zeros(self.num_envs, horizon, *chunk.shape[1:])
        self.chunks = torch.cat([chunk[:, None], self.chunks[:, :-1]], dim=1)
        self.live = (self.live + 1).clamp(max=horizon)
        # The chunk planned k steps ago predicts this step at its index k.
        predictions = torch.diagonal(self.chunks, dim1=1, dim2=2).transpose(1, 2)  # (N, H, A)
        weights = ensemble_weights(self.live, self.ensemble_m, horizon)[..., None]
        return (weights * predictions).sum(1) / weights.sum(1)

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
        chunk = self._predict(env_ids)
        if self.queue is None:
            self.queue = chunk.new_zeros(self.num_envs, self.n_action_steps, chunk.shape[2])
        self.queue[env_ids] = chunk[:, : self.n_action_steps]
        self.remaining[env_ids] = self.n_action_steps

    def _predict(self, env_ids: torch.Tensor) -> torch.Tensor:
        """``(len(env_ids), horizon, A)`` chunks planned from those worlds' windows."""
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
        return chunk
