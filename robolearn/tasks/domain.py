"""Per-world domain parameters: sampled at reset, or set by a curriculum before a reset.

Each parameter is a scalar per world with a ``(low, high)`` range; equal bounds mean no
randomisation (the default, so that scripted experts and tests are reproducible). A curriculum
(e.g. ALP-GMM) calls :meth:`DomainParams.set_next` to choose the values the next reset of those
worlds uses instead of a uniform draw.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass(frozen=True)
class DomainConfig:
    object_friction: tuple[float, float] = (1.0, 1.0)
    object_mass_scale: tuple[float, float] = (1.0, 1.0)
    object_size_scale: tuple[float, float] = (1.0, 1.0)
    joint_damping_scale: tuple[float, float] = (1.0, 1.0)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def bounds(self) -> torch.Tensor:
        """(num_params, 2) low/high."""
        rows = []
        for name in self.names():
            low, high = (float(v) for v in getattr(self, name))
            if not low <= high:
                raise ValueError(f"domain range {name}: low {low} > high {high}")
            # A zero or negative scale gives a degenerate body whose physics diverges at once.
            is_scale = name.endswith("_scale")
            if not (low > 0 if is_scale else low >= 0):
                bound = "> 0" if is_scale else ">= 0"
                raise ValueError(f"domain range {name}: low {low}; it must be {bound}")
            rows.append((low, high))
        return torch.tensor(rows)


class DomainParams:
    """Current values ``(N, P)`` and pending curriculum choices for the next reset."""

    def __init__(
        self, cfg: DomainConfig, num_worlds: int, device: torch.device, generator: torch.Generator
    ):
        self.names = cfg.names()
        self.bounds = cfg.bounds().to(device)
        self.generator = generator
        self.values = self.bounds[:, 0].repeat(num_worlds, 1)
        self._pending = torch.full_like(self.values, float("nan"))

    def index(self, name: str) -> int:
        return self.names.index(name)

    def set_next(self, env_ids: torch.Tensor, values: torch.Tensor) -> None:
        """Use ``values`` (len(env_ids), P) at the next reset of ``env_ids``; they must lie in
        bounds, and a NaN leaves that parameter to the reset's own uniform draw."""
        if values.shape != (env_ids.numel(), len(self.names)):
            raise ValueError(
                f"domain values have shape {tuple(values.shape)}, expected ({env_ids.numel()}, {len(self.names)})"
            )
        low, high = self.bounds[:, 0], self.bounds[:, 1]
        if ((values < low - 1e-9) | (values > high + 1e-9)).any():
            raise ValueError(
                f"domain values outside bounds {dict(zip(self.names, self.bounds.tolist(), strict=True))}"
            )
        self._pending[env_ids] = values.to(self._pending)

    def resample(self, env_ids: torch.Tensor) -> torch.Tensor:
        """Draw values for ``env_ids`` (pending choices first, else uniform) and return them."""
        low, high = self.bounds[:, 0], self.bounds[:, 1]
        u = torch.rand((env_ids.numel(), len(self.names)), generator=self.generator).to(low)
        drawn = low + u * (high - low)
        pending = self._pending[env_ids]
        chosen = torch.where(torch.isnan(pending), drawn, pending)
        self._pending[env_ids] = float("nan")
        self.values[env_ids] = chosen
        return chosen

    def normalised(self) -> torch.Tensor:
        """Values mapped to [-1, 1] within their ranges (0 where a range is a point), for the critic."""
        low, high = self.bounds[:, 0], self.bounds[:, 1]
        span = (high - low).clamp_min(1e-9)
        return torch.where(
            high > low, 2 * (self.values - low) / span - 1, torch.zeros_like(self.values)
        )
