"""``Normalizer``: per-key affine maps fitted on a dataset; its statistics travel in checkpoints.

Two modes: ``minmax`` maps the data range to [-1, 1] (what diffusion policies want: their
samplers clip to that box), ``meanstd`` to zero mean and unit variance. Dimensions that do not
vary (range or std below ``eps``) are centred but not scaled, so they never blow up.
Stored as ``x_n = x * scale + offset`` per key, as buffers (they follow ``.to(device)`` and land
in ``state_dict``) and as JSON (for ``spec.json``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

MODES = ("minmax", "meanstd")


class Normalizer(nn.Module):
    def __init__(self, stats: Mapping[str, Mapping[str, list | np.ndarray | torch.Tensor]]):
        super().__init__()
        self.keys = tuple(stats)
        self.modes = {k: str(v.get("mode", "minmax")) for k, v in stats.items()}
        for key, s in stats.items():
            self.register_buffer(
                f"{key}__scale", torch.as_tensor(np.asarray(s["scale"]), dtype=torch.float32)
            )
            self.register_buffer(
                f"{key}__offset", torch.as_tensor(np.asarray(s["offset"]), dtype=torch.float32)
            )

    @classmethod
    def fit(
        cls,
        data: Mapping[str, np.ndarray],
        mode: str | Mapping[str, str] = "minmax",
        eps: float = 1e-4,
    ) -> Normalizer:
        """Fit on arrays of shape ``(num_samples, *shape)`` per key."""
        stats = {}
        for key, x in data.items():
            m = mode if isinstance(mode, str) else mode.get(key, "minmax")
            if m not in MODES:
                raise ValueError(f"normalizer mode for {key!r} is {m!r}; choose from {MODES}")
            x = np.asarray(x, dtype=np.float64)
            if x.shape[0] == 0:
                raise ValueError(f"cannot fit a normalizer on key {key!r}: no samples")
            if not np.isfinite(x).all():
                raise ValueError(f"cannot fit a normalizer on key {key!r}: non-finite values")
            if m == "minmax":
                low, high = x.min(0), x.max(0)
                span = high - low
                scale = np.where(span > eps, 2.0 / np.maximum(span, eps), 1.0)
                offset = np.where(span > eps, -1.0 - low * scale, -0.5 * (low + high))
            else:
                mean, std = x.mean(0), x.std(0)
                scale = np.where(std > eps, 1.0 / np.maximum(std, eps), 1.0)
                offset = -mean * scale
            stats[key] = {"mode": m, "scale": scale, "offset": offset}
        return cls(stats)

    def scale(self, key: str) -> torch.Tensor:
        return getattr(self, f"{key}__scale")

    def offset(self, key: str) -> torch.Tensor:
        return getattr(self, f"{key}__offset")

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale(key) + self.offset(key)

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return (x - self.offset(key)) / self.scale(key)

    def to_dict(self) -> dict[str, dict[str, object]]:
        return {
            k: {
                "mode": self.modes[k],
                "scale": self.scale(k).tolist(),
                "offset": self.offset(k).tolist(),
            }
            for k in self.keys
        }
