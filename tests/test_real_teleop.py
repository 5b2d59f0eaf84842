"""Teleop devices on scripted input, and ``robolearn-collect robot=sim teleop=keyboard`` end to end."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from fakes import fake_keys, fake_pyspacemouse
from fakes.fake_keys import ScriptedKeys

from robolearn.real.drivers.vendor import MissingExtraError
from robolearn.real.teleop import (
    KeyboardTeleop,
    SpaceMouseTeleop,
    TeleopEvent,
    TerminalKeys,
    make_teleop,
)


def actions(teleop, steps: int) -> np.ndarray:
    return np.stack([teleop.get_action() for _ in range(steps)])


def test_keyboard_keys_map_to_ee_delta_pose_actions():
    keys = ScriptedKeys(["w", "", "ad", "r", "j", " ", "s", " "])
    with KeyboardTeleop(scale=0.5, rot_scale=0.25, source=keys) as teleop:
        assert keys.opened
        got = actions(teleop, 8)
    assert not keys.opened
    expected = np.zeros((8, 7), np.float32)
    expected[:, -1] = -1.0  # open
    expected[0, 0] = 0.5  # w: +x
    expected[2, 1] = -0.5  # a then d in one step: the last key wins
    expected[3, 2] = 0.5  # r: +z
    expected[4, 5] = 0.25  # j: +yaw, at rot_scale
    expected[5:7, -1] = 1.0  # space closes the gripper ...
    expected[6, 0] = -0.5
    # ... and the next space opens it again
    np.testing.assert_array_equal(got, expected)


def test_episode_keys_become_events_in_order():
    teleop = KeyboardTeleop(source=ScriptedKeys(["\r", "w", "e", "", "\nx", "q"]))
    seen = []
    for _ in range(6):
        teleop.get_action()
        seen += teleop.events()
    assert seen == [
        TeleopEvent.START,
        TeleopEvent.STOP,
        TeleopEvent.START,
        TeleopEvent.DISCARD,
        TeleopEvent.QUIT,
    ]
    assert teleop.events() == []  # drained


def test_spacemouse_axes_deadzone_scale_and_button_toggle(monkeypatch):
    S = fake_pyspacemouse.SpaceMouseState
    monkeypatch.setattr(
        fake_pyspacemouse,
        "STATES",
        [
            S(x=0.8, y=-0.02, z=0.0, roll=0.0, pitch=0.0, yaw=0.5, buttons=[0, 0]),
            S(x=0.0, y=0.4, z=-1.0, roll=0.3, buttons=[1, 0]),
            S(buttons=[1, 0]),  # held: no second toggle
            S(buttons=[0, 0]),
        ],
    )
    monkeypatch.setitem(sys.modules, "pyspacemouse", fake_pyspacemouse)
    with make_teleop("spacemouse", scale=0.5, rot_scale=1.0, source=ScriptedKeys([])) as teleop:
        mouse = fake_pyspacemouse.DEVICES[-1]
        assert mouse.convention == fake_pyspacemouse.AxisConvention.ROS  # x fwd, y left, z up
        got = actions(teleop, 4)
    assert mouse.closed
    np.testing.assert_allclose(got[0], [0.4, 0.0, 0.0, 0.0, 0.0, 0.5, -1.0])  # y in deadzone
    np.testing.assert_allclose(got[1], [0.0, 0.2, -0.5, 0.3, 0.0, 0.0, 1.0])
    assert got[2, -1] == 1.0 and got[3, -1] == 1.0


def test_spacemouse_missing_device_and_missing_package(monkeypatch):
    monkeypatch.setattr(fake_pyspacemouse, "STATES", None)
    teleop = SpaceMouseTeleop(source=ScriptedKeys([]), pyspacemouse=fake_pyspacemouse)
    with pytest.raises(ValueError, match="No connected or supported devices found.*hidraw"):
        teleop.connect()
    monkeypatch.setitem(sys.modules, "pyspacemouse", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'robolearn\[spacemouse\]'"):
        SpaceMouseTeleop(source=ScriptedKeys([]))


def test_bad_teleop_settings_are_refused():
    with pytest.raises(ValueError, match="unknown teleop device 'joystick'"):
        make_teleop("joystick")
    with pytest.raises(ValueError, match=r"scale and rot_scale must be in \(0, 1\]"):
        make_teleop("keyboard", scale=2.0, source=ScriptedKeys([]))
    with pytest.raises(ValueError, match="teleop keyboard: bad settings"):
        make_teleop("keyboard", speed=1.0)


def test_terminal_keys_refuse_a_non_terminal(tmp_path):
    with (tmp_path / "in").open("w+") as stream, pytest.raises(ValueError, match="not a TTY"):
        TerminalKeys(stream).open()


def test_terminal_keys_read_a_real_terminal_without_enter_and_restore_it():
    import os
    import pty
    import select
    import termios

    master, slave = pty.openpty()
    with os.fdopen(slave, "r") as stream:
        before = termios.tcgetattr(slave)
        keys = TerminalKeys(stream)
        keys.open()
        assert keys.read() == ""  # nothing typed: no blocking
        os.write(master, b"wd ")
        select.select([slave], [], [], 2.0)  # let the terminal deliver them
        assert keys.read() == "wd "  # no Enter needed (cbreak)
        keys.close()
        assert termios.tcgetattr(slave) == before
    os.close(master)


def test_key_source_by_import_path(monkeypatch):
    monkeypatch.setattr(fake_keys, "SCRIPT", ["f"])
    teleop = make_teleop("keyboard", source="fakes.fake_keys:scripted")
    assert teleop.get_action()[2] == -0.5


# --- robolearn-collect robot=sim teleop=keyboard ------------------------------------------------
def run_collect(monkeypatch, *overrides: str) -> int:
    from robolearn.cli import collect

    monkeypatch.setattr(sys, "argv", ["robolearn-collect", *overrides])
    try:
        collect.main()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_collect_teleop_on_the_sim_twin_records_the_keys(tmp_path, monkeypatch):
    from robolearn.data.hdf5 import DemoFile, validate_dataset

    monkeypatch.chdir(tmp_path)
    # Move before the episode (not recorded), start, 3 x forward, 2 x up, close, hold, save.
    script = ["w", "\r", "w", "w", "w", "r", "r", " ", "", "e"]
    monkeypatch.setattr(fake_keys, "SCRIPT", script)
    overrides = (
        "robot=sim",
        "teleop=keyboard",
        "teleop.source=fakes.fake_keys:scripted",
        "task=lift",
        "num_episodes=1",
        "output=teleop.hdf5",
    )
    assert run_collect(monkeypatch, *overrides) == 0
    info = validate_dataset(tmp_path / "teleop.hdf5")
    assert len(info.demos) == 1 and info.action_dim == 7
    assert info.spec.task == "lift" and set(info.spec.groups["policy"]) <= set(info.obs_keys)
    with DemoFile(tmp_path / "teleop.hdf5") as demos:
        assert demos.env_args["robot"] == "sim" and demos.env_args["teleop"] == "keyboard"
        ep = demos.episode(demos.demos[0])
    expected = np.zeros((8, 7), np.float32)
    expected[:, -1] = -1.0
    expected[1:4, 0] = 0.5  # w
    expected[4:6, 2] = 0.5  # r
    expected[6:, -1] = 1.0  # space closed the gripper
    np.testing.assert_allclose(ep["actions"], expected, atol=1e-6)
    # the arm followed: the TCP rose and moved forward over the episode
    moved = ep["next_obs"]["eef_pos"][-1] - ep["obs"]["eef_pos"][0]
    assert moved[0] > 0.02 and moved[2] > 0.02


def test_collect_teleop_refuses_bad_input_before_connecting(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ("robot=sim", "teleop.source=fakes.fake_keys:scripted")
    assert run_collect(monkeypatch, *args, "overwrite=true") == 2
    assert "never overwrite a recording" in capsys.readouterr().err
    assert run_collect(monkeypatch, *args, "teleop.scale=3") == 2
    assert "scale and rot_scale must be in (0, 1]" in capsys.readouterr().err
