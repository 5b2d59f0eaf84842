"""Vendor drivers against faithful fakes of their packages (tests/fakes): units, frames, the
delta -> absolute target, gripper mapping, stop on disconnect, error translation, missing extras."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch
from fakes import fake_franky, fake_ur_rtde, fake_xarm
from fakes.fake_cameras import cv2 as fake_cv2
from fakes.fake_cameras import rs as fake_rs

from robolearn.real.drivers.cameras import OpenCVCamera, RealSenseCamera, make_camera
from robolearn.real.drivers.cartesian import FINGER_OPEN
from robolearn.real.drivers.franka import FrankaRobot
from robolearn.real.drivers.geometry import (
    mat_to_quat,
    mat_to_rotvec,
    mat_to_rpy,
    quat_to_mat,
    rotvec_to_mat,
    rpy_to_mat,
)
from robolearn.real.drivers.ur import URRobot
from robolearn.real.drivers.vendor import MissingExtraError
from robolearn.real.drivers.xarm import XArmRobot
from robolearn.real.robot import RobotError

X_PLUS = np.array([1.0, 0, 0, 0, 0, 0, 0])
CUBE_TERMS = {"cube_pos": [3], "cube_quat": [4], "cube_to_eef": [3]}


def cube_source(arm: dict) -> dict:
    """A stand-in pose estimator: a cube 10 cm in front of the TCP."""
    cube = arm["eef_pos"] + np.array([0.1, 0.0, 0.0], np.float32)
    return {
        "cube_pos": cube,
        "cube_quat": np.array([1, 0, 0, 0]),
        "cube_to_eef": cube - arm["eef_pos"],
    }


def make_ur(**kwargs) -> URRobot:
    host = kwargs.pop("host", "10.0.0.2")
    fake_ur_rtde.CONTROLLERS[host] = fake_ur_rtde.Controller()
    return URRobot(host, rtde_control=fake_ur_rtde, rtde_receive=fake_ur_rtde, **kwargs)


# --- geometry ------------------------------------------------------------------------------------
def test_rotation_conversions_round_trip_and_match_the_sim_convention():
    rng = np.random.default_rng(0)
    for v in [*rng.normal(size=(20, 3)), np.array([np.pi - 1e-7, 0, 0]), np.zeros(3)]:
        m = rotvec_to_mat(v)
        np.testing.assert_allclose(rotvec_to_mat(mat_to_rotvec(m)), m, atol=1e-6)
        np.testing.assert_allclose(quat_to_mat(mat_to_quat(m)), m, atol=1e-9)
        np.testing.assert_allclose(rpy_to_mat(mat_to_rpy(m)), m, atol=1e-9)
        # eef_quat must be the sim's (w, x, y, z), w >= 0: same numbers as robolearn.utils.
        from robolearn.utils.rotations import mat_to_quat as sim_mat_to_quat

        np.testing.assert_allclose(
            mat_to_quat(m), sim_mat_to_quat(torch.as_tensor(m)).numpy(), atol=1e-9
        )
    # xArm's convention: R = Rz(yaw) Ry(pitch) Rx(roll)
    c, s = np.cos(0.3), np.sin(0.3)
    np.testing.assert_allclose(rpy_to_mat([0, 0, 0.3]), [[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_action_scale_defaults_are_the_training_controllers():
    from robolearn.tasks.control import FINGER_OPEN as SIM_FINGER_OPEN
    from robolearn.tasks.control import ControlConfig

    robot = make_ur()
    assert (robot.max_pos_delta, robot.max_rot_delta) == (
        ControlConfig.max_pos_delta,
        ControlConfig.max_rot_delta,
    )
    assert FINGER_OPEN == SIM_FINGER_OPEN


# --- UR ------------------------------------------------------------------------------------------
def test_ur_observation_in_metres_radians_and_wxyz_quaternion():
    robot = make_ur()
    with robot:
        obs = robot.get_observation()
    np.testing.assert_allclose(obs["eef_pos"], [0.4, 0.0, 0.3], atol=1e-6)
    np.testing.assert_allclose(np.abs(obs["eef_quat"]), [0, 1, 0, 0], atol=1e-6)  # pi about x
    assert obs["joint_pos"].shape == (6,) and obs["joint_pos"].dtype == np.float32
    assert "gripper_qpos" not in obs  # no gripper given: nothing invented
    assert abs(obs["timestamp"] - time.monotonic()) < 1.0


def test_ur_delta_becomes_an_absolute_servoL_target():
    robot = make_ur()
    controller = fake_ur_rtde.CONTROLLERS[robot.host]
    with robot:
        sent = robot.send_action(np.array([1.0, 0, -0.5, 0, 0, 1.0, 0]))
        _, pose, speed, acc, t, lookahead, gain = controller.calls[-1]
        np.testing.assert_allclose(pose[:3], [0.45, 0.0, 0.275], atol=1e-9)
        # rotation: 0.25 rad about world z applied on the left of pi about x
        expected = rotvec_to_mat([0, 0, 0.25]) @ rotvec_to_mat([np.pi, 0, 0])
        np.testing.assert_allclose(rotvec_to_mat(pose[3:]), expected, atol=1e-6)
        assert t == pytest.approx(1 / 20) and (lookahead, gain) == (0.1, 300.0)
        np.testing.assert_array_equal(sent, [1.0, 0, -0.5, 0, 0, 1.0, 0])
        # out-of-range actions are clipped, and the clipped action is what send_action returns
        sent = robot.send_action(np.array([3.0, 0, 0, 0, 0, 0, 0]))
        assert sent[0] == 1.0
        assert controller.calls[-1][1][0] == pytest.approx(0.5)


def test_target_integrates_but_may_not_lead_a_blocked_arm_by_more_than_max_lead():
    robot = make_ur(max_lead_pos=0.08)
    controller = fake_ur_rtde.CONTROLLERS[robot.host]
    with robot:
        for _ in range(5):
            robot.send_action(-np.array([0, 0, 1.0, 0, 0, 0, 0]))  # down into the table
            controller.tcp_pose[2] = 0.3  # the table stops the arm
        z = controller.calls[-1][1][2]
    assert z == pytest.approx(0.3 - 0.08)  # not 0.3 - 5 * 0.05


def test_an_integrated_target_stays_in_the_workspace_while_the_arm_lags():
    """The safety layer checks steps against the measured TCP; the target that runs ahead of a
    lagging arm is clamped into the box by the driver itself."""
    robot = make_ur(max_lead_pos=0.08)
    controller = fake_ur_rtde.CONTROLLERS[robot.host]
    with robot:
        robot.limit_workspace((0.0, -0.5, 0.25), (1.0, 0.5, 0.6))
        for _ in range(5):
            robot.send_action(-np.array([0, 0, 1.0, 0, 0, 0, 0]))
            controller.tcp_pose[2] = 0.3  # the arm lags
        z = controller.calls[-1][1][2]
    assert z == pytest.approx(0.25)  # the box floor, not 0.3 - 0.08


def test_ur_refused_command_and_lost_connection_raise_robot_error():
    robot = make_ur()
    with robot:
        fake_ur_rtde.CONTROLLERS[robot.host].protective_stop = True
        with pytest.raises(RobotError, match="ur: the controller refused servoL.*protective stop"):
            robot.send_action(X_PLUS)
    unreachable = URRobot(
        fake_ur_rtde.UNREACHABLE, rtde_control=fake_ur_rtde, rtde_receive=fake_ur_rtde
    )
    with pytest.raises(RobotError, match="ur: connect failed: RuntimeError: Could not connect"):
        unreachable.connect()
    assert not unreachable.is_connected


def test_ur_disconnect_stops_the_arm_first_and_is_idempotent():
    robot = make_ur()
    controller = fake_ur_rtde.CONTROLLERS[robot.host]
    with pytest.raises(KeyboardInterrupt), robot:
        robot.send_action(X_PLUS)
        raise KeyboardInterrupt
    names = [c[0] for c in controller.calls]
    assert names[names.index("servoL") + 1 :] == ["servoStop", "stopL", "stopScript", "disconnect"]
    robot.disconnect()  # again: nothing more happens
    assert len(controller.calls) == len(names)
    with pytest.raises(RobotError, match="not connected"):
        robot.send_action(X_PLUS)


def test_ur_gripper_object_and_vendor_modules_from_sys_modules(monkeypatch):
    class Hand:
        def __init__(self):
            self.value = 1.0

        def set_opening(self, fraction):
            self.value = fraction

        def opening(self):
            return self.value

    monkeypatch.setitem(sys.modules, "rtde_control", fake_ur_rtde)
    monkeypatch.setitem(sys.modules, "rtde_receive", fake_ur_rtde)
    hand = Hand()
    with URRobot("10.0.0.3", gripper=hand) as robot:
        robot.send_action(np.array([0, 0, 0, 0, 0, 0, 1.0]))  # close
        assert hand.value == 0.0
        robot.send_action(np.array([0, 0, 0, 0, 0, 0, 0.0]))  # half
        np.testing.assert_allclose(robot.get_observation()["gripper_qpos"], [0.02, 0.02])


@pytest.mark.parametrize(
    ("driver", "module", "extra"),
    [
        (lambda: URRobot("h"), "rtde_control", "ur"),
        (lambda: FrankaRobot("h"), "franky", "franka"),
        (lambda: XArmRobot("h"), "xarm.wrapper", "xarm"),
        (lambda: OpenCVCamera(), "cv2", "cameras"),
        (lambda: RealSenseCamera(), "pyrealsense2", "cameras"),
    ],
)
def test_missing_vendor_package_names_the_extra(monkeypatch, driver, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=rf"pip install 'robolearn\[{extra}\]'"):
        driver()


# --- frames --------------------------------------------------------------------------------------
def test_base_frame_placement_converts_observations_and_actions():
    robot = make_ur(base_pos=(0.1, 0.2, 0.0), base_yaw=np.pi / 2)
    controller = fake_ur_rtde.CONTROLLERS[robot.host]
    with robot:
        # base (0.4, 0, 0.3) -> rotated 90 degrees about z -> (0, 0.4, 0.3) -> shifted
        np.testing.assert_allclose(robot.get_observation()["eef_pos"], [0.1, 0.6, 0.3], atol=1e-6)
        robot.send_action(X_PLUS)  # +x in the task frame is -y in this base frame
        np.testing.assert_allclose(controller.calls[-1][1][:3], [0.4, -0.05, 0.3], atol=1e-9)


# --- Franka --------------------------------------------------------------------------------------
def test_franka_affine_quaternion_order_gripper_and_dynamics():
    robot = FrankaRobot("172.16.0.2", franky=fake_franky, relative_dynamics_factor=0.2)
    with robot:
        arm, hand = fake_franky.ROBOTS[-1], fake_franky.GRIPPERS[-1]
        assert arm.recovered == 1 and arm.relative_dynamics_factor == 0.2
        obs = robot.get_observation()
        # franky's (x, y, z, w) = (1, 0, 0, 0) is pi about x: robolearn's (w, x, y, z) = (0, 1, 0, 0)
        np.testing.assert_allclose(obs["eef_quat"], [0, 1, 0, 0], atol=1e-9)
        np.testing.assert_allclose(obs["gripper_qpos"], [0.04, 0.04])  # width 0.08 / 2 each
        assert obs["joint_pos"].shape == (7,)

        robot.send_action(np.array([0, 0, 1.0, 0, 0, 0, -1.0]))
        motion, asynchronous = arm.moves[-1]
        assert asynchronous and motion.reference_type is fake_franky.ReferenceType.Absolute
        np.testing.assert_allclose(motion.target.translation, [0.4, 0.0, 0.35])
        np.testing.assert_allclose(np.abs(motion.target.quaternion), [1, 0, 0, 0], atol=1e-9)
        assert hand.commands == []  # already open: within the deadband, no command

        hand.object_width = 0.04
        robot.send_action(np.array([0, 0, 0, 0, 0, 0, 1.0]))  # close on a 4 cm cube
        assert hand.commands[-1] == ("grasp", 0.0, 0.1, 20.0, 1.0, 1.0)
        robot.send_action(np.array([0, 0, 0, 0, 0, 0, 1.0]))  # same target: not resent
        assert len(hand.commands) == 1
        np.testing.assert_allclose(robot.get_observation()["gripper_qpos"], [0.02, 0.02])
        robot.send_action(np.array([0, 0, 0, 0, 0, 0, -1.0]))
        assert hand.commands[-1] == ("move", 0.08, 0.1)
    assert arm.stopped == 1 and hand.stopped == 1


def test_franka_reflex_becomes_robot_error_and_recover_clears_it():
    with FrankaRobot("172.16.0.2", franky=fake_franky, gripper=False) as robot:
        arm = fake_franky.ROBOTS[-1]
        arm.reflex = "cartesian_reflex"
        with pytest.raises(
            RobotError, match="franka: command pose failed: ControlException.*reflex"
        ):
            robot.send_action(X_PLUS)
        robot.recover()
        robot.send_action(X_PLUS)
        assert "gripper_qpos" not in robot.observation_spec.terms


def test_franka_with_a_pose_source_matches_the_lift_policy_spec():
    from robolearn.envs.vec_env import VecEnv

    lift = VecEnv("lift", 1).spec
    robot = FrankaRobot(
        "172.16.0.2",
        franky=fake_franky,
        object_pose_source=cube_source,
        object_terms=CUBE_TERMS,
    )
    lift.check_compatible(robot.observation_spec, "lift checkpoint vs franka")
    with robot:
        obs = robot.get_observation()
    assert set(lift.groups["policy"]) <= set(obs)
    for name in lift.groups["policy"]:
        assert obs[name].shape == lift.terms[name].shape, name
    # Without a pose source, the checkpoint is refused naming the missing term.
    bare = FrankaRobot("172.16.0.2", franky=fake_franky)
    with pytest.raises(ValueError, match="obs key policy/cube_pos"):
        lift.check_compatible(bare.observation_spec, "lift checkpoint vs franka")


def test_a_failing_pose_source_is_a_driver_error():
    def lost(arm: dict) -> dict:
        raise RuntimeError("marker not visible")

    robot = make_ur(object_pose_source=lost, object_terms=CUBE_TERMS)
    with robot, pytest.raises(RobotError, match="read the object pose failed.*marker not visible"):
        robot.get_observation()


def test_a_pose_source_timestamp_ages_the_observation():
    """A tracker that stopped updating makes the whole observation stale (the watchdog's input)."""
    frozen_at = time.monotonic() - 5.0

    def frozen(arm: dict) -> dict:
        return {**cube_source(arm), "timestamp": frozen_at}

    with make_ur(object_pose_source=frozen, object_terms=CUBE_TERMS) as robot:
        assert robot.get_observation()["timestamp"] == pytest.approx(frozen_at)
    with make_ur(object_pose_source=cube_source, object_terms=CUBE_TERMS) as robot:
        assert time.monotonic() - robot.get_observation()["timestamp"] < 1.0


def test_pose_source_by_import_path_and_missing_terms(monkeypatch):
    module = type(sys)("my_estimator")
    module.source = lambda arm: {"cube_pos": np.zeros(3)}
    monkeypatch.setitem(sys.modules, "my_estimator", module)
    robot = FrankaRobot(
        "h", franky=fake_franky, object_pose_source="my_estimator:source", object_terms=CUBE_TERMS
    )
    with robot, pytest.raises(RobotError, match=r"returned no \['cube_quat', 'cube_to_eef'\]"):
        robot.get_observation()
    with pytest.raises(ValueError, match="need an object_pose_source"):
        FrankaRobot("h", franky=fake_franky, object_terms=CUBE_TERMS)


# --- xArm ----------------------------------------------------------------------------------------
def test_xarm_converts_millimetres_and_degrees():
    robot = XArmRobot("192.168.1.185", xarm_wrapper=fake_xarm)
    with robot:
        arm = fake_xarm.ARMS[-1]
        assert (arm.enabled, arm.mode, arm.state) == (True, 1, 0)
        obs = robot.get_observation()
        np.testing.assert_allclose(obs["eef_pos"], [0.3, 0.0, 0.3], atol=1e-6)
        np.testing.assert_allclose(obs["joint_pos"], np.deg2rad(arm.angles), atol=1e-6)
        np.testing.assert_allclose(obs["gripper_qpos"], [FINGER_OPEN] * 2)

        robot.send_action(np.array([1.0, 0, 0, 0, 0, 1.0, 1.0]))  # +x, +yaw, close
        name, pose, is_radian = arm.calls[-2]
        assert name == "set_servo_cartesian" and is_radian is False
        # 5 cm = 50 mm; 0.25 rad about world z on a TCP pointing down (roll 180)
        np.testing.assert_allclose(pose[:3], [350.0, 0.0, 300.0], atol=1e-6)
        np.testing.assert_allclose(
            rpy_to_mat(np.deg2rad(pose[3:])),
            rotvec_to_mat([0, 0, 0.25]) @ rpy_to_mat(np.deg2rad([180, 0, 0])),
            atol=1e-9,
        )
        assert arm.calls[-1][:3] == ("set_gripper_position", 0.0, False)
        robot.send_action(np.array([0, 0, 0, 0, 0, 0, -1.0]))
        assert arm.calls[-1][1] == 850.0
    assert [c[0] for c in arm.calls[-2:]] == ["emergency_stop", "disconnect"]


def test_xarm_error_code_becomes_robot_error():
    with XArmRobot("192.168.1.185", xarm_wrapper=fake_xarm, gripper=False) as robot:
        arm = fake_xarm.ARMS[-1]
        arm.error_code = 31
        with pytest.raises(RobotError, match="set_servo_cartesian returned code 1.*error_code 31"):
            robot.send_action(X_PLUS)
        robot.stop()
        assert arm.state == 4
        with pytest.raises(RobotError, match="returned code 9"):  # stopped: not ready
            arm.error_code = 0
            robot.send_action(X_PLUS)


def test_action_shape_and_finiteness_are_checked():
    with make_ur() as robot:
        with pytest.raises(ValueError, match=r"action shape \(6,\), expected \(7,\)"):
            robot.send_action(np.zeros(6))
        with pytest.raises(ValueError, match="non-finite"):
            robot.send_action(np.array([np.nan, 0, 0, 0, 0, 0, 0]))


# --- cameras -------------------------------------------------------------------------------------
def test_opencv_camera_gives_rgb_uint8_hwc_and_refuses_wrong_sizes(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2)
    with make_camera("opencv", index=0, width=640, height=480) as cam:
        frame = cam.read()
        assert frame.image.shape == (480, 640, 3) and frame.image.dtype == np.uint8
        assert tuple(frame.image[0, 0]) == (30, 20, 10)  # BGR (10, 20, 30) -> RGB
        assert cam._cap.props[fake_cv2.CAP_PROP_BUFFERSIZE] == 1
    with (
        make_camera("opencv", index=0, width=320, height=240) as cam,
        pytest.raises(RobotError, match=r"frame \(480, 640, 3\) uint8, expected \(240, 320, 3\)"),
    ):
        cam.read()
    with pytest.raises(RobotError, match="cannot open"):
        OpenCVCamera(index=5).connect()
    with pytest.raises(ValueError, match="unknown camera type 'gopro'"):
        make_camera("gopro")


def test_realsense_timestamp_makes_a_stale_frame_visible_in_the_arm_observation(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", fake_rs)
    monkeypatch.setattr(fake_rs.pipeline, "frame_age", 0.5)
    cams = {"wrist": {"type": "realsense", "serial": "123", "width": 64, "height": 48, "fps": 15}}
    robot = make_ur(cameras=cams)
    assert robot.observation_spec.terms["wrist_image"].shape == (48, 64, 3)
    assert robot.observation_spec.terms["wrist_image"].modality == "rgb"
    with robot:
        pipeline = robot.cameras["wrist"]._pipeline
        assert pipeline.config.device == "123"
        assert pipeline.config.streams == [("color", 64, 48, "rgb8", 15)]
        obs = robot.get_observation()
        assert obs["wrist_image"].shape == (48, 64, 3)
        age = time.monotonic() - obs["timestamp"]
        assert 0.45 < age < 1.0  # the frame's age, not the arm reading's
    assert robot.cameras["wrist"]._pipeline is None  # disconnect stops the cameras too
    monkeypatch.setattr(fake_rs.pipeline, "domain", "hardware_clock")
    with RealSenseCamera(width=64, height=48) as cam:
        assert time.monotonic() - cam.read().timestamp < 0.1  # arrival time


# --- shipped configs -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("robot", "vendor_modules"),
    [
        ("ur5e", {"rtde_control": fake_ur_rtde, "rtde_receive": fake_ur_rtde}),
        ("franka", {"franky": fake_franky}),
        ("xarm7", {"xarm.wrapper": fake_xarm}),
    ],
)
def test_robot_configs_build_their_driver_and_fit_their_safety_limits(
    monkeypatch, robot, vendor_modules
):
    import yaml

    from robolearn.assets import conf_dir, real_config
    from robolearn.cli.deploy import RobotSettings
    from robolearn.real.drivers import make_robot
    from robolearn.real.safety import ActionScale, SafetyLayer, load_safety_config
    from robolearn.utils.config import from_dict

    for name, module in vendor_modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    settings = from_dict(
        RobotSettings, yaml.safe_load((conf_dir() / "robot" / f"{robot}.yaml").read_text())
    )
    assert settings.name == robot
    driver = make_robot(settings.driver, settings.kwargs, {"task": "lift"})
    safety = load_safety_config(real_config(settings.safety))
    safety.check_spec(driver.observation_spec)  # joint counts and terms fit the robot
    scale = ActionScale(driver.max_pos_delta, driver.max_rot_delta)
    with SafetyLayer(driver, safety, scale) as safe:
        obs = safe.get_observation()
        sent = safe.send_action(np.array([1.0, 1.0, 0, 0, 0, 0, -1.0]))
    # the first-day step cap (norm, m) shortens a diagonal full-speed step
    assert np.linalg.norm(sent[:3]) * driver.max_pos_delta == pytest.approx(safety.max_pos_step)
    assert obs["joint_pos"].shape == (driver.num_joints,)
