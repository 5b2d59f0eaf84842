"""``SafetyLayer``: wraps any :class:`Robot`, checks every observation and action, fails safe.

Checks, each configured per robot in a YAML file under ``real/`` (:class:`SafetyConfig`):

* observations: the driver answering at all, NaN/Inf, age (watchdog on stale frames), measured
  joint positions inside their limits, joint speeds (from consecutive observations and their
  timestamps, in the robot's time: see ``Robot.time_scale``) under their limits;
* actions: NaN/Inf, age of the observation the action was computed from (watchdog on policy
  latency), the per-step translation/rotation cap, and the workspace box of the TCP. Actions are
  ``ee_delta_pose`` deltas in [-1, 1]; the TCP target is the observed TCP position plus the
  translation scaled by the controller's ``max_pos_delta`` (:class:`ActionScale`).

The step cap and the workspace box may ``clamp`` (shorten the commanded motion, counted in
:attr:`SafetyLayer.clamps`) or ``stop``; every other check stops. Stopping means: call the
driver's ``stop()`` (the arm comes to rest), record a :class:`~robolearn.real.faults.Fault`
(kind, message, time, step) in :attr:`SafetyLayer.fault`, and raise
:class:`~robolearn.real.faults.FaultError` so that the control loop ends the episode and flushes
its recording. A faulted layer refuses everything until :meth:`SafetyLayer.clear_fault`.

E-stop: SIGINT (Ctrl-C) raises ``KeyboardInterrupt`` wherever the deploy process is (during a
sleep or a policy call too); the control loop catches it and calls :meth:`SafetyLayer.estop`.
:func:`start_keyboard_estop` turns Enter on the terminal into the same interrupt.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import yaml

from robolearn.assets import real_config
from robolearn.real.faults import Fault, FaultError
from robolearn.real.robot import Observation, Robot, RobotError
from robolearn.spec import ObsSpec
from robolearn.utils.config import from_dict

log = logging.getLogger(__name__)

FAULT_RESPONSES = ("stop", "clamp")


@dataclass(frozen=True)
class SafetyConfig:
    """Limits of one robot (a ``real/<robot>.yaml`` file). Empty lists and zeros turn a check
    off, so the default config checks only NaN/Inf and driver errors."""

    eef_term: str = "eef_pos"  # observation term with the TCP position (m, world frame)
    joint_term: str = "joint_pos"  # observation term with the arm's joint positions (rad)
    workspace_low: tuple[float, ...] = ()  # TCP box corners (x, y, z), m
    workspace_high: tuple[float, ...] = ()
    max_pos_step: float = 0.0  # m of TCP translation per control step
    max_rot_step: float = 0.0  # rad of TCP rotation per control step
    joint_low: tuple[float, ...] = ()  # rad, per joint
    joint_high: tuple[float, ...] = ()
    max_joint_vel: tuple[float, ...] = ()  # rad/s, per joint
    max_obs_age_s: float = 0.0  # an observation older than this when read: stale
    max_action_age_s: float = 0.0  # an action sent later than this after its observation
    on_workspace: str = "clamp"  # stop | clamp
    on_step: str = "clamp"  # stop | clamp

    def __post_init__(self) -> None:
        for key in ("on_workspace", "on_step"):
            if getattr(self, key) not in FAULT_RESPONSES:
                raise ValueError(
                    f"safety config key {key!r}: {getattr(self, key)!r}, choose from "
                    f"{FAULT_RESPONSES}"
                )
        for low, high, size in (
            ("workspace_low", "workspace_high", 3),
            ("joint_low", "joint_high", None),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            if len(lo) != len(hi) or (lo and size is not None and len(lo) != size):
                raise ValueError(
                    f"safety config keys {low!r}/{high!r}: need {size or 'equal'} entries each, "
                    f"got {len(lo)} and {len(hi)}"
                )
            if any(a >= b for a, b in zip(lo, hi, strict=True)):
                raise ValueError(f"safety config: {low!r} must be below {high!r} everywhere")
        for key in ("max_pos_step", "max_rot_step", "max_obs_age_s", "max_action_age_s"):
            if getattr(self, key) < 0:
                raise ValueError(f"safety config key {key!r} must be >= 0 (0: off)")
        if any(v <= 0 for v in self.max_joint_vel):
            raise ValueError("safety config key 'max_joint_vel': limits must be positive")

    @property
    def needs_ee_actions(self) -> bool:
        return bool(self.workspace_low or self.max_pos_step or self.max_rot_step)

    def check_spec(self, spec: ObsSpec) -> None:
        """Refuse a config that cannot be applied to a robot with ``spec``, naming the key."""
        if self.needs_ee_actions and spec.action.mode != "ee_delta_pose":
            raise ValueError(
                "safety config: workspace_*/max_pos_step/max_rot_step need ee_delta_pose "
                f"actions, the robot takes {spec.action.mode!r}"
            )
        if self.workspace_low:
            _check_term(spec, "eef_term", self.eef_term, 3)
        joints = len(self.joint_low) or len(self.max_joint_vel)
        if joints:
            _check_term(spec, "joint_term", self.joint_term, joints)
            if self.joint_low and self.max_joint_vel and len(self.max_joint_vel) != joints:
                raise ValueError(
                    f"safety config: max_joint_vel has {len(self.max_joint_vel)} entries, "
                    f"joint_low {joints}"
                )


def _check_term(spec: ObsSpec, key: str, term: str, size: int) -> None:
    if term not in spec.terms:
        raise ValueError(f"safety config key {key!r}: the robot has no observation {term!r}")
    if spec.terms[term].shape != (size,):
        raise ValueError(
            f"safety config key {key!r}: observation {term!r} has shape "
            f"{spec.terms[term].shape}, the limits need ({size},)"
        )


def find_safety_config(name: str | Path) -> Path:
    """A robot's safety file: a path (relative to the working directory), else a file of that
    name shipped under ``real/`` (``sim_panda.yaml``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path.absolute()
    try:
        return real_config(str(name))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"safety config {str(name)!r}: neither a file nor one of robolearn's real/ configs"
        ) from None


def load_safety_config(path: str | Path) -> SafetyConfig:
    """Read a safety YAML file (see :func:`find_safety_config`); errors name the file and key."""
    path = find_safety_config(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"safety config {path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"safety config {path}: must be a mapping of keys to limits")
    try:
        return from_dict(SafetyConfig, data)
    except ValueError as e:
        raise ValueError(f"safety config {path}: {e}") from None


@dataclass(frozen=True)
class ActionScale:
    """What one unit of an ``ee_delta_pose`` action moves the TCP per control step (the task's
    ``control.max_pos_delta`` and ``control.max_rot_delta``)."""

    pos: float  # m
    rot: float  # rad


class SafetyLayer(Robot):
    """A :class:`Robot` that checks what passes through it; see the module docstring."""

    def __init__(self, robot: Robot, config: SafetyConfig, scale: ActionScale | None = None):
        if config.needs_ee_actions and scale is None:
            raise ValueError("the workspace box and step caps need the action scale (ActionScale)")
        self.robot, self.config, self.scale = robot, config, scale
        self.name = f"safe_{robot.name}"
        self.fault: Fault | None = None
        self.clamps: Counter[str] = Counter()  # clamped actions per check, over the session
        self.step = 0  # actions sent this episode
        self._last_obs: Observation | None = None

    # --- Robot ---------------------------------------------------------------------------------
    @property
    def observation_spec(self) -> ObsSpec:
        return self.robot.observation_spec

    @property
    def is_connected(self) -> bool:
        return self.robot.is_connected

    def connect(self) -> None:
        self.robot.connect()
        try:
            self.config.check_spec(self.robot.observation_spec)
        except ValueError:
            self.robot.disconnect()
            raise
        if self.config.workspace_low:
            self.robot.limit_workspace(self.config.workspace_low, self.config.workspace_high)

    def disconnect(self) -> None:
        self.robot.disconnect()

    def stop(self) -> None:
        try:
            self.robot.stop()
        except Exception:  # the arm may still be moving: say so loudly, keep failing safe
            log.critical("%s: stop() failed; check the arm", self.robot.name, exc_info=True)

    def reset(self) -> Observation:
        if self.fault is not None:
            raise RobotError(f"robot faulted ({self.fault}); clear_fault() after checking the arm")
        # A new episode's counters even when the arm cannot reset itself (NotImplementedError:
        # a person resets the scene), so that its faults are stamped with its own steps.
        self.step, self._last_obs = 0, None
        return self.robot.reset()

    def get_observation(self) -> Observation:
        self._refuse_if_faulted()
        try:
            obs = self.robot.get_observation()
        except RobotError as e:
            self._trip("driver_error", str(e))
        now = time.monotonic()
        spec = self.observation_spec
        for key in spec.groups["policy"]:
            if key not in obs:
                self._trip("driver_error", f"observation lacks the term {key!r}")
            if not np.isfinite(obs[key]).all():
                self._trip("nan", f"observation {key!r} contains NaN/Inf")
        age = now - float(obs["timestamp"])
        if self.config.max_obs_age_s and age > self.config.max_obs_age_s:
            self._trip(
                "stale_observation",
                f"observation is {age * 1e3:.0f} ms old (limit {self.config.max_obs_age_s * 1e3:.0f} ms)",
            )
        self._check_joints(obs)
        self._last_obs = obs
        return obs

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self._refuse_if_faulted()
        if self._last_obs is None:
            raise RobotError("send_action before get_observation: the checks need the state")
        spec = self.observation_spec.action
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (spec.dim,):
            raise ValueError(f"action has shape {action.shape}, the robot takes ({spec.dim},)")
        if not np.isfinite(action).all():
            self._trip("nan", f"action contains NaN/Inf: {np.round(action, 3).tolist()}")
        age = time.monotonic() - float(self._last_obs["timestamp"])
        if self.config.max_action_age_s and age > self.config.max_action_age_s:
            self._trip(
                "policy_latency",
                f"action computed from an observation {age * 1e3:.0f} ms old "
                f"(limit {self.config.max_action_age_s * 1e3:.0f} ms)",
            )
        action = np.clip(action, spec.low, spec.high)
        if self.scale is not None:
            # Box first, then the cap: a TCP already outside the box is brought back by at most
            # one capped step per control period, never by the box clamp's full-scale move.
            action = self._limit_workspace(action)
            action = self._limit_step(action)
        try:
            sent = self.robot.send_action(action)
        except RobotError as e:
            self._trip("driver_error", str(e))
        self.step += 1
        return sent

    # --- faults --------------------------------------------------------------------------------
    def estop(self, message: str) -> Fault:
        """Stop the arm now and record an e-stop (SIGINT, keyboard)."""
        return self._record("estop", message)

    def clear_fault(self) -> None:
        """Accept the fault (after checking the arm) so that :meth:`reset` works again."""
        self.fault = None

    def _record(self, kind: str, message: str) -> Fault:
        self.stop()
        self.fault = Fault.now(kind, message, self.step)
        log.error("%s: fault %s; arm stopped", self.robot.name, self.fault)
        return self.fault

    def _trip(self, kind: str, message: str) -> NoReturn:
        raise FaultError(self._record(kind, message))

    def _refuse_if_faulted(self) -> None:
        if self.fault is not None:
            raise FaultError(self.fault)

    # --- checks --------------------------------------------------------------------------------
    def _check_joints(self, obs: Observation) -> None:
        cfg = self.config
        if not (cfg.joint_low or cfg.max_joint_vel):
            return
        q = np.asarray(obs[cfg.joint_term], dtype=np.float64)
        if cfg.joint_low:
            low, high = np.asarray(cfg.joint_low), np.asarray(cfg.joint_high)
            bad = np.flatnonzero((q < low) | (q > high))
            if bad.size:
                i = int(bad[0])
                self._trip(
                    "joint_limit",
                    f"joint {i + 1} at {q[i]:.3f} rad, limits [{low[i]:.3f}, {high[i]:.3f}]",
                )
        previous = self._last_obs
        if cfg.max_joint_vel and previous is not None:
            dt = (float(obs["timestamp"]) - float(previous["timestamp"])) * self.robot.time_scale
            if dt > 0:
                vel = np.abs(q - np.asarray(previous[cfg.joint_term])) / dt
                limit = np.asarray(cfg.max_joint_vel)
                bad = np.flatnonzero(vel > limit)
                if bad.size:
                    i = int(bad[0])
                    self._trip(
                        "joint_velocity",
                        f"joint {i + 1} moves at {vel[i]:.2f} rad/s, limit {limit[i]:.2f}",
                    )

    def _limit_step(self, action: np.ndarray) -> np.ndarray:
        cfg, scale = self.config, self.scale
        assert scale is not None
        for check, cap, units, dims, per_unit in (
            ("translation", cfg.max_pos_step, "m", slice(0, 3), scale.pos),
            ("rotation", cfg.max_rot_step, "rad", slice(3, 6), scale.rot),
        ):
            size = float(np.linalg.norm(action[dims])) * per_unit
            if not cap or size <= cap * (1 + 1e-6):
                continue
            if cfg.on_step == "stop":
                self._trip("step", f"{check} of {size:.4f} {units} per step, cap {cap:.4f}")
            action = action.copy()
            action[dims] *= cap / size
            self.clamps["step"] += 1
        return action

    def _limit_workspace(self, action: np.ndarray) -> np.ndarray:
        cfg, scale = self.config, self.scale
        if not cfg.workspace_low:
            return action
        assert scale is not None and self._last_obs is not None
        eef = np.asarray(self._last_obs[cfg.eef_term], dtype=np.float64)
        target = eef + action[:3] * scale.pos
        inside = np.clip(target, cfg.workspace_low, cfg.workspace_high)
        if np.allclose(inside, target, rtol=0, atol=1e-9):
            return action
        if cfg.on_workspace == "stop":
            self._trip(
                "workspace",
                f"TCP target {np.round(target, 3).tolist()} outside the box "
                f"{list(cfg.workspace_low)}..{list(cfg.workspace_high)}",
            )
        action = action.copy()
        action[:3] = np.clip((inside - eef) / scale.pos, -1.0, 1.0)
        self.clamps["workspace"] += 1
        return action


def interrupt_main_now() -> None:
    """Deliver SIGINT to the main thread: its handler (Ctrl-C's e-stop path) runs at once, even
    from inside a blocking call (a sleep, a pipe poll, a vendor call), which the signal
    interrupts. ``_thread.interrupt_main`` only schedules the handler for when the main thread
    next runs Python code: up to a control period late, or never while a call hangs."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


def start_keyboard_estop() -> threading.Thread | None:
    """Enter on the terminal interrupts the main thread like Ctrl-C (the e-stop path).

    Returns the listening daemon thread, or ``None`` when stdin is not a terminal.
    """
    if not sys.stdin.isatty():
        return None

    def listen() -> None:
        if sys.stdin.readline():
            interrupt_main_now()

    thread = threading.Thread(target=listen, name="keyboard-estop", daemon=True)
    thread.start()
    return thread
