"""``ObservationEncoder``: the one module that turns observation dicts into features.

Every consumer of observations — imitation policies, the RL actor and critic, the real-robot
control loop — goes through it, so that a checkpoint's observation pipeline is the same
everywhere. Input: ``{key: (B, T, *shape)}`` raw observations; output: ``(B, T, feature_dim)``.

Low-dim terms are normalised with the checkpoint's :class:`Normalizer` and concatenated in the
order of ``keys``. Image terms (modality ``rgb``/``depth``) have their own per-key encoders; the
interface takes them, the image encoders themselves are a later issue and are refused clearly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robolearn.data.normalizer import Normalizer
from robolearn.spec import ObsSpec


class ObservationEncoder(nn.Module):
    def __init__(self, spec: ObsSpec, keys: tuple[str, ...], normalizer: Normalizer):
        super().__init__()
        unknown = [k for k in keys if k not in spec.terms]
        if unknown:
            raise KeyError(
                f"observation key {unknown[0]!r} is not in the spec; it has {sorted(spec.terms)}"
            )
        images = [k for k in keys if spec.terms[k].modality != "low_dim"]
        if images:
            raise NotImplementedError(
                f"observation {images[0]!r} has modality {spec.terms[images[0]].modality!r}: "
                "image encoders are not implemented yet; use low-dim keys"
            )
        self.keys = tuple(keys)
        self.normalizer = normalizer
        self.shapes = {k: spec.terms[k].shape for k in keys}
        self.feature_dim = sum(math.prod(s) for s in self.shapes.values())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = [k for k in self.keys if k not in obs]
        if missing:
            raise KeyError(
                f"observation dict lacks key {missing[0]!r}; the encoder needs {list(self.keys)}"
            )
        parts = []
        for key in self.keys:
            x = obs[key].float()
            if key in self.normalizer.keys:
                x = self.normalizer.normalize(key, x)
            parts.append(x.flatten(2))
        return torch.cat(parts, dim=-1)
