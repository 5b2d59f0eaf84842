"""``DenoisingChain``: a diffusion policy's sampler as a chain of steps, each run by one network.

Both diffusion policies (``edm``'s probability-flow ODE, ``diffusion``'s DDIM) sample a chunk by
drawing a Gaussian latent and applying ``num_denoising_steps`` steps (deterministic, except
DDPM's, which draw their own noise). Writing the sampler as that loop lets DPPO
(:mod:`robolearn.rl.dppo`) treat each step as a Gaussian action around the same step, and lets a fine-tuned policy keep its result in the imitation format: with
``finetuned_steps = K'`` in the policy's config the last ``K'`` steps run ``finetuned``, a
fine-tuned copy of the network, and the earlier ones the original. ``finetuned_steps = 0`` (the
default) builds no copy, so existing checkpoints load and sample exactly as before.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import abstractmethod
from typing import ClassVar, TypeVar

import torch
from torch import nn

from robolearn.policies.denoisers import build_denoiser

Chain = TypeVar("Chain", bound="DenoisingChain")


class DenoisingChain:
    """Mixin for a :class:`~robolearn.policies.base.Policy` whose config has ``finetuned_steps``.

    The policy names its network attribute in ``network_name`` and builds ``self.finetuned``
    (``build_network()`` when ``cfg.finetuned_steps > 0``, else ``None``) in its ``__init__``.
    """

    network_name: ClassVar[str]
    finetuned: nn.Module | None

    # --- what a policy defines --------------------------------------------------------------
    @property
    @abstractmethod
    def num_denoising_steps(self) -> int:
        """Steps of the sampler."""

    def build_network(self) -> nn.Module:
        """A freshly initialised network of the architecture the config's ``denoiser`` names
        (its ``unet`` / ``transformer`` / ``mlp`` settings), for the policy's chunks."""
        cfg = self.cfg  # type: ignore[attr-defined]  # the Policy's
        return build_denoiser(
            cfg.denoiser,
            cfg.unet,
            cfg.transformer,
            cfg.mlp,
            self.action_dim,  # type: ignore[attr-defined]
            cfg.horizon,
            self.obs_feature_dim,  # type: ignore[attr-defined]
        )

    @abstractmethod
    def initial_latent(self, batch: int, device: torch.device) -> torch.Tensor:
        """(B, horizon, A) Gaussian start of the chain, drawn from the global torch RNG."""

    @abstractmethod
    def denoising_step(
        self, x: torch.Tensor, i: int, cond: torch.Tensor, network: nn.Module
    ) -> torch.Tensor:
        """The sampler's step ``i`` from latent ``x`` (B, horizon, A) with ``network``."""

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The chain's last latent as the normalised chunk (identity by default)."""
        return x

    # --- shared -------------------------------------------------------------------------------
    @property
    def network(self) -> nn.Module:
        return getattr(self, self.network_name)

    def step_network(self, i: int) -> nn.Module:
        """The network that runs step ``i``: ``finetuned`` for the last ``finetuned_steps``."""
        first_finetuned = self.num_denoising_steps - self.cfg.finetuned_steps
        return self.finetuned if i >= first_finetuned else self.network

    @torch.no_grad()
    def sample_normalized(self, obs_features: torch.Tensor) -> torch.Tensor:
        x = self.initial_latent(obs_features.shape[0], obs_features.device)
        for i in range(self.num_denoising_steps):
            x = self.denoising_step(x, i, obs_features, self.step_network(i))
        return self.finish(x)

    def split_for_finetuning(self: Chain, steps: int) -> Chain:
        """A copy whose last ``steps`` steps run ``finetuned``, a copy of the network that
        currently runs them. A policy already split keeps its ``finetuned`` for the same
        ``steps``; any other split would need two fine-tuned networks, so it raises."""
        current = self.cfg.finetuned_steps
        if current not in (0, steps):
            raise ValueError(
                f"policy {self.name!r} already fine-tunes its last {current} denoising steps; "
                f"fine-tune {current} again, or all {self.num_denoising_steps} of a merged policy, "
                f"not {steps}"
            )
        split = copy.deepcopy(self)
        split.cfg = dataclasses.replace(self.cfg, finetuned_steps=steps)
        split.cfg.validate()
        if current == 0:
            split.finetuned = copy.deepcopy(split.network) if steps else None
        return split

    def merged(self: Chain) -> Chain:
        """The same sampler with one network where every step is fine-tuned (a copy; ``self``
        when some steps still run the original network): smaller to save and deploy."""
        if self.cfg.finetuned_steps < self.num_denoising_steps:
            return self
        merged = copy.deepcopy(self)
        setattr(merged, self.network_name, merged.finetuned)
        merged.finetuned = None
        merged.cfg = dataclasses.replace(self.cfg, finetuned_steps=0)
        return merged
