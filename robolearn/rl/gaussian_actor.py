"""``GaussianActor``: a BC policy as a PPO actor (``K = 1``, ``n_exec = 1``).

The actor *is* the pretrained :class:`~robolearn.policies.bc.BCPolicy` — same
:class:`~robolearn.encoders.ObservationEncoder`, same normaliser (the checkpoint's, frozen), same
weights — read as a diagonal Gaussian over the **normalised** action:

* ``gaussian`` head: the policy's own mean and state-dependent std.
* ``deterministic`` head: the policy's output is the mean; a state-independent log-std
  (one per action dim, initialised to ``log(init_std)``) is learned beside it.

A chunked policy (``horizon > 1``) re-plans every step: the Gaussian is over the first action
of its chunk, and the exported policy executes one action per plan (``n_action_steps = 1``),
which is what RL trained. Env actions are the sample un-normalised and clipped to the action
bounds; log-probabilities are of the unclipped normalised sample (stored as ``"action_n"``).
The std is floored at ``min_std`` (normalised units): a BC Gaussian fitted on few demos is
often nearly deterministic (std ~ 0.01), which gives PPO no exploration and makes every ratio
explode at the first update. The exported policy acts with the mean, so the floor does not
change evaluation.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from robolearn.policies.base import Batch, Policy
from robolearn.policies.bc import BCPolicy
from robolearn.rl.actor import ObsWindow


class GaussianActor(nn.Module):
    n_exec = 1

    def __init__(
        self, policy: BCPolicy, init_std: float = 0.5, clip: float = 0.2, min_std: float = 0.1
    ):
        super().__init__()
        if not isinstance(policy, BCPolicy):
            raise TypeError(
                f"GaussianActor needs a 'bc' policy, got {getattr(policy, 'name', type(policy))!r}"
            )
        if policy.cfg.n_action_steps != 1:  # re-plan every step (see the module docstring)
            policy.cfg = dataclasses.replace(policy.cfg, n_action_steps=1)
        self.policy = policy
        self.clip, self.min_std = float(clip), float(min_std)
        self.n_obs_steps = policy.cfg.n_obs_steps
        self.obs_keys = tuple(policy.obs_keys)
        self.action_dim = policy.action_dim
        self.learned_std = policy.cfg.head == "deterministic"
        if self.learned_std:
            if not init_std > 0:
                raise ValueError(f"init_std must be positive, got {init_std}")
            self.log_std = nn.Parameter(torch.full((self.action_dim,), math.log(init_std)))
        low, high = policy.spec.action.low, policy.spec.action.high
        self.register_buffer("_low", torch.as_tensor(low, dtype=torch.float32), persistent=False)
        self.register_buffer("_high", torch.as_tensor(high, dtype=torch.float32), persistent=False)

    # --- the RLActor contract -------------------------------------------------------------------
    @property
    def clip_eps(self) -> torch.Tensor:
        return torch.full((1,), self.clip)

    @property
    def advantage_weights(self) -> torch.Tensor:
        return torch.ones(1)

    def distribution(self, obs: ObsWindow) -> Normal:
        """Gaussian over the normalised first action of the chunk, ``(B, A)``."""
        out = self.policy(self.policy.encode(obs))
        if isinstance(out, Normal):
            return Normal(out.mean[:, 0], out.stddev[:, 0].clamp_min(self.min_std))
        mean = out[:, 0]
        return Normal(mean, self.log_std.exp().clamp_min(self.min_std).expand_as(mean))

    def act(
        self, obs: ObsWindow, deterministic: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        dist = self.distribution(obs)
        action_n = dist.mean if deterministic else dist.sample()
        log_prob = dist.log_prob(action_n).sum(-1, keepdim=True)
        action = self.policy.normalizer.unnormalize("action", action_n)
        action = torch.maximum(torch.minimum(action, self._high), self._low)
        stored = {"action_n": action_n, "log_prob": log_prob, "mean": dist.mean, "std": dist.stddev}
        return action.unsqueeze(1), stored

    def log_prob(
        self, obs: ObsWindow, stored: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        dist = self.distribution(obs)
        return dist.log_prob(stored["action_n"]).sum(-1, keepdim=True), dist.entropy().sum(-1)

    def kl_to(self, reference: GaussianActor, obs: ObsWindow) -> torch.Tensor:
        """``KL(π ‖ π_ref)`` per sample ``(B,)``, in closed form."""
        with torch.no_grad():
            ref = reference.distribution(obs)
        return kl_divergence(self.distribution(obs), ref).sum(-1)

    def demo_loss(self, batch: Batch) -> torch.Tensor:
        """BC loss of the policy on a batch of demonstration windows."""
        loss, _ = self.policy.compute_loss(batch)
        return loss

    def export_policy(self) -> Policy:
        return self.policy
