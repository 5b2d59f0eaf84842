"""``robolearn-deploy``: a checkpoint's policy on a robot, every episode recorded.

    robolearn-deploy checkpoint=outputs/2025-06-01/12-00-00_edm_cpu_lift            # sim twin
    robolearn-deploy checkpoint=<run or checkpoint dir> robot=sim num_episodes=50
    robolearn-deploy checkpoint=<dir> robot=<vendor> chunking=ensemble

The robot is a config group (``conf/robot/<name>.yaml``: ``name``, ``driver``, ``kwargs``,
``safety``); every action goes through a :class:`~robolearn.real.safety.SafetyLayer` with the
robot's limits from ``real/``. A checkpoint whose observation or action spec does not match the
robot's is refused naming the key. Each episode is recorded to ``<run dir>/episodes.hdf5``
(robomimic schema, the demos' own) and summarised (steps, success, fault, latency, period
error); ``deploy_info.json`` holds the summaries and the overall success rate with its Wilson
95% interval. A fault stops the arm, ends the run, and is printed with its reason.

Exit status: 0 every episode ran; 1 a fault (driver or safety) ended the run early, or the
recording could not be written; 2 bad input (config, checkpoint, spec mismatch); 130 Ctrl-C or
the keyboard e-stop.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import robolearn
from robolearn.assets import conf_dir
from robolearn.checkpoint import check_policy_env_compatible, load_policy
from robolearn.cli.common import (
    BAD_INPUT,
    EXIT_INTERRUPTED,
    checkpoint_settings,
    fail,
    parse_device,
    run_hydra_main,
)
from robolearn.cli.eval import _task_of
from robolearn.real.control_loop import ControlLoop, EpisodeResult, LoopConfig
from robolearn.real.drivers import make_robot
from robolearn.real.recorder import EpisodeRecorder, RecordingError
from robolearn.real.robot import Robot, RobotError
from robolearn.real.safety import (
    ActionScale,
    SafetyLayer,
    load_safety_config,
    start_keyboard_estop,
)
from robolearn.tasks import make_task
from robolearn.utils.files import write_text_atomic
from robolearn.utils.stats import wilson_interval

PROG = "robolearn-deploy"
EXIT_FAULT = 1
RECORDING_FILE = "episodes.hdf5"
DEPLOY_INFO_FILE = "deploy_info.json"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RobotSettings:
    """A ``conf/robot/<name>.yaml`` file."""

    name: str = ""
    driver: str = ""  # a registered driver name or 'module:Class'
    kwargs: dict[str, Any] = field(default_factory=dict)
    safety: str = ""  # a file under real/, or a path

    def __post_init__(self) -> None:
        for key in ("name", "driver", "safety"):
            if not getattr(self, key):
                raise ValueError(f"the robot config needs `robot.{key}`")


@dataclass(frozen=True)
class DeploySettings:
    """``conf/deploy.yaml``."""

    robot: RobotSettings
    checkpoint: str = ""
    num_episodes: int = 10
    max_steps: int = 0
    rate_hz: float = 0.0
    chunking: str = "receding"
    ensemble_m: float = 0.01
    late_action: str = "drop"
    stop_on_success: bool = True
    manual_reset_s: float = 10.0
    record: bool = True
    keyboard_estop: bool = True
    use_ema: bool = True
    device: str = "cpu"
    threads: int = 1
    seed: int = 100000

    def __post_init__(self) -> None:
        if self.num_episodes <= 0:
            raise ValueError(f"num_episodes must be positive, got {self.num_episodes}")
        if self.max_steps < 0 or self.threads < 0:
            raise ValueError("max_steps and threads must be >= 0 (0: the default)")


@dataclass
class DeployReport:
    episodes: list[EpisodeResult]
    successes: int
    known: int  # episodes whose success the robot reported
    ci95: tuple[float, float]
    recording: Path | None
    deploy_info: Path
    exit_code: int


@hydra.main(config_path=str(conf_dir()), config_name="deploy", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    settings, checkpoint = checkpoint_settings(PROG, cfg, DeploySettings, "deploy")
    report = run_deployment(settings, checkpoint, Path(HydraConfig.get().runtime.output_dir))
    if report.exit_code:
        raise SystemExit(report.exit_code)


def run_deployment(settings: DeploySettings, checkpoint: Path, out_dir: Path) -> DeployReport:
    """Deploy ``checkpoint`` on the configured robot; bad input exits 2 (see the module doc)."""
    try:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        parse_device(settings.device)
        policy = load_policy(checkpoint, settings.device, use_ema=settings.use_ema)
        task, task_overrides = _task_of(checkpoint)
        task_cfg = make_task(task, task_overrides).cfg
        loop_cfg = LoopConfig(
            max_steps=settings.max_steps or task_cfg.episode_length,
            rate_hz=settings.rate_hz,
            chunking=settings.chunking,
            ensemble_m=settings.ensemble_m,
            late_action=settings.late_action,
            stop_on_success=settings.stop_on_success,
            manual_reset_s=settings.manual_reset_s,
        )
        scale = ActionScale(task_cfg.control.max_pos_delta, task_cfg.control.max_rot_delta)
        robot = make_robot(
            settings.robot.driver,
            settings.robot.kwargs,
            defaults={
                "task": task,
                "task_overrides": task_overrides,
                "rate_hz": settings.rate_hz,
                "control_freq": task_cfg.control_freq,
                "max_pos_delta": scale.pos,
                "max_rot_delta": scale.rot,
            },
        )
        check_robot_matches_training(robot, task_cfg.control_freq, scale, settings.rate_hz)
        safety = load_safety_config(settings.robot.safety)
        safe = SafetyLayer(robot, safety, scale)
    except (*BAD_INPUT, ImportError) as e:
        fail(PROG, e)
    try:
        safe.connect()
    except ValueError as e:  # the safety config does not fit the robot
        fail(PROG, e)
    except RobotError as e:
        fail(PROG, f"robot {settings.robot.name!r} did not connect: {e}")
    try:
        return _run(settings, checkpoint, out_dir, policy, safe, loop_cfg, task, task_overrides)
    finally:
        safe.disconnect()


def _run(
    settings: DeploySettings,
    checkpoint: Path,
    out_dir: Path,
    policy: Any,
    safe: SafetyLayer,
    loop_cfg: LoopConfig,
    task: str,
    task_overrides: dict[str, Any],
) -> DeployReport:
    try:
        check_policy_env_compatible(policy, safe.observation_spec)
    except ValueError as e:
        fail(PROG, f"checkpoint {checkpoint} does not fit robot {settings.robot.name!r}: {e}")
    recorder = None
    if settings.record:
        env_args = {
            "env_name": task,
            "env_kwargs": task_overrides,
            "robot": settings.robot.name,
            "driver": settings.robot.driver,
            "checkpoint": str(checkpoint),
        }
        recorder = EpisodeRecorder(out_dir / RECORDING_FILE, safe.observation_spec, env_args)
    loop = ControlLoop(safe, policy, loop_cfg, recorder, settings.device)
    if settings.keyboard_estop and start_keyboard_estop() is not None:
        log.info("e-stop: Ctrl-C or Enter")
    torch.manual_seed(settings.seed)
    episodes: list[EpisodeResult] = []
    exit_code = 0
    try:
        for i in range(settings.num_episodes):
            result = loop.run_episode()
            episodes.append(result)
            log.info("episode %d/%d: %s", i + 1, settings.num_episodes, _episode_line(result))
            if result.fault is not None:
                log.error("fault: %s; the arm is stopped, the run ends", result.fault)
                interrupted = result.fault.kind == "estop"
                exit_code = EXIT_INTERRUPTED if interrupted else EXIT_FAULT
                break
    except RecordingError as e:
        log.error("recording failed: %s; the run ends", e)
        safe.stop()
        exit_code = EXIT_FAULT
    except RobotError as e:  # the robot could not start an episode (reset failed)
        log.error("robot error between episodes: %s; the run ends", e)
        safe.stop()
        exit_code = EXIT_FAULT
    except KeyboardInterrupt:  # between episodes (during a reset)
        safe.estop("SIGINT (Ctrl-C) or keyboard e-stop between episodes")
        log.error("interrupted between episodes; the arm is stopped")
        exit_code = EXIT_INTERRUPTED
    return _report(settings, checkpoint, out_dir, episodes, safe, recorder, exit_code)


def _report(
    settings: DeploySettings,
    checkpoint: Path,
    out_dir: Path,
    episodes: list[EpisodeResult],
    safe: SafetyLayer,
    recorder: EpisodeRecorder | None,
    exit_code: int,
) -> DeployReport:
    known = [r.success for r in episodes if r.success is not None]
    successes = sum(known)
    ci95 = wilson_interval(successes, len(known))
    if known:
        log.info(
            "success %d/%d = %.1f%% (95%% Wilson CI %.1f%%-%.1f%%)",
            successes,
            len(known),
            100 * successes / len(known),
            100 * ci95[0],
            100 * ci95[1],
        )
    else:
        log.info("the robot does not report success; judge the %d episodes yourself", len(episodes))
    if safe.clamps:
        log.info("clamped actions: %s", dict(safe.clamps))
    recording = recorder.close() if recorder is not None else None
    if recording is not None:
        log.info("recorded %d episodes to %s", recorder.num_written, recording)
    info = {
        "checkpoint": str(checkpoint),
        "robot": asdict(settings.robot),
        "settings": {k: v for k, v in asdict(settings).items() if k != "robot"},
        "episodes": [r.summary() for r in episodes],
        "successes": successes,
        "episodes_with_success_known": len(known),
        "success_rate": successes / len(known) if known else None,
        "ci95": list(ci95),
        "clamps": dict(safe.clamps),
        "recording": None if recording is None else str(recording),
        "exit_code": exit_code,
        "robolearn_version": robolearn.__version__,
    }
    path = out_dir / DEPLOY_INFO_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(info, indent=2))
    return DeployReport(episodes, successes, len(known), ci95, recording, path, exit_code)


def _episode_line(result: EpisodeResult) -> str:
    s = result.summary()
    success = {True: "yes", False: "no", None: "unknown"}[result.success]
    return (
        f"{s['steps']} steps, success {success}, fault {result.fault or '-'}, "
        f"latency mean {s['latency_mean_ms']} ms p99 {s['latency_p99_ms']} ms, "
        f"period error p99 {s['period_error_p99_pct']}%, late {s['late_actions']}"
    )


def check_robot_matches_training(
    robot: Robot, control_freq: float, scale: ActionScale, rate_hz: float
) -> None:
    """Refuse a robot that would move the trained policy by other amounts per step than in
    training: its own action scale, or a loop rate other than the trained one on a driver that
    cannot follow it (only the sim twin steps its physics at ``rate_hz``; 0: unset)."""
    for name, trained in (("max_pos_delta", scale.pos), ("max_rot_delta", scale.rot)):
        own = getattr(robot, name, None)
        if own is not None and not math.isclose(own, trained, rel_tol=1e-6):
            raise ValueError(
                f"robot {robot.name!r}: {name} = {own}, the checkpoint was trained with {trained}: "
                "each action would move the arm by a different amount; drop it from the robot's "
                "kwargs (the checkpoint's is the default)"
            )
    follows_rate = "rate_hz" in inspect.signature(type(robot)).parameters
    if rate_hz and not follows_rate and not math.isclose(rate_hz, control_freq, rel_tol=1e-6):
        raise ValueError(
            f"rate_hz={rate_hz}: the checkpoint was trained at {control_freq} Hz and robot "
            f"{robot.name!r} moves by its action scale per command, so it would run "
            f"{rate_hz / control_freq:.2g}x as fast as trained; leave rate_hz unset"
        )


def main() -> None:
    # SIGINT is an e-stop. A process started with it ignored (a background job of a
    # non-interactive shell inherits SIG_IGN, and Python then installs no handler) would not stop
    # on Ctrl-C or ``kill -INT``: make it raise KeyboardInterrupt whatever was inherited.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run_hydra_main(PROG, _main)
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    main()
