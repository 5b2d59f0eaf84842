"""``ControlLoop``: a checkpoint's policy driving a robot at a fixed rate, one episode at a time.

Each control step, on a tick of a sleep-until-deadline scheduler (``t0 + n · period`` on
``time.monotonic``, the spec's ``control_freq`` unless ``rate_hz`` says otherwise): read an
observation, append it to the window of the last ``n_obs_steps`` (the first one repeated at the
episode's start, as in training windows and in simulated evaluation), take the next action, send
it through the :class:`~robolearn.real.safety.SafetyLayer`. The policy is the checkpoint's own
(:func:`~robolearn.checkpoint.load_policy`), so observations pass through the same
``ObservationEncoder`` and ``Normalizer`` as in training.

Action chunks, two ways (``chunking``):

* ``receding``: execute ``n_action_steps`` of each predicted chunk, then plan again (as
  :class:`~robolearn.eval.runner.ChunkedPolicyRunner` does in simulation);
* ``ensemble``: ACT's temporal ensembling: plan every step and execute the weighted mean of every
  chunk's prediction for this step, weights ``exp(-m · i)`` with ``i = 0`` the oldest chunk.

**Planning is synchronous**, inside the period: with the project's default policy a chunk costs
~2 ms on one CPU core (EDM-3, ``scripts/bench/control_loop_jitter.py``), far below a 50 ms
period, and a synchronous loop has no stale-chunk bookkeeping and no thread to stop on a fault.
A step whose action is ready only after its deadline (the next tick) is late: with
``late_action: drop`` the hold action (zero motion, gripper unchanged) is sent instead and the
step counted in ``late_actions``; the scheduler then skips the ticks it missed rather than
bursting to catch up, and waits for the next one (``skipped_ticks``).

Per step the loop logs the latency (observation read to action sent) and the period error (step
start minus its scheduled tick); per plan the policy's own time. An episode ends after
``max_steps`` actions, at success (``stop_on_success``, when the robot reports ``success``), when
the robot reports ``terminated``, or at a fault: a :class:`~robolearn.real.faults.FaultError`
from the safety layer (which already stopped the arm), or Ctrl-C / the keyboard e-stop (the loop
stops the arm through :meth:`SafetyLayer.estop`). Either way the episode so far is recorded, with
the fault, when a recorder is given: every transition whose next observation was read (the last
action before a fault has none, and is left out).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robolearn.eval.runner import check_chunking, ensemble_weights
from robolearn.real.faults import Fault, FaultError
from robolearn.real.recorder import EpisodeRecorder
from robolearn.real.robot import Observation, Robot, hold_action
from robolearn.real.safety import SafetyLayer

if TYPE_CHECKING:
    from robolearn.eval.runner import ChunkPolicy

LATE_ACTIONS = ("drop", "send")
log = logging.getLogger(__name__)


def start_episode(robot: Robot, manual_reset_s: float) -> None:
    """Reset the robot for a new episode. A robot that cannot reset the scene by itself (a real
    arm: ``reset`` raises ``NotImplementedError``) leaves it to the operator: the arm holds while
    a countdown of ``manual_reset_s`` runs, Ctrl-C stopping it like any e-stop. A countdown rather
    than "press Enter": Enter on the terminal is the keyboard e-stop."""
    try:
        robot.reset()
    except NotImplementedError as e:
        log.warning("%s: reset the scene by hand; next episode in %.1f s", e, manual_reset_s)
        time.sleep(manual_reset_s)


@dataclass(frozen=True)
class LoopConfig:
    max_steps: int = 100  # actions per episode
    rate_hz: float = 0.0  # 0: the spec's control_freq
    chunking: str = "receding"  # receding | ensemble
    ensemble_m: float = 0.01  # ensemble weights exp(-m * i), i = 0 the oldest chunk
    late_action: str = "drop"  # drop (send the hold action instead) | send
    stop_on_success: bool = True
    manual_reset_s: float = 10.0  # a robot that cannot reset itself: time to reset by hand

    def __post_init__(self) -> None:
        if self.manual_reset_s < 0:
            raise ValueError(f"manual_reset_s must be >= 0, got {self.manual_reset_s}")
        if self.max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")
        if self.rate_hz < 0:
            raise ValueError(
                f"rate_hz must be >= 0 (0: the spec's control_freq), got {self.rate_hz}"
            )
        check_chunking(self.chunking, self.ensemble_m)
        if self.late_action not in LATE_ACTIONS:
            raise ValueError(f"late_action {self.late_action!r}: choose from {LATE_ACTIONS}")


@dataclass
class EpisodeResult:
    """One episode's outcome and timing (seconds; summaries in ms and % of the period)."""

    period_s: float
    steps: int = 0
    success: bool | None = None  # None: the robot does not report success
    fault: Fault | None = None
    late_actions: int = 0
    skipped_ticks: int = 0
    latency_s: list[float] = field(default_factory=list)  # per action: obs read -> action sent
    policy_s: list[float] = field(default_factory=list)  # per plan: predict_action
    period_error_s: list[float] = field(default_factory=list)  # per step: start - its tick
    timestamps: list[float] = field(default_factory=list)  # per step: the observation's

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float, scale: float) -> float | None:
            return round(float(np.percentile(values, q)) * scale, 3) if values else None

        return {
            "steps": self.steps,
            "success": self.success,
            "fault": None if self.fault is None else self.fault.to_dict(),
            "late_actions": self.late_actions,
            "skipped_ticks": self.skipped_ticks,
            "latency_mean_ms": round(float(np.mean(self.latency_s)) * 1e3, 3)
            if self.latency_s
            else None,
            "latency_p99_ms": pct(self.latency_s, 99, 1e3),
            "policy_p50_ms": pct(self.policy_s, 50, 1e3),
            "period_error_p50_pct": pct(self.period_error_s, 50, 100 / self.period_s),
            "period_error_p99_pct": pct(self.period_error_s, 99, 100 / self.period_s),
        }


class RateScheduler:
    """Ticks at ``t0 + n · period`` (monotonic clock). A step that starts late but within its
    period runs at once; after an overrun past a whole period the missed ticks are skipped (not
    fired back to back) and the next one is awaited."""

    def __init__(self, period_s: float):
        self.period = period_s
        self.t0 = time.monotonic()
        self.n = 0
        self.skipped = 0

    def wait(self) -> float:
        """Sleep until the next tick; return the tick's scheduled time."""
        now = time.monotonic()
        if now >= self.t0 + (self.n + 1) * self.period:
            ahead = math.ceil((now - self.t0) / self.period)
            self.skipped += ahead - self.n
            self.n = ahead
        tick = self.t0 + self.n * self.period
        if tick > now:
            time.sleep(tick - now)
        self.n += 1
        return tick


class ControlLoop:
    """Runs episodes of ``policy`` on ``robot`` (see the module docstring)."""

    def __init__(
        self,
        robot: SafetyLayer,
        policy: ChunkPolicy,
        config: LoopConfig,
        recorder: EpisodeRecorder | None = None,
        device: str | torch.device = "cpu",
    ):
        self.robot, self.policy, self.config, self.recorder = robot, policy, config, recorder
        self.device = torch.device(device)
        self.spec = robot.observation_spec
        self.period = 1.0 / (config.rate_hz or self.spec.action.control_freq)
        self.n_obs_steps = policy.cfg.n_obs_steps
        self.n_action_steps = policy.cfg.n_action_steps
        missing = [k for k in policy.obs_keys if k not in self.spec.terms]
        if missing:
            raise ValueError(f"the policy reads observation {missing[0]!r}, the robot has none")

    def run_episode(self) -> EpisodeResult:
        """Reset the robot, run one episode, record it; never raises for a fault or Ctrl-C (they
        are in the result's ``fault``)."""
        cfg, robot = self.config, self.robot
        result = EpisodeResult(self.period)
        self._begin()
        start_episode(robot, cfg.manual_reset_s)
        if self.recorder is not None:
            self.recorder.start_episode()
        previous: tuple[Observation, np.ndarray] | None = None
        clock = RateScheduler(self.period)
        try:
            while True:
                tick = clock.wait()
                start = time.monotonic()
                obs = robot.get_observation()
                result.period_error_s.append(start - tick)
                result.timestamps.append(float(obs["timestamp"]))
                if "success" in obs:
                    result.success = bool(result.success) or bool(obs["success"])
                ended = (
                    result.steps >= cfg.max_steps
                    or bool(obs.get("terminated", False))
                    or (cfg.stop_on_success and bool(result.success))
                )
                if previous is not None:
                    self._record(*previous, obs, ended)
                if ended:
                    break
                action = self._next_action(obs, result)
                if time.monotonic() > tick + self.period:
                    result.late_actions += 1
                    if cfg.late_action == "drop":
                        action = hold_action(self.spec.action, self._last_sent)
                sent = robot.send_action(action)
                result.latency_s.append(time.monotonic() - start)
                self._last_sent = sent
                previous = (obs, sent)
                result.steps += 1
        except FaultError as e:
            result.fault = e.fault
        except KeyboardInterrupt:
            result.fault = robot.estop("SIGINT (Ctrl-C) or keyboard e-stop")
        except BaseException:
            robot.stop()  # a bug: the arm must still come to rest
            raise
        finally:
            result.skipped_ticks = clock.skipped
            if self.recorder is not None:
                self.recorder.end_episode(result.success, result.fault)
        return result

    # --- actions -------------------------------------------------------------------------------
    def _begin(self) -> None:
        self.policy.reset()
        self._history: dict[str, np.ndarray] = {}
        self._queue: deque[np.ndarray] = deque()
        self._chunks: deque[tuple[int, np.ndarray]] = deque()
        self._last_sent: np.ndarray | None = None

    def _next_action(self, obs: Observation, result: EpisodeResult) -> np.ndarray:
        self._observe(obs)
        step = result.steps
        if self.config.chunking == "receding":
            if not self._queue:
                self._queue.extend(self._plan(result)[: self.n_action_steps])
            return self._queue.popleft()
        self._chunks.append((step, self._plan(result)))
        while self._chunks[0][0] + len(self._chunks[0][1]) <= step:
            self._chunks.popleft()
        # Newest chunk first, i.e. by age, as ensemble_weights orders them.
        predictions = np.stack([chunk[step - start] for start, chunk in reversed(self._chunks)])
        n = len(predictions)
        weights = ensemble_weights(torch.tensor([n]), self.config.ensemble_m, n)[0].numpy()
        return (weights[:, None] * predictions).sum(0) / weights.sum()

    def _observe(self, obs: Observation) -> None:
        for key in self.policy.obs_keys:
            x = np.asarray(obs[key], dtype=np.float32)
            if key not in self._history:
                self._history[key] = np.repeat(x[None], self.n_obs_steps, axis=0)
            else:
                self._history[key] = np.concatenate([self._history[key][1:], x[None]])

    def _plan(self, result: EpisodeResult) -> np.ndarray:
        """(horizon, A) actions predicted from the current window."""
        window = {
            k: torch.from_numpy(h).unsqueeze(0).to(self.device) for k, h in self._history.items()
        }
        start = time.monotonic()
        with torch.inference_mode():
            chunk = self.policy.predict_action(window)
        result.policy_s.append(time.monotonic() - start)
        if chunk.ndim != 3 or chunk.shape[0] != 1 or chunk.shape[1] < self.n_action_steps:
            raise ValueError(
                f"predict_action returned shape {tuple(chunk.shape)}; expected "
                f"(1, horizon >= {self.n_action_steps}, {self.spec.action.dim})"
            )
        return chunk[0].detach().cpu().numpy().astype(np.float32)

    def _record(
        self, obs: Observation, sent: np.ndarray, next_obs: Observation, ended: bool
    ) -> None:
        if self.recorder is not None:
            reward = float(next_obs.get("reward", 0.0))
            self.recorder.add_step(obs, sent, next_obs, reward, ended)
