"""``ControlLoop`` + ``SimRobot`` + ``EpisodeRecorder``: the loop's structure at 100 Hz, chunk
execution, and every fault path: the arm stops (or the action is clamped), the reason is in the
result, and the episode recorded so far is a valid dataset on disk."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time

import h5py
import numpy as np
import pytest
import torch

from robolearn.data.hdf5 import EpisodeWriter, validate_dataset
from robolearn.policies.base import PolicyConfig
from robolearn.real import recorder as recorder_module
from robolearn.real.control_loop import ControlLoop, EpisodeResult, LoopConfig, RateScheduler
from robolearn.real.drivers.sim import SimFaults, SimRobot
from robolearn.real.recorder import EpisodeRecorder, RecordingError
from robolearn.real.safety import ActionScale, SafetyConfig, SafetyLayer
from robolearn.spec import ObsSpec

RATE = 100.0  # Hz: fast tests; the twin runs 5x faster than real time
SCALE = ActionScale(pos=0.05, rot=0.25)  # lift's controller (conf/task/lift.yaml defaults)


class ScriptedPolicy:
    """A chunking policy that returns ``action`` chunks; optionally slow, or NaN at a plan.

    ``chunk_values``: chunk ``p`` (the ``p``-th plan) holds ``0.1 * p + 0.01 * i`` at step ``i``
    in every dimension but the gripper, to check which prediction reaches which step.
    """

    def __init__(
        self,
        spec: ObsSpec,
        action=(0, 0, 0, 0, 0, 0, -1),
        horizon: int = 4,
        n_action_steps: int = 2,
        delay_s: float = 0.0,
        nan_at_plan: int | None = None,
        chunk_values: bool = False,
    ):
        self.cfg = PolicyConfig(n_obs_steps=2, horizon=horizon, n_action_steps=n_action_steps)
        self.spec, self.obs_keys = spec, spec.groups["policy"]
        self.action = torch.tensor(action, dtype=torch.float32)
        self.delay_s, self.nan_at_plan, self.chunk_values = delay_s, nan_at_plan, chunk_values
        self.plans = 0
        self.windows: list[dict[str, torch.Tensor]] = []

    def reset(self) -> None:
        self.plans = 0

    def predict_action(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        self.windows.append(obs)
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        chunk = self.action.repeat(1, self.cfg.horizon, 1)
        if self.chunk_values:
            steps = torch.arange(self.cfg.horizon, dtype=torch.float32)
            chunk[0, :, :-1] = (0.1 * self.plans + 0.01 * steps)[:, None]
        if self.plans == self.nan_at_plan:
            chunk[:] = float("nan")
        self.plans += 1
        return chunk


@pytest.fixture(scope="module")
def sim():
    robot = SimRobot("lift", seed=3, rate_hz=RATE)
    robot.connect()
    yield robot
    robot.disconnect()


@pytest.fixture
def twin(sim):
    sim.set_faults(SimFaults())
    return sim


def run(
    robot,
    tmp_path,
    policy=None,
    max_steps=12,
    episodes=1,
    safety: SafetyConfig | None = None,
    **loop,
) -> tuple[list[EpisodeResult], SafetyLayer, str]:
    safe = SafetyLayer(robot, safety or SafetyConfig(), SCALE)
    spec = robot.observation_spec
    path = tmp_path / "episodes.hdf5"
    recorder = EpisodeRecorder(path, spec, {"env_name": "lift", "robot": "sim"})
    config = LoopConfig(max_steps=max_steps, rate_hz=RATE, stop_on_success=False, **loop)
    control = ControlLoop(safe, policy or ScriptedPolicy(spec), config, recorder)
    results = [control.run_episode() for _ in range(episodes)]
    return results, safe, path


def recorded(path) -> tuple[list[int], h5py.File]:
    """Steps per recorded episode, after validating the file."""
    info = validate_dataset(path)
    f = h5py.File(path, "r")
    return [int(f["data"][d].attrs["num_samples"]) for d in info.demos], f


def assert_fault(result: EpisodeResult, safe: SafetyLayer, sim: SimRobot, kind: str, path):
    assert result.fault is not None and result.fault.kind == kind, result.fault
    assert safe.fault == result.fault
    assert sim.status()["stopped"], "the arm was not stopped"
    steps, f = recorded(path)
    with f:
        demo = f["data/demo_0"]
        assert demo.attrs["fault_kind"] == kind and kind in demo.attrs["fault"]
        assert steps == [result.steps] or steps == [result.steps - 1]
    return steps[0]


# --- structure -------------------------------------------------------------------------------------
def test_episode_structure_and_recording(twin, tmp_path):
    policy = ScriptedPolicy(twin.observation_spec, action=(0, 0, -0.5, 0, 0, 0, -1))
    # late_action=send: on a loaded machine a late step must not turn into a hold here
    (result,), safe, path = run(twin, tmp_path, policy, max_steps=12, late_action="send")
    assert result.fault is None and result.steps == 12
    assert result.success is False  # the sim reports success; a motionless grasp fails
    # one observation per step plus the final one; monotonic timestamps; timings recorded
    assert len(result.timestamps) == 13 and np.all(np.diff(result.timestamps) > 0)
    assert len(result.period_error_s) == 13 and len(result.latency_s) == 12
    assert all(e >= 0 for e in result.period_error_s)
    assert policy.plans == 6  # receding horizon: 2 actions per chunk
    summary = result.summary()
    assert summary["latency_p99_ms"] > 0 and summary["period_error_p99_pct"] is not None
    # observation windows: the first observation repeated at the start, then sliding
    first, second = policy.windows[0]["eef_pos"][0], policy.windows[1]["eef_pos"][0]
    assert torch.equal(first[0], first[1]) and not torch.equal(second[0], second[1])
    steps, f = recorded(path)
    with f:
        demo = f["data/demo_0"]
        assert steps == [12] and demo.attrs["success"] == 0 and demo.attrs["fault"] == ""
        assert np.allclose(demo["actions"][:, 2], -0.5)  # the actions actually sent
        assert np.allclose(demo["obs/eef_pos"][1:], demo["next_obs/eef_pos"][:-1])
        assert demo["obs/eef_pos"][-1, 2] < demo["obs/eef_pos"][0, 2]  # it went down
        assert demo["dones"][-1] == 1 and np.all(np.diff(demo.attrs["timestamps"]) > 0)


def test_temporal_ensembling_weights_chunks(twin, tmp_path):
    m = 0.5
    policy = ScriptedPolicy(twin.observation_spec, horizon=3, chunk_values=True)
    (result,), _, path = run(
        twin, tmp_path, policy, max_steps=5, chunking="ensemble", ensemble_m=m, late_action="send"
    )
    assert result.fault is None and policy.plans == 5  # a plan every step
    with h5py.File(path) as f:
        sent = f["data/demo_0/actions"][:, 0]
    for step in range(5):
        starts = [s for s in range(step + 1) if step - s < 3]  # chunks covering this step
        values = np.array([0.1 * s + 0.01 * (step - s) for s in starts])
        weights = np.exp(-m * np.arange(len(values)))
        assert sent[step] == pytest.approx((weights * values).sum() / weights.sum(), abs=1e-5)


def test_rate_scheduler_skips_missed_ticks():
    clock = RateScheduler(0.01)
    first = clock.wait()
    threading.Event().wait(0.035)  # an overrun of 3+ periods
    late = clock.wait()
    assert clock.skipped >= 2  # no burst of missed ticks: it waits for the next one
    assert late - first == pytest.approx(0.01 * (1 + clock.skipped))
    assert late <= time.monotonic()


def test_sim_twin_stamps_are_the_simulated_time_between_states(twin):
    """Read right after each action (as a loaded loop may), two states one action apart are at
    least one control period apart in their stamps: joint speeds measured over the stamps are not inflated
    by how early the states were read."""
    twin.reset()
    hold = np.zeros(twin.observation_spec.action.dim, dtype=np.float32)
    stamps = []
    for _ in range(3):
        twin.send_action(hold)
        stamps.append(float(twin.get_observation()["timestamp"]))
    # (exactly one period when the actions come early; more only if the test itself runs late)
    assert np.diff(stamps).min() >= (1.0 / RATE) * (1 - 1e-9)


# --- faults ----------------------------------------------------------------------------------------
def test_stale_observations_stop_the_arm(twin, tmp_path):
    twin.set_faults(SimFaults(stale_after_step=4))
    (result,), safe, path = run(
        twin, tmp_path, max_steps=40, safety=SafetyConfig(max_obs_age_s=0.05)
    )
    assert_fault(result, safe, twin, "stale_observation", path)
    assert 4 <= result.steps < 40


def test_slow_driver_responses_stop_the_arm(twin, tmp_path):
    twin.set_faults(SimFaults(slow_after_step=3, slow_delay_s=0.08))
    (result,), safe, path = run(twin, tmp_path, safety=SafetyConfig(max_obs_age_s=0.05))
    assert_fault(result, safe, twin, "stale_observation", path)
    assert result.steps == 3


def test_driver_exception_mid_episode(twin, tmp_path):
    twin.set_faults(SimFaults(raise_at_step=5))
    (result,), safe, path = run(twin, tmp_path)
    assert "injected driver fault at step 5" in result.fault.message
    assert assert_fault(result, safe, twin, "driver_error", path) == 5  # transitions 0..4


def test_nan_from_the_policy_stops_the_arm(twin, tmp_path):
    policy = ScriptedPolicy(twin.observation_spec, nan_at_plan=2)
    # late_action=send: on a loaded machine the NaN plan can be late, and a dropped (held) action
    # never reaches the safety layer
    (result,), safe, path = run(twin, tmp_path, policy, late_action="send")
    assert_fault(result, safe, twin, "nan", path)
    assert result.steps == 4  # plans 0 and 1 gave two actions each


@pytest.mark.parametrize("response", ["clamp", "stop"])
def test_action_outside_the_workspace(twin, tmp_path, response):
    box = SafetyConfig(
        workspace_low=(0.0, -1.0, -0.1), workspace_high=(1.0, 1.0, 0.3), on_workspace=response
    )
    policy = ScriptedPolicy(twin.observation_spec, action=(0, 0, 1, 0, 0, 0, -1))  # straight up
    (result,), safe, path = run(
        twin, tmp_path, policy, max_steps=15, safety=box, late_action="send"
    )
    if response == "clamp":
        assert result.fault is None and safe.clamps["workspace"] > 0
        with h5py.File(path) as f:
            demo = f["data/demo_0"]
            assert demo["actions"][-1, 2] < 1.0  # shortened
            target = demo["obs/eef_pos"][:, 2] + demo["actions"][:, 2] * SCALE.pos
            assert target.max() <= 0.3 + 1e-4
    else:
        assert_fault(result, safe, twin, "workspace", path)
        assert "outside the box" in result.fault.message


def test_policy_slower_than_the_period(twin, tmp_path):
    # 1.5 periods per chunk: those steps miss their deadline; their actions are dropped (held)
    slow = ScriptedPolicy(twin.observation_spec, action=(0.3, 0, 0, 0, 0, 0, 1), delay_s=0.015)
    (result,), safe, path = run(twin, tmp_path, slow, max_steps=8)
    assert result.fault is None and result.late_actions >= 1
    with h5py.File(path) as f:
        sent = f["data/demo_0/actions"][()]
    held = np.all(sent[:, :6] == 0, axis=1)
    assert held.sum() == result.late_actions and not held.all()
    previous_gripper = np.concatenate([[-1.0], sent[:-1, 6]])  # open before the first action
    assert np.all(sent[held, 6] == previous_gripper[held])  # holding keeps the gripper
    # beyond the watchdog's limit, the arm stops
    slower = ScriptedPolicy(twin.observation_spec, delay_s=0.06)
    (result,), safe, path = run(
        twin, tmp_path / "w", slower, safety=SafetyConfig(max_action_age_s=0.04)
    )
    assert result.fault.kind == "policy_latency" and twin.status()["stopped"]
    assert result.steps == 0 and not path.exists()  # no complete step: nothing to record


class InterruptingPolicy(ScriptedPolicy):
    """Sends this process a real SIGINT while planning chunk ``at_plan``: mid-episode at a
    known step, whatever the machine's load (a timer thread may fire before or after)."""

    def __init__(self, spec: ObsSpec, at_plan: int):
        super().__init__(spec)
        self.at_plan = at_plan

    def predict_action(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.plans == self.at_plan:
            os.kill(os.getpid(), signal.SIGINT)
        return super().predict_action(obs)


def test_sigint_during_an_episode(twin, tmp_path):
    # Python's own handler, as in a terminal and as robolearn-deploy installs it (a test run as a
    # background job inherits SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        policy = InterruptingPolicy(twin.observation_spec, at_plan=3)
        (result,), safe, path = run(twin, tmp_path, policy, max_steps=1000)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.steps == 3 * policy.cfg.n_action_steps  # the plans before the interrupt
    assert "SIGINT" in result.fault.message
    assert_fault(result, safe, twin, "estop", path)


def test_disk_full_keeps_the_episodes_already_written(twin, tmp_path, monkeypatch):
    real_add = EpisodeWriter.add_episode

    def add_episode(writer, *args, **kwargs):
        if writer.num_episodes == 1:  # writing the second episode
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add(writer, *args, **kwargs)

    monkeypatch.setattr(recorder_module.EpisodeWriter, "add_episode", add_episode)
    with pytest.raises(RecordingError, match="No space left.*1 earlier episode") as info:
        run(twin, tmp_path, max_steps=5, episodes=2)
    assert info.value.errno == errno.ENOSPC
    steps, f = recorded(tmp_path / "episodes.hdf5")
    f.close()
    assert steps == [5]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_sim_robot_process_death_is_a_driver_error(tmp_path):
    robot = SimRobot("lift", rate_hz=RATE)
    robot.connect()
    try:
        safe = SafetyLayer(robot, SafetyConfig(), SCALE)
        safe.reset()
        safe.get_observation()
        robot._proc.kill()
        robot._proc.join()
        with pytest.raises(Exception, match="process"):
            safe.send_action(np.zeros(7, np.float32))
        assert safe.fault is not None and safe.fault.kind == "driver_error"
    finally:
        robot.disconnect()


def test_a_robot_that_cannot_reset_waits_for_the_operator(twin, tmp_path, monkeypatch, caplog):
    """A real arm cannot reset the scene: the loop holds for ``manual_reset_s`` (Enter is the
    e-stop, so no prompt), then runs the episode from wherever the scene is."""

    def cannot_reset():
        raise NotImplementedError("sim-as-real cannot reset the scene by itself")

    monkeypatch.setattr(twin, "reset", cannot_reset)
    start = time.monotonic()
    (result,), _, path = run(twin, tmp_path, max_steps=4, manual_reset_s=0.3)
    # sleep guarantees at least its duration (the observation's timestamp is the driver's clock,
    # which may have stamped a frame captured during the wait, so time the whole run here)
    assert time.monotonic() - start >= 0.3
    assert "reset the scene by hand; next episode in 0.3 s" in caplog.text
    assert result.fault is None and result.steps == 4
    assert recorded(path)[0] == [4]


def test_manual_reset_time_is_validated():
    with pytest.raises(ValueError, match="manual_reset_s"):
        LoopConfig(manual_reset_s=-1.0)


def test_an_episode_whose_write_was_interrupted_is_published_on_close(tmp_path, monkeypatch):
    """Ctrl-C during the file write: the episode is kept in memory, and close() writes it."""
    from robolearn.spec import ActionSpec, TermSpec

    spec = ObsSpec(
        terms={"eef_pos": TermSpec((3,))},
        groups={"policy": ("eef_pos",)},
        action=ActionSpec(dim=7),
        task="fake",
    )
    recorder = EpisodeRecorder(tmp_path / "episodes.hdf5", spec, {"env_name": "fake"})
    real_add, calls = EpisodeWriter.add_episode, {"n": 0}

    def interrupted_once(writer, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real_add(writer, *args, **kwargs)

    monkeypatch.setattr(recorder_module.EpisodeWriter, "add_episode", interrupted_once)
    recorder.start_episode()
    obs = {"eef_pos": np.zeros(3, np.float32), "timestamp": 0.0}
    recorder.add_step(obs, np.zeros(7, np.float32), obs, done=True)
    with pytest.raises(KeyboardInterrupt):
        recorder.end_episode(True)
    assert recorder.close() == tmp_path / "episodes.hdf5"
    steps, f = recorded(tmp_path / "episodes.hdf5")
    f.close()
    assert steps == [1]
