"""Expert registry: one scripted expert per task name."""

from __future__ import annotations

import torch

from robolearn.experts.base import ScriptedExpert
from robolearn.experts.lift import LiftExpert
from robolearn.experts.lift_flat import LiftFlatExpert
from robolearn.experts.pick_place import PickPlaceExpert
from robolearn.experts.push import PushExpert
from robolearn.experts.reach import ReachExpert
from robolearn.experts.reach_around import ReachAroundExpert
from robolearn.experts.stack import StackExpert

EXPERTS: dict[str, type[ScriptedExpert]] = {
    "reach": ReachExpert,
    "lift": LiftExpert,
    "pick_place": PickPlaceExpert,
    "push": PushExpert,
    "stack": StackExpert,
    "lift_flat": LiftFlatExpert,
    "reach_around": ReachAroundExpert,
}


def expert_class(task_name: str) -> type[ScriptedExpert]:
    if task_name not in EXPERTS:
        raise ValueError(
            f"no scripted expert for task {task_name!r}; experts exist for {sorted(EXPERTS)}"
        )
    return EXPERTS[task_name]


def make_expert(
    task_name: str, num_envs: int, device: torch.device | str, control=None, seed: int = 0
) -> ScriptedExpert:
    return expert_class(task_name)(num_envs, device, control, seed)


__all__ = ["EXPERTS", "ScriptedExpert", "expert_class", "make_expert"]
