"""``ObsSpec``: the contract every arrow of the pipeline carries (see DESIGN.md).

Names, shapes, dtypes and modalities of observation terms, which terms form each observation
group, and the action's dimension, bounds, control mode and rate. Datasets, envs, checkpoints and
robots each declare one; :meth:`ObsSpec.check_compatible` refuses a mismatch naming the key.
Plain data only (no torch), so that ``data`` and ``real`` can use it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TermSpec:
    shape: tuple[int, ...]
    dtype: str = "float32"
    modality: str = "low_dim"  # "low_dim" | "rgb" | "depth"


@dataclass(frozen=True)
class ActionSpec:
    dim: int
    low: float = -1.0
    high: float = 1.0
    mode: str = "ee_delta_pose"  # "ee_delta_pose" | "joint_delta"
    control_freq: float = 20.0


@dataclass(frozen=True)
class ObsSpec:
    terms: dict[str, TermSpec]
    groups: dict[str, tuple[str, ...]]
    action: ActionSpec
    task: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def group_dim(self, group: str) -> int:
        """Length of a group's terms concatenated flat."""
        total = 0
        for name in self.groups[group]:
            n = 1
            for s in self.terms[name].shape:
                n *= s
            total += n
        return total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObsSpec:
        return cls(
            terms={
                k: TermSpec(tuple(v["shape"]), v["dtype"], v["modality"])
                for k, v in d["terms"].items()
            },
            groups={k: tuple(v) for k, v in d["groups"].items()},
            action=ActionSpec(**d["action"]),
            task=d.get("task", ""),
            extras=d.get("extras", {}),
        )

    def differences(self, other: ObsSpec, groups: tuple[str, ...] = ("policy",)) -> list[str]:
        """Human-readable differences that matter for the given observation groups and the action."""
        problems = []
        for group in groups:
            mine, theirs = self.groups.get(group), other.groups.get(group)
            if mine is None or theirs is None:
                problems.append(f"observation group {group!r}: missing on one side")
                continue
            for name in mine:
                if name not in theirs:
                    problems.append(f"obs key {group}/{name}: present here, missing there")
                elif self.terms[name] != other.terms[name]:
                    problems.append(
                        f"obs key {group}/{name}: {self.terms[name]} vs {other.terms[name]}"
                    )
            problems += [
                f"obs key {group}/{n}: missing here, present there" for n in theirs if n not in mine
            ]
        for key in ("dim", "mode", "low", "high", "control_freq"):
            a, b = getattr(self.action, key), getattr(other.action, key)
            if a != b:
                problems.append(f"action {key}: {a} vs {b}")
        return problems

    def check_compatible(
        self, other: ObsSpec, what: str, groups: tuple[str, ...] = ("policy",)
    ) -> None:
        problems = self.differences(other, groups)
        if problems:
            raise ValueError(f"{what}: spec mismatch: " + "; ".join(problems))
