"""Task registry: ``make_task("lift", {"reward_type": "sparse"})``."""

from __future__ import annotations

from typing import Any

from robolearn.tasks.base import Task, TaskConfig
from robolearn.tasks.lift import Lift
from robolearn.tasks.lift_flat import LiftFlat
from robolearn.tasks.pick_place import PickPlace
from robolearn.tasks.push import Push
from robolearn.tasks.reach import Reach
from robolearn.tasks.reach_around import ReachAround
from robolearn.tasks.stack import Stack
from robolearn.utils.config import from_dict

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Reach, Push, Lift, PickPlace, Stack, LiftFlat, ReachAround)
}


def make_task(name: str, overrides: dict[str, Any] | None = None) -> Task:
    """Instantiate a registered task; unknown names and config keys raise naming the culprit."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    cls = TASKS[name]
    return cls(from_dict(cls.Config, overrides, path="task."))


__all__ = ["TASKS", "Task", "TaskConfig", "make_task"]
