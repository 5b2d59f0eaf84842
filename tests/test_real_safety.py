"""``SafetyLayer`` on an in-process fake robot: each check clamps or stops as configured, records
the fault and stops the arm; configs load from ``real/`` and refuse bad keys by name."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from robolearn.assets import real_config
from robolearn.envs.vec_env import VecEnv
from robolearn.real.faults import FaultError
from robolearn.real.robot import Robot, RobotError, hold_action
from robolearn.real.safety import ActionScale, SafetyConfig, SafetyLayer, load_safety_config
from robolearn.spec import ActionSpec, ObsSpec, TermSpec

SPEC = ObsSpec(
    terms={"joint_pos": TermSpec((7,)), "eef_pos": TermSpec((3,))},
    groups={"policy": ("joint_pos", "eef_pos")},
    action=ActionSpec(dim=7),
    task="fake",
)
SCALE = ActionScale(pos=0.05, rot=0.25)
BOX = {"workspace_low": (0.0, -0.5, 0.0), "workspace_high": (1.0, 0.5, 0.5)}


class FakeArm(Robot):
    """Reports a settable state; remembers what it was sent and whether it was stopped."""

    name = "fake"

    def __init__(self):
        self.connected, self.stopped, self.sent = False, False, []
        self.q = np.zeros(7, np.float32)
        self.eef = np.array([0.5, 0.0, 0.2], np.float32)
        self.age = 0.0  # seconds the observation is old when read
        self.error: str | None = None

    @property
    def observation_spec(self) -> ObsSpec:
        return SPEC

    @property
    def is_connected(self) -> bool:
        return self.connected

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def stop(self) -> None:
        self.stopped = True

    def reset(self):
        self.stopped = False
        return self.get_observation()

    def get_observation(self):
        if self.error:
            raise RobotError(self.error)
        return {
            "joint_pos": self.q.copy(),
            "eef_pos": self.eef.copy(),
            "timestamp": time.monotonic() - self.age,
        }

    def send_action(self, action):
        if self.error:
            raise RobotError(self.error)
        self.sent.append(np.array(action))
        return np.array(action)


def layer(**config) -> tuple[SafetyLayer, FakeArm]:
    arm = FakeArm()
    safe = SafetyLayer(arm, SafetyConfig(**config), SCALE)
    safe.connect()
    safe.reset()
    return safe, arm


def action(x=0.0, y=0.0, z=0.0, gripper=-1.0) -> np.ndarray:
    return np.array([x, y, z, 0, 0, 0, gripper], np.float32)


def assert_stopped(safe: SafetyLayer, arm: FakeArm, kind: str) -> None:
    assert arm.stopped, "the arm was not stopped"
    assert safe.fault is not None and safe.fault.kind == kind
    assert safe.fault.message and safe.fault.step is not None
    with pytest.raises(FaultError):  # a faulted layer refuses everything until cleared
        safe.get_observation()
    with pytest.raises(RobotError, match="clear_fault"):
        safe.reset()
    safe.clear_fault()
    safe.reset()


def test_workspace_clamp_shortens_the_move_to_the_box_face():
    safe, arm = layer(**BOX, on_workspace="clamp")
    arm.eef[:] = (0.5, 0.0, 0.48)  # 2 cm under the ceiling; +1 asks for 5 cm up
    safe.get_observation()
    sent = safe.send_action(action(x=0.4, z=1.0))
    assert sent[2] == pytest.approx(0.02 / SCALE.pos, abs=1e-5)  # lands on z = 0.5
    assert sent[0] == pytest.approx(0.4)  # the other axes untouched
    assert safe.clamps["workspace"] == 1 and safe.fault is None and not arm.stopped


def test_the_box_is_handed_to_the_driver_on_connect(monkeypatch):
    boxes = []
    monkeypatch.setattr(
        FakeArm, "limit_workspace", lambda self, low, high: boxes.append((low, high))
    )
    layer(**BOX)
    assert boxes == [(BOX["workspace_low"], BOX["workspace_high"])]


def test_a_tcp_outside_the_box_returns_by_capped_steps():
    """A hold action with the TCP above the box: the clamp's way back is itself step-capped."""
    safe, arm = layer(**BOX, on_workspace="clamp", max_pos_step=0.02, on_step="clamp")
    arm.eef[:] = (0.5, 0.0, 0.6)  # 10 cm above the ceiling
    safe.get_observation()
    sent = safe.send_action(action())
    assert np.linalg.norm(sent[:3]) * SCALE.pos == pytest.approx(0.02, rel=1e-4)
    assert sent[2] < 0 and safe.clamps["workspace"] == 1 and safe.clamps["step"] == 1


def test_a_new_episode_counts_steps_from_zero_even_on_a_hand_reset_arm(monkeypatch):
    safe, arm = layer()
    safe.get_observation()
    safe.send_action(action())
    assert safe.step == 1

    def by_hand():
        raise NotImplementedError("reset the scene by hand")

    monkeypatch.setattr(arm, "reset", by_hand)
    with pytest.raises(NotImplementedError):
        safe.reset()
    assert safe.step == 0


def test_the_keyboard_estop_interrupts_a_blocking_call_at_once():
    from robolearn.real.safety import interrupt_main_now

    threading.Timer(0.2, interrupt_main_now).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        time.sleep(5.0)  # a control loop's wait, a vendor call
    assert time.monotonic() - start < 2.0


def test_workspace_stop_stops_the_arm_and_names_the_target():
    safe, arm = layer(**BOX, on_workspace="stop")
    arm.eef[:] = (0.5, 0.0, 0.48)
    safe.get_observation()
    with pytest.raises(FaultError, match="workspace"):
        safe.send_action(action(z=1.0))
    assert arm.sent == []
    assert_stopped(safe, arm, "workspace")


def test_step_cap_clamps_or_stops():
    safe, arm = layer(max_pos_step=0.05, on_step="clamp")
    safe.get_observation()
    sent = safe.send_action(action(x=1.0, y=1.0, z=1.0))  # 0.087 m diagonally
    assert np.linalg.norm(sent[:3]) * SCALE.pos == pytest.approx(0.05, rel=1e-4)
    assert safe.clamps["step"] == 1
    safe, arm = layer(max_pos_step=0.05, on_step="stop")
    safe.get_observation()
    with pytest.raises(FaultError):
        safe.send_action(action(x=1.0, y=1.0, z=1.0))
    assert_stopped(safe, arm, "step")


def test_nan_action_stops():
    safe, arm = layer()
    safe.get_observation()
    with pytest.raises(FaultError, match="NaN"):
        safe.send_action(action(x=float("nan")))
    assert_stopped(safe, arm, "nan")


def test_nan_observation_stops():
    safe, arm = layer()
    arm.q[3] = np.inf
    with pytest.raises(FaultError, match="joint_pos"):
        safe.get_observation()
    assert_stopped(safe, arm, "nan")


def test_stale_observation_stops():
    safe, arm = layer(max_obs_age_s=0.05)
    arm.age = 0.2
    with pytest.raises(FaultError, match="ms old"):
        safe.get_observation()
    assert_stopped(safe, arm, "stale_observation")


def test_late_action_stops():
    safe, arm = layer(max_action_age_s=0.01)
    safe.get_observation()
    time.sleep(0.03)  # the "policy" took 30 ms
    with pytest.raises(FaultError):
        safe.send_action(action())
    assert_stopped(safe, arm, "policy_latency")


def test_driver_error_stops():
    safe, arm = layer()
    safe.get_observation()
    arm.error = "connection lost"
    with pytest.raises(FaultError, match="connection lost"):
        safe.send_action(action())
    arm.error = None
    assert_stopped(safe, arm, "driver_error")


def test_joint_limits_and_speed():
    limits = {"joint_low": (-1.0,) * 7, "joint_high": (1.0,) * 7}
    safe, arm = layer(**limits)
    arm.q[2] = 1.2
    with pytest.raises(FaultError, match="joint 3"):
        safe.get_observation()
    assert_stopped(safe, arm, "joint_limit")
    safe, arm = layer(max_joint_vel=(1.0,) * 7)
    safe.get_observation()
    time.sleep(0.02)
    arm.q[0] = 0.5  # 0.5 rad in ~20 ms: ~25 rad/s
    with pytest.raises(FaultError, match="joint 1"):
        safe.get_observation()
    assert_stopped(safe, arm, "joint_velocity")


def test_estop_stops_and_records():
    safe, arm = layer()
    fault = safe.estop("SIGINT")
    assert fault.kind == "estop" and safe.fault is fault
    assert_stopped(safe, arm, "estop")


def test_action_before_observation_is_refused():
    safe, _ = layer()
    with pytest.raises(RobotError, match="before get_observation"):
        safe.send_action(action())


def test_hold_action_keeps_the_gripper():
    spec = ActionSpec(dim=7)
    assert hold_action(spec).tolist() == [0, 0, 0, 0, 0, 0, -1]
    closed = action(x=0.3, gripper=1.0)
    assert hold_action(spec, closed).tolist() == [0, 0, 0, 0, 0, 0, 1]


def test_shipped_sim_config_fits_the_lift_spec():
    config = load_safety_config(real_config("sim_panda.yaml"))
    assert config.workspace_low and config.joint_low and config.max_obs_age_s > 0
    env = VecEnv("lift", 1)
    try:
        config.check_spec(env.spec)
    finally:
        env.close()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("on_workspace: bounce\n", "on_workspace"),
        ("workspace_low: [0, 0]\nworkspace_high: [1, 1]\n", "workspace_low"),
        ("max_obs_age: 0.1\n", "max_obs_age"),
        ("max_pos_step: fast\n", "max_pos_step"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, match):
    path = tmp_path / "arm.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_safety_config(path)
    assert str(path) in str(info.value)


def test_config_that_does_not_fit_the_robot_is_refused():
    arm = FakeArm()
    safe = SafetyLayer(arm, SafetyConfig(eef_term="tcp", **BOX), SCALE)
    with pytest.raises(ValueError, match="'eef_term'.*'tcp'"):
        safe.connect()
    assert not arm.connected
    joint = SafetyLayer(FakeArm(), SafetyConfig(joint_low=(-1.0,) * 6, joint_high=(1.0,) * 6))
    with pytest.raises(ValueError, match="shape"):
        joint.connect()
