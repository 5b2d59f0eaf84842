"""Teleoperated demonstrations: a person drives a robot through a teleop device; episodes are
recorded in the demos' HDF5 schema (``robolearn-collect robot=<name> teleop=<device>``).

At every tick of the robot's control rate (the spec's ``control_freq``): read an observation,
which completes the previous step's transition, handle the episode keys, send the device's
action through the :class:`~robolearn.real.safety.SafetyLayer`. The arm follows the operator
between episodes too, so the scene can be set up with it; only transitions between ``start``
and ``stop``/``discard`` are kept. On ``start`` the robot resets when it can (the sim twin
re-samples its scene; a real arm cannot, and the operator resets the scene by hand).

An episode is buffered until the operator decides, then written through the
:class:`~robolearn.real.recorder.EpisodeRecorder` in one go (the file on disk always holds every
saved episode, complete). ``success`` is what the robot reports at the last step when it reports
it (the sim twin), else the operator's word (``stop`` means "a good demonstration"). A fault (the
safety layer stopped the arm) or Ctrl-C ends the session; the episode in progress is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from robolearn.real.control_loop import RateScheduler
from robolearn.real.faults import Fault, FaultError
from robolearn.real.recorder import EpisodeRecorder
from robolearn.real.robot import Observation
from robolearn.real.safety import SafetyLayer
from robolearn.real.teleop import Teleop, TeleopEvent

log = logging.getLogger(__name__)

Transition = tuple[Observation, np.ndarray, Observation]


@dataclass
class SessionResult:
    saved: int = 0
    discarded: int = 0
    steps: list[int] = field(default_factory=list)  # transitions of each saved episode
    fault: Fault | None = None
    interrupted: bool = False


def record_demos(
    robot: SafetyLayer, teleop: Teleop, recorder: EpisodeRecorder, num_episodes: int
) -> SessionResult:
    """Run a teleoperation session until ``num_episodes`` are saved or the operator quits."""
    result = SessionResult()
    scheduler = RateScheduler(1.0 / robot.observation_spec.action.control_freq)
    episode: list[Transition] | None = None
    pending: tuple[Observation, np.ndarray] | None = None
    log.info("teleop: Enter starts an episode, e saves it, x discards it, q quits")
    quit_ = False
    try:
        while result.saved < num_episodes and not quit_:
            scheduler.wait()
            obs = robot.get_observation()
            if episode is not None and pending is not None:
                episode.append((*pending, obs))
            action = teleop.get_action()
            for event in teleop.events():
                if event is TeleopEvent.QUIT:
                    quit_ = True
                    break
                if event is TeleopEvent.START and episode is None:
                    obs, episode = _start(robot), []
                    log.info("episode %d: recording", result.saved + 1)
                elif event is TeleopEvent.STOP and episode is not None:
                    _save(recorder, episode, result)
                    episode = None
                elif event is TeleopEvent.DISCARD and episode is not None:
                    result.discarded += 1
                    log.info("episode discarded (%d steps)", len(episode))
                    episode = None
            if not quit_:
                pending = (obs, robot.send_action(action))
    except FaultError as e:
        result.fault = e.fault
    except KeyboardInterrupt:
        result.fault = robot.estop("SIGINT (Ctrl-C) during teleoperation")
        result.interrupted = True
    if episode:
        log.warning("the episode in progress (%d steps) was not saved", len(episode))
    return result


def _start(robot: SafetyLayer) -> Observation:
    """Reset the robot when it can; the first observation of the episode."""
    try:
        robot.reset()
    except NotImplementedError as e:
        log.info("%s: reset the scene by hand", e)
    return robot.get_observation()


def _save(recorder: EpisodeRecorder, episode: list[Transition], result: SessionResult) -> None:
    if not episode:
        log.warning("episode ended before its first complete step: not saved")
        return
    recorder.start_episode()
    for obs, action, next_obs in episode:
        reward = float(next_obs.get("reward", 0.0))
        recorder.add_step(obs, action, next_obs, reward, timestamp=float(obs["timestamp"]))
    last = episode[-1][2]
    recorder.end_episode(bool(last["success"]) if "success" in last else True)
    result.saved += 1
    result.steps.append(len(episode))
    log.info("episode %d saved (%d steps)", result.saved, len(episode))
