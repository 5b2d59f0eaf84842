"""The value function: an MLP on the ``critic`` observation group (asymmetric actor-critic).

The critic may see privileged state the actor does not (joint velocities, contacts, object
velocities, domain parameters). Its inputs are normalised by its own running mean/std, updated
from every rollout's observations (the actor keeps the checkpoint's fixed normaliser).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robolearn.policies.bc import mlp
from robolearn.spec import ObsSpec


class RunningMeanStd(nn.Module):
    """Per-dimension running mean and variance (parallel Welford merge), as buffers.

    ``std`` is floored at ``min_std`` and the output clipped to ``±clip``, so that a term that
    is constant so far (a domain parameter at its default) does not blow up once it moves.
    """

    def __init__(self, dim: int, min_std: float = 1e-2, clip: float = 10.0):
        super().__init__()
        self.min_std, self.clip = min_std, clip
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        n = x.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        w = (n / total).float()
        delta = batch_mean - self.mean
        self.mean += delta * w
        self.var.copy_(self.var * (1 - w) + batch_var * w + delta.square() * w * (1 - w))
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = self.var.sqrt().clamp_min(self.min_std)
        return ((x - self.mean) / std).clamp(-self.clip, self.clip)


class Critic(nn.Module):
    def __init__(
        self,
        spec: ObsSpec,
        keys: tuple[str, ...] | None = None,
        hidden_dims: tuple[int, ...] = (256, 256, 256),
        activation: str = "mish",
    ):
        super().__init__()
        self.keys = tuple(keys or spec.groups.get("critic") or spec.groups["policy"])
        unknown = [k for k in self.keys if k not in spec.terms]
        if unknown:
            raise KeyError(f"critic observation key {unknown[0]!r} is not in the env's spec")
        self.obs_dim = sum(math.prod(spec.terms[k].shape) for k in self.keys)
        self.normalizer = RunningMeanStd(self.obs_dim)
        self.net = mlp(self.obs_dim, tuple(hidden_dims), 1, activation, 0.0)

    def flatten(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{key: (N, *shape)}`` (the ``critic`` group) -> ``(N, obs_dim)`` raw."""
        return torch.cat([obs[k].float().flatten(1) for k in self.keys], dim=-1)

    def forward(self, flat_obs: torch.Tensor) -> torch.Tensor:
        """Values ``(N,)`` of flat raw critic observations."""
        return self.net(self.normalizer(flat_obs)).squeeze(-1)
