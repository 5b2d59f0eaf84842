"""DPPO (Ren et al., "Diffusion Policy Policy Optimization"): PPO on the denoising chain.

A diffusion policy samples a chunk by ``N`` deterministic steps from a Gaussian latent (``edm``:
first-order probability-flow ODE steps; ``diffusion``: DDIM, η = 0). DPPO reads the last ``K'``
of them as Gaussian actions of an inner MDP,

    a^{i+1} ~ N(μθ(a^i, s, i), σ²),   μθ = the sampler's own step with the fine-tuned network,

of which only the final clean chunk is executed (its first ``n_action_steps`` actions, in env
units, clipped to the action bounds) and rewarded. PPO (:mod:`robolearn.rl.ppo`) then applies
per fine-tuned step, with the chain's log-probabilities recomputed under the current weights.

Choices, and why:

* Only the last ``K'`` steps (``ft_steps``) are fine-tuned, by a trainable copy of the network
  (``policy.finetuned``); the earlier steps keep the frozen original and stay deterministic, so
  ``K' = 0`` is exactly the base sampler. The observation encoder and normaliser stay frozen.
* σ: the sampler's steps have no variance of their own (ODE / DDIM η = 0), so exploration is
  the floor alone: ``sampling_std_min`` (0.1 in normalised action units, where actions span
  [-1, 1]) when sampling, ``max(sampling_std_min, likelihood_std_min)`` when scoring. Sampled
  noise is clipped to ``±noise_clip`` standard deviations, so no chunk strays far from the mean.
* Log-probabilities are clamped to ``log_prob_clamp`` (default [-5, 2]) **per element**, then
  summed over horizon × action dims into one log-prob per step (``log_prob`` is ``(B, K')``).
  Per element, because that is where the bound means something: with σ = 0.1 an element's
  log-density is at most 1.38 and, at the ±3σ noise clip, -3.12, so a chain scored under the
  weights that sampled it is never clamped; the clamp only bites once the mean has moved more
  than ~3.6σ from a stored sample, and then cuts that element's gradient instead of letting one
  outlier dominate the update. A per-step sum has ~H·A times that range and would be clamped
  always or never.
* Clip ε grows from ``clip_eps_start`` (the noisiest fine-tuned step) to ``clip_eps_end`` (the
  last) along DPPO's exponential curve; the advantage of step ``i`` is weighted by
  ``gamma_denoise^(K'−1−i)``: the noisier a step, the less of the outcome it is credited with.
* No entropy bonus (the std is fixed): :meth:`log_prob` returns ``None`` for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from robolearn.policies.base import Policy
from robolearn.policies.chain import DenoisingChain
from robolearn.rl.actor import ObsWindow
from robolearn.utils.config import from_dict

if TYPE_CHECKING:
    from robolearn.rl.ppo import RLConfig


@dataclass(frozen=True)
class DPPOConfig:
    """The actor's settings: ``rl.actor`` in ``conf/rl/dppo.yaml`` (the trainer's — learning
    rates, γ, critic warm-up — are the ``rl`` keys around it)."""

    ft_steps: int | None = None  # K': the last denoising steps fine-tuned; None = all of them
    sampling_std_min: float = 0.1  # exploration std (normalised action units)
    likelihood_std_min: float = 0.1  # floor of the std the log-probabilities are scored with
    noise_clip: float = 3.0  # sampled noise clipped to ± this many stds
    log_prob_clamp: tuple[float, float] = (-5.0, 2.0)  # per element (module docstring)
    clip_eps_start: float = 0.001  # PPO clip of the noisiest fine-tuned step ...
    clip_eps_end: float = 0.01  # ... growing to this at the last step
    clip_eps_rate: float = 3.0  # curvature of that growth (0: linear)
    gamma_denoise: float = 0.99  # advantage weight of step i: gamma_denoise^(K'-1-i)

    def __post_init__(self):
        if self.ft_steps is not None and self.ft_steps < 0:
            raise ValueError(f"rl.actor.ft_steps must be >= 0 or null, got {self.ft_steps}")
        for key in ("sampling_std_min", "likelihood_std_min", "noise_clip", "clip_eps_start"):
            if not getattr(self, key) > 0:
                raise ValueError(f"rl.actor.{key} must be positive, got {getattr(self, key)}")
        if not self.clip_eps_start <= self.clip_eps_end:
            raise ValueError(
                f"need rl.actor.clip_eps_start <= clip_eps_end, got "
                f"{self.clip_eps_start}, {self.clip_eps_end}"
            )
        low, high = self.log_prob_clamp
        if not low < high:
            raise ValueError(f"rl.actor.log_prob_clamp must be [low, high], got {low}, {high}")
        if not 0 < self.gamma_denoise <= 1:
            raise ValueError(f"rl.actor.gamma_denoise must be in (0, 1], got {self.gamma_denoise}")


def clip_schedule(steps: int, start: float, end: float, rate: float) -> torch.Tensor:
    """(steps,) clip ranges from ``start`` to ``end``: ``start + (end − start)·g(i/(steps−1))``
    with ``g(t) = (e^{rate·t} − 1)/(e^{rate} − 1)`` (linear at rate 0); a single step gets
    ``end``, as it is the last."""
    if steps <= 1:
        return torch.full((steps,), end)
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    growth = t if rate == 0 else torch.expm1(rate * t) / math.expm1(rate)
    return (start + (end - start) * growth).float()


class DiffusionChainActor(nn.Module):
    """An ``edm`` or DDIM ``diffusion`` policy as an :class:`~robolearn.rl.actor.RLActor`.

    ``policy`` is the policy split for fine-tuning (``cfg.finetuned_steps = K'``); build one with
    :meth:`from_policy`. Only ``policy.finetuned`` has trainable parameters.
    """

    def __init__(self, policy: Policy, cfg: DPPOConfig):
        super().__init__()
        self.policy, self.cfg = policy, cfg
        self.num_steps = policy.num_denoising_steps
        self.ft_steps = policy.cfg.finetuned_steps
        self.first_finetuned = self.num_steps - self.ft_steps
        self.n_obs_steps = policy.cfg.n_obs_steps
        self.n_exec = policy.cfg.n_action_steps
        self.obs_keys = tuple(policy.obs_keys)
        self.likelihood_std = max(cfg.sampling_std_min, cfg.likelihood_std_min)
        policy.requires_grad_(False)
        if policy.finetuned is not None:
            policy.finetuned.requires_grad_(True)
        clip = clip_schedule(self.ft_steps, cfg.clip_eps_start, cfg.clip_eps_end, cfg.clip_eps_rate)
        weights = cfg.gamma_denoise ** torch.arange(self.ft_steps - 1, -1, -1, dtype=torch.float64)
        self.register_buffer("_clip_eps", clip, persistent=False)
        self.register_buffer("_advantage_weights", weights.float(), persistent=False)

    @classmethod
    def from_policy(cls, policy: Policy, cfg: DPPOConfig) -> DiffusionChainActor:
        """The actor for a pretrained diffusion policy (left unchanged): its last ``ft_steps``
        steps get a trainable copy of the network. A ``diffusion`` policy needs the DDIM sampler
        (its config refuses ``finetuned_steps`` with DDPM, whose steps draw their own noise)."""
        if not isinstance(policy, DenoisingChain):
            raise TypeError(
                f"DPPO fine-tunes 'edm' and 'diffusion' (ddim) policies, got {policy.name!r}"
            )
        steps = policy.num_denoising_steps if cfg.ft_steps is None else cfg.ft_steps
        if steps > policy.num_denoising_steps:
            raise ValueError(
                f"rl.actor.ft_steps={steps} exceeds the policy's {policy.num_denoising_steps} "
                "denoising steps"
            )
        return cls(policy.split_for_finetuning(steps), cfg)

    # --- the RLActor contract -------------------------------------------------------------------
    @property
    def clip_eps(self) -> torch.Tensor:
        return self._clip_eps

    @property
    def advantage_weights(self) -> torch.Tensor:
        return self._advantage_weights

    @torch.no_grad()
    def act(
        self, obs: ObsWindow, deterministic: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the chain; ``deterministic`` takes every step's mean, which is the exported
        policy's sampler. Stores the fine-tuned steps' latents ``"chain"``
        ``(B, K'+1, horizon, A)`` (the input of the first fine-tuned step, then each step's
        output, the last one clipped like the policy's chunk) and ``"log_prob"`` ``(B, K')``."""
        policy, clip = self.policy, self.cfg.noise_clip
        cond = policy.encode(obs)
        x = policy.initial_latent(cond.shape[0], cond.device)
        for i in range(self.first_finetuned):  # the frozen steps: the base sampler's
            x = policy.denoising_step(x, i, cond, policy.network)
        chain, means = [x], []
        for i in range(self.first_finetuned, self.num_steps):
            mean = policy.denoising_step(x, i, cond, policy.finetuned)
            if deterministic:
                x = mean
            else:
                x = mean + self.cfg.sampling_std_min * torch.randn_like(mean).clamp(-clip, clip)
            chain.append(x)
            means.append(mean)
        chain[-1] = policy.finish(chain[-1])
        chain_t = torch.stack(chain, dim=1)
        log_prob = self._chain_log_prob(_stack_steps(means, chain_t), chain_t[:, 1:])
        actions = policy.normalizer.unnormalize("action", chain[-1][:, : self.n_exec])
        actions = actions.clamp(policy.spec.action.low, policy.spec.action.high)
        return actions, {"chain": chain_t, "log_prob": log_prob}

    def log_prob(
        self, obs: ObsWindow, stored: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        """``(B, K')`` log-probabilities of the stored chain's steps under the current weights;
        per step one network call on the whole batch, as in :meth:`act`, so that unchanged
        weights give back ``stored["log_prob"]`` exactly."""
        policy, chain = self.policy, stored["chain"]
        with torch.no_grad():
            cond = policy.encode(obs)
        means = [
            policy.denoising_step(chain[:, j], self.first_finetuned + j, cond, policy.finetuned)
            for j in range(self.ft_steps)
        ]
        return self._chain_log_prob(_stack_steps(means, chain), chain[:, 1:]), None

    def export_policy(self) -> Policy:
        """The fine-tuned policy in the imitation format (one network when all steps are
        fine-tuned; else the original for the early steps and ``finetuned`` for the last)."""
        return self.policy.merged()

    # --- internals --------------------------------------------------------------------------------
    def _chain_log_prob(self, means: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """Gaussian log-density per element, clamped, summed per step: (B, K', H, A) -> (B, K')."""
        std = self.likelihood_std
        z = (samples - means) / std
        log_prob = -0.5 * z.square() - math.log(std) - 0.5 * math.log(2 * math.pi)
        return log_prob.clamp(*self.cfg.log_prob_clamp).sum(dim=(-2, -1))


def _stack_steps(means: list[torch.Tensor], chain: torch.Tensor) -> torch.Tensor:
    """The per-step means as ``(B, K', horizon, A)``, also for ``K' = 0``."""
    if means:
        return torch.stack(means, dim=1)
    return chain.new_zeros(chain.shape[0], 0, *chain.shape[2:])


def make_actor(policy: Policy, cfg: RLConfig) -> DiffusionChainActor:
    """The trainer's factory (:func:`robolearn.rl.build.make_actor`): ``cfg.actor`` holds the
    :class:`DPPOConfig` keys."""
    return DiffusionChainActor.from_policy(policy, from_dict(DPPOConfig, cfg.actor, "rl.actor."))
