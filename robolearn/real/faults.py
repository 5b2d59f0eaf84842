"""``Fault``: why a deployed episode stopped early, as recorded and reported.

A fault is data (kind, message, when, at which step) rather than only an exception, so that the
control loop can stop the arm, flush the episode with the reason attached, and print a summary
line, whichever layer noticed the problem. :class:`FaultError` carries one up the stack.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

#: The kinds of fault the safety layer and the control loop raise.
FAULT_KINDS = (
    "driver_error",  # the driver raised (connection lost, command refused, injected fault)
    "stale_observation",  # the newest observation is older than the watchdog allows
    "policy_latency",  # the action comes from an observation older than the watchdog allows
    "nan",  # NaN/Inf in an observation or an action
    "workspace",  # the commanded TCP position leaves the workspace box
    "step",  # the commanded per-step translation/rotation exceeds its cap
    "joint_limit",  # a measured joint position is outside its limits
    "joint_velocity",  # a joint moves faster than its limit
    "estop",  # SIGINT (Ctrl-C) or the keyboard e-stop
)


@dataclass(frozen=True)
class Fault:
    kind: str
    message: str
    timestamp: float  # time.monotonic() when it was noticed
    step: int | None = None  # control step of the episode, when known

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose from {FAULT_KINDS}")

    @classmethod
    def now(cls, kind: str, message: str, step: int | None = None) -> Fault:
        return cls(kind, message, time.monotonic(), step)

    def __str__(self) -> str:
        where = f" at step {self.step}" if self.step is not None else ""
        return f"{self.kind}{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultError(RuntimeError):
    """Raised after the arm was stopped because of ``fault``."""

    def __init__(self, fault: Fault):
        self.fault = fault
        super().__init__(str(fault))
