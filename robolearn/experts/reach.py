from __future__ import annotations

import torch

from robolearn.experts.base import ScriptedExpert


class ReachExpert(ScriptedExpert):
    """Straight line to the target, gripper down and open."""

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        eef = obs["eef_pos"]
        yaw = torch.zeros(len(eef), device=eef.device)
        return self.action(
            self.translate(eef, obs["target_pos"], gain=0.8),
            self.rotate(obs["eef_quat"], self.down_with_yaw(yaw)),
            -torch.ones(len(eef), device=eef.device),
        )
