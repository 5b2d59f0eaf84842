"""``EMA``: exponential moving average of a policy's weights with diffusion_policy's warm-up.

The decay at the ``n``-th update (``n`` counted from 0) is

    decay(n) = 0                                     if n - update_after_step - 1 <= 0
             = 1 - (1 + (n - update_after_step - 1) / inv_gamma) ** -power   otherwise,

clamped to ``[min_decay, max_decay]``. With ``power = 0.75`` it rises smoothly (0.41 at the
third update, 0.99 after ~460, 0.999 after ~10k) so the average tracks the fast early training
instead of being stuck near the random initialisation. It is diffusers' ``EMAModel.get_decay``
with warm-up, evaluated at the count of updates made before this one (diffusion_policy's count).

Built on ``torch.optim.swa_utils.AveragedModel`` rather than diffusers' ``EMAModel``:
``EMAModel`` keeps bare shadow tensors, so evaluating the average means swapping weights in and
out of the training model, while an ``AveragedModel`` holds a ready copy of the policy in
``.module`` (exposed as :attr:`model`) that checkpoints save under the policy's own parameter
names. Buffers (normaliser statistics) are copied from the trained model, not averaged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class EMA(AveragedModel):
    def __init__(
        self,
        model: nn.Module,
        power: float = 0.75,
        max_decay: float = 0.9999,
        min_decay: float = 0.0,
        update_after_step: int = 0,
        inv_gamma: float = 1.0,
    ):
        if not 0 <= min_decay <= max_decay < 1:
            raise ValueError(f"need 0 <= min_decay <= max_decay < 1, got {min_decay}, {max_decay}")
        super().__init__(model, multi_avg_fn=self._lerp)
        self.power, self.inv_gamma = power, inv_gamma
        self.min_decay, self.max_decay = min_decay, max_decay
        self.update_after_step = update_after_step
        self.module.eval().requires_grad_(False)

    @property
    def model(self) -> nn.Module:
        """The averaged copy of the model, in eval mode: what to validate, evaluate and deploy."""
        return self.module

    def decay(self, n: int) -> float:
        """Weight kept from the average at the ``n``-th update (0-based)."""
        step = n - self.update_after_step - 1
        if step <= 0:
            return 0.0
        value = 1 - (1 + step / self.inv_gamma) ** -self.power
        return min(max(value, self.min_decay), self.max_decay)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights into the average (call after each optimiser step)."""
        self.update_parameters(model)

    def _lerp(
        self, averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor
    ) -> None:
        torch._foreach_lerp_(averaged, current, 1 - self.decay(int(n)))
