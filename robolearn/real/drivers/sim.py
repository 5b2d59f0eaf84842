"""``sim`` driver: the task's MuJoCo scene as a robot, stepped in real time in its own process.

The twin is a one-world :class:`~robolearn.envs.vec_env.VecEnv` of a task (with the task settings
of the checkpoint being deployed), so its observations are exactly the training env's ``policy``
group: same terms, shapes and :class:`~robolearn.spec.ObsSpec` (the privileged ``critic`` group is
not exposed, as a real arm cannot measure it). It is the default robot of ``robolearn-deploy``,
its demo, and the test double of the real-robot layer.

**Own process** (``multiprocessing``, spawn), so that the physics keeps its own clock and the
deploy process meets what it meets on a real arm: a connection that can be slow, stale or die.
Requests go over a pipe, each tagged with a sequence number that its reply repeats, so a reply
to a call cut short by Ctrl-C is recognised and skipped. The child ignores SIGINT, so Ctrl-C in
the terminal reaches only the deploy process, which then stops the arm through the pipe.

**Clock.** The twin's simulated time follows the wall clock: each action received advances the
physics by one control period of the task (``1 / control_freq``; ``rate_hz`` of the robot when
set, e.g. 100 Hz in tests, which runs the twin faster than real time), and every period that
passes with no action advances it holding the arm (zero motion, the gripper as last commanded),
as a real arm's servo does when commands stop coming (:attr:`time_scale` says how much faster
than real time the twin runs). Between :meth:`reset` and the first
action the world is paused. An observation's ``timestamp`` is the wall time its state stands
for: after an action, the end of its control period, so that the gap between two stamps is the
simulated time between their states (what joint speeds are measured over).

**Extras in observations.** Besides the spec's terms and ``timestamp``, observations carry the
task's view of the step just taken: ``success`` (bool), ``reward`` (float) and ``terminated``
(bool: an object fell off the table). Real drivers do not know these; the control loop treats
them as optional.

**Faults** for tests (:class:`SimFaults`, settable at any time with :meth:`set_faults`; steps
count from the episode's reset): observations frozen (stale) from step ``k``, a driver error at
step ``k``, replies delayed from step ``k``.

**Disconnect and process death.** :meth:`stop` holds the arm and refuses actions until the next
:meth:`reset`. On :meth:`disconnect`, or when the deploy process dies (the pipe closes), the twin
holds and its process exits; if the twin's process dies, the next call raises
:class:`~robolearn.real.robot.RobotError`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection as mpc
import signal
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from robolearn.real.robot import Observation, Robot, RobotError, hold_action
from robolearn.spec import ObsSpec

#: Task-state entries of the sim's observations besides the spec terms and ``timestamp``.
INFO_KEYS = ("success", "reward", "terminated")
#: Episode length given to the twin's env: episodes end when the deploy loop says so.
_NO_TIME_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class SimFaults:
    """Faults the twin injects; a step ``k`` counts actions since the episode's reset."""

    stale_after_step: int | None = None  # observations stop changing (and ageing) from step k
    raise_at_step: int | None = None  # the k-th action fails with a driver error (k from 0)
    slow_after_step: int | None = None  # observations are answered late from step k ...
    slow_delay_s: float = 0.0  # ... by this many seconds


class SimRobot(Robot):
    """A task's scene, stepped in real time in a child process (see the module docstring)."""

    name = "sim"

    def __init__(
        self,
        task: str,
        task_overrides: dict[str, Any] | None = None,
        seed: int = 0,
        rate_hz: float = 0.0,
        faults: SimFaults | dict[str, Any] | None = None,
        reply_timeout_s: float = 10.0,
        start_timeout_s: float = 300.0,
    ):
        if rate_hz < 0:
            raise ValueError(f"rate_hz must be >= 0 (0: the task's control_freq), got {rate_hz}")
        self.task, self.task_overrides = task, dict(task_overrides or {})
        self.seed, self.rate_hz = seed, rate_hz
        # a mapping from a config file: robolearn-deploy +robot.kwargs.faults.raise_at_step=3
        self.faults = SimFaults(**faults) if isinstance(faults, dict) else faults or SimFaults()
        self.reply_timeout_s, self.start_timeout_s = reply_timeout_s, start_timeout_s
        self._proc: mp.process.BaseProcess | None = None
        self._conn: mpc.Connection | None = None
        self._spec: ObsSpec | None = None
        self._seq = 0

    # --- Robot ---------------------------------------------------------------------------------
    @property
    def observation_spec(self) -> ObsSpec:
        if self._spec is None:
            raise RobotError("connect the sim robot first: its spec comes from the task it runs")
        return self._spec

    @property
    def is_connected(self) -> bool:
        return self._conn is not None and self._proc is not None and self._proc.is_alive()

    def connect(self) -> None:
        if self.is_connected:
            return
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        args = (child, self.task, self.task_overrides, self.seed, self.rate_hz, self.faults)
        self._proc = ctx.Process(target=_serve, args=args, daemon=True, name="robolearn-sim")
        self._proc.start()
        child.close()
        self._conn, self._seq = parent, 0
        try:
            self._spec = ObsSpec.from_dict(self._receive(0, "start", self.start_timeout_s))
            self.time_scale = (self.rate_hz or self._spec.action.control_freq) / (
                self._spec.action.control_freq
            )
        except BaseException:
            self.disconnect()
            raise

    def disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(RobotError):  # already gone: nothing to close
                self._call("close", timeout=2.0)
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.join(timeout=5.0)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(timeout=5.0)
            self._proc = None

    def get_observation(self) -> Observation:
        return self._call("observe")

    def send_action(self, action: np.ndarray) -> np.ndarray:
        action = np.asarray(action, dtype=np.float32)
        dim = self.observation_spec.action.dim
        if action.shape != (dim,):
            raise ValueError(f"sim robot: action has shape {action.shape}, expected ({dim},)")
        return self._call("act", action)

    def stop(self) -> None:
        """Hold the arm until the next reset; if the twin does not answer, end its process."""
        try:
            self._call("stop", timeout=1.0)
        except RobotError:
            if self._proc is not None and self._proc.is_alive():
                self._proc.terminate()

    def reset(self) -> Observation:
        """Re-sample the scene (the seeded sequence of the task's resets) and pause the world."""
        return self._call("reset")

    # --- sim only ------------------------------------------------------------------------------
    def set_faults(self, faults: SimFaults) -> None:
        self.faults = faults
        self._call("faults", faults)

    def status(self) -> dict[str, Any]:
        """``stopped`` (bool), ``step`` (actions this episode), ``holds`` (held periods)."""
        return self._call("status")

    # --- pipe protocol -------------------------------------------------------------------------
    def _call(self, command: str, payload: Any = None, timeout: float | None = None) -> Any:
        if self._conn is None:
            raise RobotError(f"sim robot is not connected (call {command!r})")
        self._seq += 1
        try:
            self._conn.send((self._seq, command, payload))
        except (BrokenPipeError, EOFError, OSError) as e:
            raise RobotError(f"sim robot process is gone ({e})") from e
        return self._receive(self._seq, command, timeout or self._reply_timeout())

    def _reply_timeout(self) -> float:
        return self.reply_timeout_s + self.faults.slow_delay_s

    def _receive(self, seq: int, command: str, timeout: float) -> Any:
        assert self._conn is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0 or not self._conn.poll(remaining):
                    raise RobotError(f"sim robot did not answer {command!r} within {timeout:g} s")
                reply_seq, ok, payload = self._conn.recv()
            except (EOFError, OSError) as e:
                code = self._proc.exitcode if self._proc is not None else None
                raise RobotError(f"sim robot process died (exit code {code})") from e
            if reply_seq != seq:  # the answer to a call that Ctrl-C cut short
                continue
            if not ok:
                raise RobotError(f"sim robot: {payload}")
            return payload


# --- the child process -----------------------------------------------------------------------------
class _TwinError(Exception):
    """A request the twin refuses; its message goes back to the caller as a RobotError."""


class _Twin:
    """The one-world env and its clock, in the child process."""

    def __init__(
        self,
        task: str,
        overrides: dict[str, Any],
        seed: int,
        rate_hz: float,
        faults: SimFaults,
    ):
        import torch

        from robolearn.envs.vec_env import VecEnv

        self.torch = torch
        overrides = {**overrides, "episode_length": _NO_TIME_LIMIT, "terminate_on_success": False}
        self.env = VecEnv(task, 1, seed=seed, task_overrides=overrides)
        full = self.env.spec
        keys = full.groups["policy"]
        self.spec = replace(full, terms={k: full.terms[k] for k in keys}, groups={"policy": keys})
        self.period = 1.0 / (rate_hz or full.action.control_freq)
        self.faults = faults
        self.obs: dict[str, np.ndarray] = {}
        self._begin_episode(self.env.reset()[0])

    # --- clock ---------------------------------------------------------------------------------
    def idle_timeout(self) -> float | None:
        """Seconds until the world must take a held step (``None``: paused)."""
        if not self.running:
            return None
        return max(0.0, self.state_time + self.period - time.monotonic())

    def catch_up(self) -> None:
        """Held steps for every period that passed without an action."""
        while self.running and time.monotonic() > self.state_time + self.period:
            self._physics_step(hold_action(self.spec.action, self.last_action))
            self.state_time += self.period
            self.holds += 1

    # --- requests ------------------------------------------------------------------------------
    def handle(self, command: str, payload: Any) -> Any:
        if command == "observe":
            return self.observe()
        if command == "act":
            return self.act(payload)
        if command == "reset":
            self._begin_episode(self.env.reset()[0])
            return self.observe()
        if command == "stop":
            self.stopped = True
            return None
        if command == "faults":
            self.faults = payload
            return None
        if command == "status":
            return {"stopped": self.stopped, "step": self.step, "holds": self.holds}
        raise _TwinError(f"unknown request {command!r}")

    def observe(self) -> Observation:
        faults = self.faults
        if faults.stale_after_step is not None and self.step >= faults.stale_after_step:
            if self.frozen is None:
                self.frozen = {**self.obs, "timestamp": self._stamp()}
            obs = dict(self.frozen)
        else:
            obs = {**self.obs, "timestamp": self._stamp()}
        if faults.slow_after_step is not None and self.step >= faults.slow_after_step:
            time.sleep(faults.slow_delay_s)
        return obs

    def act(self, action: np.ndarray) -> np.ndarray:
        if self.stopped:
            raise _TwinError("the arm is stopped; reset() before sending actions")
        if self.faults.raise_at_step is not None and self.step == self.faults.raise_at_step:
            self.stopped = True
            raise _TwinError(f"injected driver fault at step {self.step}")
        if not np.isfinite(action).all():
            self.stopped = True
            raise _TwinError(f"non-finite action {action.tolist()} refused; the arm holds")
        sent = np.clip(action, self.spec.action.low, self.spec.action.high).astype(np.float32)
        now = time.monotonic()
        start = max(self.state_time, now) if self.running else now
        self._physics_step(sent)
        self.state_time, self.running = start + self.period, True
        self.last_action = sent
        self.step += 1
        return sent

    def hold(self) -> None:
        """Leave the arm where it is (on exit: the servo targets stay, nothing moves)."""
        self.stopped = True

    # --- internals -----------------------------------------------------------------------------
    def _begin_episode(self, obs: dict[str, dict[str, Any]]) -> None:
        self._set_obs(obs["policy"], success=False, reward=0.0, terminated=False)
        self.running, self.stopped, self.frozen = False, False, None
        self.state_time, self.step, self.holds = time.monotonic(), 0, 0
        self.last_action: np.ndarray | None = None

    def _stamp(self) -> float:
        now = time.monotonic()
        # The time the state stands for: after an action, the end of its period, which the twin
        # computes at once and may serve just before that time comes. Clipping it to the read
        # time shrank the gap between two stamps below the motion between them, and the safety
        # layer's joint speeds (motion / gap) rose past their limit under a loaded CPU.
        return self.state_time if self.running else now

    def _physics_step(self, action: np.ndarray) -> None:
        torch = self.torch
        obs, reward, terminated, truncated, info = self.env.step(
            torch.as_tensor(action, dtype=torch.float32).reshape(1, -1)
        )
        done = bool(terminated[0] | truncated[0])
        group = (info["final_obs"] if done else obs)["policy"]
        self._set_obs(
            group,
            success=bool(info["success"][0]),
            reward=float(reward[0]),
            terminated=bool(terminated[0]),
        )

    def _set_obs(self, group: dict[str, Any], *, success: bool, reward: float, terminated: bool):
        self.obs = {k: group[k][0].detach().cpu().numpy().astype(np.float32) for k in group}
        self.obs |= {
            "success": np.bool_(success),
            "reward": np.float32(reward),
            "terminated": np.bool_(terminated),
        }


def _serve(
    conn: mpc.Connection,
    task: str,
    overrides: dict[str, Any],
    seed: int,
    rate_hz: float,
    faults: SimFaults,
) -> None:
    """The child's main loop: answer requests, hold when no action comes, exit on close/EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the deploy process's to handle
    import torch

    torch.set_num_threads(1)
    try:
        twin = _Twin(task, overrides, seed, rate_hz, faults)
    except Exception as e:  # bad task settings: tell the parent instead of dying silently
        conn.send((0, False, f"cannot build the {task!r} twin: {type(e).__name__}: {e}"))
        return
    conn.send((0, True, twin.spec.to_dict()))
    try:
        while True:
            twin.catch_up()
            if not conn.poll(twin.idle_timeout()):
                continue  # a period passed without an action: catch_up holds
            seq, command, payload = conn.recv()
            if command == "close":
                conn.send((seq, True, None))
                break
            try:
                conn.send((seq, True, twin.handle(command, payload)))
            except _TwinError as e:
                conn.send((seq, False, str(e)))
    except (EOFError, OSError):  # the deploy process is gone
        pass
    finally:
        twin.hold()
        conn.close()
