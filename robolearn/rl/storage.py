"""Rollout storage on the sim's device: ``num_steps`` decisions of ``num_envs`` worlds.

Whatever an actor asks to keep (its ``act`` output: log-probs, sampled actions or denoising
chains, ...) is stored as-is, with buffers allocated on the first insert from the shapes seen;
so the same storage serves a Gaussian actor and a diffusion chain.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class RolloutStorage:
    def __init__(self, num_steps: int, num_envs: int, device: torch.device | str):
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.num_steps, self.num_envs, self.device = num_steps, num_envs, torch.device(device)
        self.obs: dict[str, torch.Tensor] = {}  # actor windows {key: (T, N, n_obs, *shape)}
        self.stored: dict[str, torch.Tensor] = {}  # the actor's per-sample tensors (T, N, ...)
        shape = (num_steps, num_envs)
        self.critic_obs: torch.Tensor | None = None  # (T, N, D) raw
        self.rewards = torch.zeros(shape, device=self.device)
        self.dones = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.discounts = torch.ones(shape, device=self.device)
        self.values = torch.zeros(shape, device=self.device)
        self.advantages = torch.zeros(shape, device=self.device)
        self.returns = torch.zeros(shape, device=self.device)
        self.step = 0

    def _put(self, buffers: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            buf = buffers.get(key)
            if buf is None:
                buf = buffers[key] = torch.zeros(
                    (self.num_steps, *value.shape), dtype=value.dtype, device=self.device
                )
            buf[self.step] = value.detach()

    def add(
        self,
        obs: dict[str, torch.Tensor],
        critic_obs: torch.Tensor,
        stored: dict[str, torch.Tensor],
        value: torch.Tensor,
        reward: torch.Tensor,
        done: torch.Tensor,
        discount: torch.Tensor,
    ) -> None:
        if self.step >= self.num_steps:
            raise RuntimeError("rollout storage is full; call clear() first")
        self._put(self.obs, obs)
        self._put(self.stored, stored)
        if self.critic_obs is None:
            self.critic_obs = torch.zeros(
                (self.num_steps, *critic_obs.shape), device=self.device, dtype=critic_obs.dtype
            )
        self.critic_obs[self.step] = critic_obs
        self.values[self.step] = value.detach()
        self.rewards[self.step] = reward
        self.dones[self.step] = done
        self.discounts[self.step] = discount
        self.step += 1

    def clear(self) -> None:
        self.step = 0

    def minibatches(self, num_minibatches: int) -> Iterator[dict[str, object]]:
        """One epoch: the ``T·N`` samples, shuffled, in ``num_minibatches`` batches."""
        total = self.num_steps * self.num_envs
        size = total // num_minibatches
        if size < 1:
            raise ValueError(f"{total} samples cannot fill {num_minibatches} minibatches")
        perm = torch.randperm(total, device="cpu").to(self.device)

        def flat(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(total, *x.shape[2:])

        obs = {k: flat(v) for k, v in self.obs.items()}
        stored = {k: flat(v) for k, v in self.stored.items()}
        assert self.critic_obs is not None
        critic_obs, values = flat(self.critic_obs), flat(self.values)
        advantages, returns = flat(self.advantages), flat(self.returns)
        for i in range(num_minibatches):
            idx = perm[i * size : (i + 1) * size]
            yield {
                "obs": {k: v[idx] for k, v in obs.items()},
                "stored": {k: v[idx] for k, v in stored.items()},
                "critic_obs": critic_obs[idx],
                "values": values[idx],
                "advantages": advantages[idx],
                "returns": returns[idx],
            }
