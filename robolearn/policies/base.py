"""``Policy``: config + model + loss + ``predict_action``, one class per method.

Shared contract (DESIGN.md): ``compute_loss(batch) -> (loss, logs)`` on a batch from
:class:`~robolearn.data.dataset.DemoDataset`; ``predict_action(obs) -> (B, horizon, A)`` on a
window of raw observations ``{key: (B, n_obs_steps, *shape)}``, returned in the env's action
units and clipped to its bounds; ``reset()`` between episodes. Observations go through the
shared :class:`ObservationEncoder`; actions are normalised with the ``action`` entry of the
same :class:`Normalizer`, whose statistics travel in the checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from robolearn.data.normalizer import Normalizer
from robolearn.encoders import ObservationEncoder
from robolearn.spec import ObsSpec

Batch = dict[str, object]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-element losses (B, H, A) over the chunk steps whose ``action_mask`` is 1, so
    that the padding past an episode's end (a repeated last action, not a demonstrated one)
    carries no weight."""
    mask = mask.to(values)[..., None]
    return (values * mask).sum() / (mask.sum() * values.shape[-1]).clamp_min(1)


@dataclass(frozen=True)
class PolicyConfig:
    n_obs_steps: int = 2
    horizon: int = 16  # length of the predicted action chunk
    n_action_steps: int = 8  # actions executed before re-planning (receding horizon)
    obs_keys: tuple[str, ...] = ()  # empty: the spec's ``policy`` group
    # Clip normalised observation features to ±obs_clip (null: no clip). Imitation leaves it
    # off; RL fine-tuning sets it (rl.obs_clip) so that states off the demos' narrow range do not
    # feed the network features of 10^2 (min-max scales of near-constant terms), and the
    # exported checkpoint clips the same way at evaluation.
    obs_clip: float | None = None

    @property
    def data_keys(self) -> tuple[str, ...]:
        """Observation keys to load from a dataset (empty: every one the file has)."""
        return tuple(self.obs_keys)

    def validate(self) -> None:
        if self.obs_clip is not None and not self.obs_clip > 0:
            raise ValueError(f"obs_clip must be positive or null, got {self.obs_clip}")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError(
                f"need 1 <= n_action_steps <= horizon, got {self.n_action_steps}, {self.horizon}"
            )
        if self.n_obs_steps < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {self.n_obs_steps}")


class Policy(nn.Module, ABC):
    name: ClassVar[str]
    Config: ClassVar[type[PolicyConfig]] = PolicyConfig

    def __init__(self, cfg: PolicyConfig, spec: ObsSpec, normalizer: Normalizer):
        super().__init__()
        cfg.validate()
        if "action" not in normalizer.keys:
            raise KeyError("the normalizer has no 'action' statistics")
        self.cfg, self.spec = cfg, spec
        self.obs_keys = tuple(cfg.obs_keys or spec.groups["policy"])
        self.normalizer = normalizer
        self.encoder = ObservationEncoder(spec, self.obs_keys, normalizer)
        self.action_dim = spec.action.dim
        self.obs_feature_dim = self.encoder.feature_dim * cfg.n_obs_steps

    # --- what a policy defines --------------------------------------------------------------
    @abstractmethod
    def compute_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar training loss and scalars to log."""

    @abstractmethod
    def sample_normalized(self, obs_features: torch.Tensor) -> torch.Tensor:
        """(B, horizon, A) normalised action chunk for flattened features (B, obs_feature_dim)."""

    def reset(self) -> None:
        """Clear per-episode state (none by default)."""

    # --- shared ---------------------------------------------------------------------------------
    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw observation window -> (B, n_obs_steps * feature_dim)."""
        features = self.encoder(obs)
        if features.shape[1] != self.cfg.n_obs_steps:
            raise ValueError(
                f"observation window has {features.shape[1]} steps, policy needs {self.cfg.n_obs_steps}"
            )
        if self.cfg.obs_clip is not None:
            features = features.clamp(-self.cfg.obs_clip, self.cfg.obs_clip)
        return features.flatten(1)

    def normalized_actions(self, batch: Batch) -> torch.Tensor:
        return self.normalizer.normalize("action", batch["action"])

    @torch.no_grad()
    def predict_action(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        chunk = self.normalizer.unnormalize("action", self.sample_normalized(self.encode(obs)))
        return chunk.clamp(self.spec.action.low, self.spec.action.high)
