"""``robolearn-collect``: scripted-expert demonstrations into a robomimic-schema HDF5 file.

    robolearn-collect task=reach num_episodes=200
    robolearn-collect task=lift num_envs=128 output=/data/lift.hdf5 overwrite=true
    robolearn-collect task=reach task.episode_length=80 sim=warp
    robolearn-collect robot=sim teleop=keyboard task=lift num_episodes=10   # teleoperated

With ``robot=<name>`` (a ``conf/robot`` config) a person drives that robot with the ``teleop``
device instead, through the robot's safety layer, at its control rate; the episodes they save go
into the same schema (:mod:`robolearn.real.teleop_session`, docs/real-robot.md).

Bad input (unknown task, wrongly typed settings, an output that exists or cannot be written)
is rejected with a one-line message before any simulation starts; errors after that keep their
traceback, since they are bugs. Ctrl-C keeps the completed episodes in a valid file.
Exit status: 0 done, 1 fewer episodes than asked (the expert failed too often; teleoperated:
a fault stopped the arm, or the file could not be written), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from robolearn.assets import conf_dir
from robolearn.cli.common import (
    BAD_INPUT,
    EXIT_INTERRUPTED,
    demo_task_config,
    fail,
    run_hydra_main,
)
from robolearn.cli.deploy import RobotSettings
from robolearn.data.collect import CollectResult, collect
from robolearn.data.hdf5 import check_output_path
from robolearn.real.drivers import make_robot
from robolearn.real.recorder import EpisodeRecorder, RecordingError
from robolearn.real.robot import RobotError
from robolearn.real.safety import ActionScale, SafetyLayer, load_safety_config
from robolearn.real.teleop import Teleop, make_teleop
from robolearn.real.teleop_session import SessionResult, record_demos
from robolearn.sim.batched import BACKENDS
from robolearn.tasks import make_task
from robolearn.utils.config import from_dict

log = logging.getLogger(__name__)
PROG = "robolearn-collect"


@dataclass(frozen=True)
class CollectSettings:
    """The top-level keys of ``conf/collect.yaml``, typed so that bad overrides fail early."""

    num_episodes: int = 100
    num_envs: int = 64
    seed: int = 0
    output: str = ""
    overwrite: bool = False
    valid_fraction: float = 0.1
    keep_failed: bool = False
    progress: bool = True
    action_noise: float = 0.0


@dataclass(frozen=True)
class SimSettings:
    backend: str = "cpu"
    device: str | None = None


@hydra.main(config_path=str(conf_dir()), config_name="collect", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    if "robot" in cfg:
        _teleoperate(cfg)
        return
    try:
        task, overrides, sim, settings = _parse(cfg)
    except (ValueError, OSError) as e:
        fail("robolearn-collect", e)
    result = collect(
        task,
        settings.num_episodes,
        settings.output,
        num_envs=settings.num_envs,
        backend=sim.backend,
        device=sim.device,
        seed=settings.seed,
        task_overrides=overrides,
        overwrite=settings.overwrite,
        valid_fraction=settings.valid_fraction,
        keep_failed=settings.keep_failed,
        progress=settings.progress,
        action_noise=settings.action_noise,
    )
    _report(result)
    if result.interrupted:
        raise SystemExit(130)
    if result.written < result.requested:
        raise SystemExit(1)


def _parse(cfg: DictConfig) -> tuple[str, dict[str, Any], SimSettings, CollectSettings]:
    """Typed settings from the config; checks everything checkable without simulating."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    data.pop("teleop", None)  # the teleop device is for robot= sessions
    name, task_cfg = _task(data)
    task_cfg = demo_task_config(name, task_cfg, HydraConfig.get().overrides.task)
    sim = from_dict(SimSettings, data.pop("sim"), path="sim.")
    if sim.backend not in BACKENDS:
        raise ValueError(f"unknown sim backend {sim.backend!r}; choose from {BACKENDS}")
    settings = from_dict(CollectSettings, data)
    if settings.num_episodes <= 0 or settings.num_envs <= 0:
        raise ValueError("num_episodes and num_envs must be positive")
    # Checked again where they are used; here so that they fail before the simulator is built.
    if not 0.0 <= settings.valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {settings.valid_fraction}")
    if not 0.0 <= settings.action_noise < 1.0:
        raise ValueError(f"action_noise must be in [0, 1), got {settings.action_noise}")
    output = check_output_path(to_absolute_path(settings.output), settings.overwrite)
    return name, task_cfg, sim, CollectSettings(**{**vars(settings), "output": str(output)})


def _task(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The task name and settings, popped from ``data`` and checked."""
    task_cfg = dict(data.pop("task"))
    name = task_cfg.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(f"the task config needs a string `name`, got {name!r}")
    make_task(name, task_cfg)  # unknown task names and task keys, wrongly typed values
    return name, task_cfg


def _teleoperate(cfg: DictConfig) -> None:
    """``robot=<name>``: a teleoperation session recording demonstrations on that robot."""
    try:
        data = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(data, dict)
        data.pop("sim")  # the robot is the simulator, if any
        name, task_cfg = _task(data)
        robot_cfg = from_dict(RobotSettings, data.pop("robot"), path="robot.")
        teleop = make_teleop(**data.pop("teleop"))
        settings = from_dict(CollectSettings, data)
        if settings.num_episodes <= 0 or settings.overwrite:
            raise ValueError(
                "teleoperated sessions need num_episodes > 0 and never overwrite a recording "
                "(overwrite=false; choose a new output)"
            )
        output = check_output_path(to_absolute_path(settings.output))
        control = make_task(name, task_cfg).cfg.control
        robot = make_robot(
            robot_cfg.driver, robot_cfg.kwargs, {"task": name, "task_overrides": task_cfg}
        )
        safety = load_safety_config(robot_cfg.safety)
        safe = SafetyLayer(robot, safety, ActionScale(control.max_pos_delta, control.max_rot_delta))
    except (*BAD_INPUT, ImportError) as e:
        fail(PROG, e)
    try:
        teleop.connect()  # first: a device that cannot open fails before the robot moves
    except (ValueError, OSError) as e:
        fail(PROG, e)
    env_args = {
        "env_name": name,
        "env_kwargs": task_cfg,
        "robot": robot_cfg.name,
        "driver": robot_cfg.driver,
        "teleop": teleop.device,
    }
    try:
        result, recorder = _session(safe, teleop, output, settings.num_episodes, env_args)
    finally:
        teleop.disconnect()
    _report_session(result, recorder)


def _session(
    safe: SafetyLayer,
    teleop: Teleop,
    output: Path,
    num_episodes: int,
    env_args: dict[str, Any],
) -> tuple[SessionResult, EpisodeRecorder]:
    """Connect the robot, run the session, disconnect whatever happens."""
    try:
        safe.connect()
    except ValueError as e:  # the safety config does not fit the robot
        fail(PROG, e)
    except RobotError as e:
        fail(PROG, f"robot {env_args['robot']!r} did not connect: {e}")
    try:
        spec = safe.observation_spec
        spec = spec if spec.task else replace(spec, task=env_args["env_name"])
        recorder = EpisodeRecorder(output, spec, env_args)
        return record_demos(safe, teleop, recorder, num_episodes), recorder
    except RecordingError as e:
        safe.stop()
        log.error("recording failed: %s; the arm is stopped", e)
        raise SystemExit(1) from e
    finally:
        safe.disconnect()


def _report_session(result: SessionResult, recorder: EpisodeRecorder) -> None:
    path = recorder.close()
    if path is None:
        log.warning("no episode saved: no file written")
    else:
        log.info(
            "saved %d episodes (%s steps) to %s; discarded %d",
            result.saved,
            ", ".join(map(str, result.steps)),
            path,
            result.discarded,
        )
    if result.fault is not None:
        log.error("session ended by a fault: %s; the arm is stopped", result.fault)
        raise SystemExit(EXIT_INTERRUPTED if result.interrupted else 1)


def _report(result: CollectResult) -> None:
    low, high = result.success_interval
    log.info(
        "expert success %d/%d = %.1f%% (95%% Wilson CI %.1f%%-%.1f%%)",
        result.successes,
        result.attempts,
        100 * result.success_rate,
        100 * low,
        100 * high,
    )
    if result.path is None:
        log.warning("no episode completed: no file written")
    else:
        size = result.path.stat().st_size
        log.info("wrote %d episodes to %s (%.1f MiB)", result.written, result.path, size / 2**20)
    if result.interrupted:
        log.warning("interrupted: kept the %d completed episodes", result.written)
    elif result.written < result.requested:
        log.warning(
            "only %d of %d episodes: the expert failed too often", result.written, result.requested
        )


def main() -> None:
    run_hydra_main("robolearn-collect", _main)


if __name__ == "__main__":
    main()
