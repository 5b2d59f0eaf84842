"""The privilege schedule (METHODS.md §5): β steps down as the policy succeeds, down to 0.

β starts at ``init_beta`` and drops by ``beta_step`` each time the success rate over the last
``window`` finished episodes reaches ``success_threshold``. The window is then emptied, so that
the next step down needs ``window`` fresh episodes at the new level. With
``max_level_env_steps`` set, β also steps down once that many env steps have been spent at one
level, passed or not: a floor on the rate of descent, so that a policy that leans on the privilege
(it succeeds ~50% of the time at a level it cannot leave) still reaches β = 0 within the budget.
β never increases and stops at 0, where the final policy is trained and evaluated. Mao et al.
(2025) did not publish their constants; these defaults are ours (see
``conf/curriculum/privileged.yaml``).

:class:`PrivilegeSchedule` is the pure logic; :class:`PrivilegedCurriculum` feeds it the env's
finished episodes and applies β to a :class:`PrivilegedActionWrapper`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from robolearn.curricula.base import Curriculum
from robolearn.curricula.privileged_env import PrivilegedActionConfig, PrivilegedActionWrapper


@dataclass(frozen=True)
class PrivilegeScheduleConfig:
    init_beta: float = 1.0
    beta_step: float = 0.1
    success_threshold: float = 0.8  # rolling success rate that earns a step down
    window: int = 200  # finished episodes the rate is taken over
    max_level_env_steps: int | None = None  # step down after this many env steps at one level

    def validate(self) -> None:
        if not 0.0 <= self.init_beta <= 1.0:
            raise ValueError(f"privileged.init_beta must be in [0, 1], got {self.init_beta}")
        if not 0.0 < self.beta_step <= 1.0:
            raise ValueError(f"privileged.beta_step must be in (0, 1], got {self.beta_step}")
        if not 0.0 < self.success_threshold <= 1.0:
            raise ValueError(
                f"privileged.success_threshold must be in (0, 1], got {self.success_threshold}"
            )
        if self.window < 1:
            raise ValueError(f"privileged.window must be >= 1, got {self.window}")
        if self.max_level_env_steps is not None and self.max_level_env_steps < 1:
            raise ValueError(
                "privileged.max_level_env_steps must be >= 1 or null, got "
                f"{self.max_level_env_steps}"
            )


class PrivilegeSchedule:
    """β ∈ [0, 1], non-increasing, lowered on a full window of good enough successes (or after
    ``max_level_env_steps`` at one level)."""

    def __init__(self, cfg: PrivilegeScheduleConfig | None = None):
        self.cfg = cfg or PrivilegeScheduleConfig()
        self.cfg.validate()
        self.beta = self.cfg.init_beta
        self.successes: deque[bool] = deque(maxlen=self.cfg.window)
        self.level_env_steps = 0  # env steps spent at the current β

    @property
    def success_rate(self) -> float:
        return sum(self.successes) / len(self.successes) if self.successes else 0.0

    def record(self, successes: torch.Tensor | list[bool]) -> None:
        """Add finished episodes' success flags, oldest first."""
        flags = successes.tolist() if isinstance(successes, torch.Tensor) else successes
        self.successes.extend(bool(s) for s in flags)

    def count_env_steps(self, n: int) -> None:
        """Add ``n`` env steps to the time spent at the current level."""
        self.level_env_steps += n

    def step(self) -> bool:
        """Lower β if the window is full and its success rate passes, or if the current level has
        had its ``max_level_env_steps``; whether it was lowered."""
        full = len(self.successes) == self.cfg.window
        passed = full and self.success_rate >= self.cfg.success_threshold
        limit = self.cfg.max_level_env_steps
        timed_out = limit is not None and self.level_env_steps >= limit
        if self.beta == 0.0 or not (passed or timed_out):
            return False
        # Rounded so that repeated steps of e.g. 0.1 land on 0 exactly rather than on 1e-17.
        self.beta = max(0.0, round(self.beta - self.cfg.beta_step, 9))
        self.successes.clear()
        self.level_env_steps = 0
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "successes": list(self.successes),
            "level_env_steps": self.level_env_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])
        self.successes = deque((bool(s) for s in state["successes"]), maxlen=self.cfg.window)
        self.level_env_steps = int(state.get("level_env_steps", 0))


@dataclass(frozen=True)
class PrivilegedConfig:
    schedule: PrivilegeScheduleConfig = field(default_factory=PrivilegeScheduleConfig)
    action: PrivilegedActionConfig = field(default_factory=PrivilegedActionConfig)

    def validate(self) -> None:
        self.schedule.validate()
        self.action.validate()


class PrivilegedCurriculum(Curriculum):
    """Counts the wrapped env's successes; lowers its β once per training iteration at most.

    Episodes that end within one episode length of the start or of a change of β are not
    counted: they ran partly at the old level, and they are a biased sample. With episodes that
    end at success, the first episodes to end after any point in time are the short ones, i.e.
    the successes; counted, they fill a window of 200 with ~100% success within a few steps of
    256 worlds, and β fell from 1 to 0 in 90k env steps on ``lift_flat`` before the policy had
    learned anything. Every episode that ends later started after the change, and the finished
    episodes then sample the per-episode success rate without bias.
    """

    name = "privileged"

    def __init__(self, env: PrivilegedActionWrapper, cfg: PrivilegeScheduleConfig | None = None):
        self.env = env
        self.schedule = PrivilegeSchedule(cfg)
        env.set_privilege(self.schedule.beta)
        self.settle_steps = int(env.env.max_episode_length)
        self.settling = self.settle_steps  # env steps until finished episodes count again
        #: Worlds with a relaxed table, summed over the iteration's steps (no sync per step).
        self._relaxed_worlds, self._relaxed_steps = torch.zeros((), device=env.env.device), 0

    @property
    def beta(self) -> float:
        return self.schedule.beta

    def observe(self, info: dict[str, Any]) -> None:
        self.schedule.count_env_steps(self.env.num_envs)
        self._relaxed_worlds += self.env.table_relaxed.sum()
        self._relaxed_steps += 1
        if self.settling > 0:
            self.settling -= 1
            return
        episode = info.get("episode")
        if episode is not None:
            self.schedule.record(episode["success"])

    def update(self, stats: dict[str, Any]) -> dict[str, float]:
        rate = self.schedule.success_rate
        steps = max(self._relaxed_steps, 1) * self.env.num_envs
        relaxed = self._relaxed_worlds.item() / steps
        self._relaxed_worlds.zero_()
        self._relaxed_steps = 0
        if self.schedule.step():
            self.env.set_privilege(self.schedule.beta)
            self.settling = self.settle_steps
        return {
            f"{self.name}/beta": self.schedule.beta,
            f"{self.name}/success_rate": rate,
            f"{self.name}/table_relaxed": relaxed,  # mean share of worlds over the iteration
        }

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore β and its success window. Training restarts every episode on resume, so the
        first episodes to end are the biased sample of the class docstring: settle again."""
        self.schedule.load_state_dict(state)
        self.settling = self.settle_steps
        self.env.set_privilege(self.schedule.beta)
