"""``bc``: behaviour cloning with an MLP from the encoded observation window to an action chunk.

The whole chunk (``horizon`` x A, flat) comes out of one forward pass; ``horizon=1`` with
``n_action_steps=1`` is classic single-step BC. Two heads:

* ``deterministic``: regress the normalised actions with MSE. Where the demos disagree for the
  same observation, this predicts their average — the failure mode diffusion policies fix.
* ``gaussian``: a diagonal Gaussian with a state-dependent log-std, trained by negative
  log-likelihood; inference returns the mean. Its distribution is what a PPO actor initialised
  from BC needs.

The log-std is squashed smoothly into ``[log_std_min, log_std_max]`` (a hard clamp would stop
its gradient once it saturates), so the NLL can neither collapse to -inf on repeated demos nor
explain everything away as noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Normal

from robolearn.data.normalizer import Normalizer
from robolearn.policies.base import Batch, Policy, PolicyConfig, masked_mean
from robolearn.spec import ObsSpec

HEADS = ("deterministic", "gaussian")
ACTIVATIONS = {"relu": nn.ReLU, "mish": nn.Mish}


@dataclass(frozen=True)
class BCConfig(PolicyConfig):
    head: str = "deterministic"  # "deterministic" (MSE) | "gaussian" (NLL; the mean at inference)
    hidden_dims: tuple[int, ...] = (256, 256, 256)
    activation: str = "relu"  # "relu" | "mish"
    dropout: float = 0.0
    log_std_min: float = -5.0  # gaussian head: bounds of the log-std of normalised actions
    log_std_max: float = 2.0

    def validate(self) -> None:
        super().validate()
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}"
            )
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError(f"hidden_dims must be positive widths, got {self.hidden_dims}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.log_std_min >= self.log_std_max:
            raise ValueError(
                f"need log_std_min < log_std_max, got {self.log_std_min}, {self.log_std_max}"
            )


def mlp(
    in_dim: int, hidden_dims: tuple[int, ...], out_dim: int, activation: str, dropout: float
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_dim, width), ACTIVATIONS[activation]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_dim = width
    return nn.Sequential(*layers, nn.Linear(in_dim, out_dim))


class BCPolicy(Policy):
    name = "bc"
    Config = BCConfig
    cfg: BCConfig

    def __init__(self, cfg: BCConfig, spec: ObsSpec, normalizer: Normalizer):
        super().__init__(cfg, spec, normalizer)
        self.chunk_shape = (cfg.horizon, self.action_dim)
        chunk_dim = cfg.horizon * self.action_dim
        out_dim = 2 * chunk_dim if cfg.head == "gaussian" else chunk_dim
        self.net = mlp(self.obs_feature_dim, cfg.hidden_dims, out_dim, cfg.activation, cfg.dropout)

    def forward(self, obs_features: torch.Tensor) -> torch.Tensor | Normal:
        """Normalised chunk (B, horizon, A), or its Gaussian distribution for that head."""
        out = self.net(obs_features)
        if self.cfg.head == "deterministic":
            return out.view(-1, *self.chunk_shape)
        mean, raw_log_std = out.view(-1, 2, *self.chunk_shape).unbind(1)
        lo, hi = self.cfg.log_std_min, self.cfg.log_std_max
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(raw_log_std) + 1)
        return Normal(mean, log_std.exp())

    def compute_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        target = self.normalized_actions(batch)
        mask = batch["action_mask"]
        prediction = self(self.encode(batch["obs"]))
        if isinstance(prediction, Normal):
            loss = masked_mean(-prediction.log_prob(target), mask)
            mse = masked_mean((prediction.mean - target).square(), mask)
            return loss, {
                "loss": loss.item(),
                "mse": mse.item(),
                "std": prediction.stddev.mean().item(),
            }
        loss = masked_mean((prediction - target).square(), mask)
        return loss, {"loss": loss.item()}

    def sample_normalized(self, obs_features: torch.Tensor) -> torch.Tensor:
        prediction = self(obs_features)
        return prediction.mean if isinstance(prediction, Normal) else prediction
