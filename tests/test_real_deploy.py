"""``robolearn-deploy`` end to end on the sim robot with a tiny checkpoint: episodes run and are
recorded, a spec mismatch is refused naming the key, a fault ends the run with status 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from console import run

from robolearn.cli import deploy as deploy_cli
from robolearn.cli import train as train_cli
from robolearn.data.collect import collect
from robolearn.data.hdf5 import validate_dataset

FAST = ("rate_hz=100", "max_steps=8", "keyboard_estop=false", "threads=1")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny BC policy for lift, trained for a few steps on 6 scripted demos."""
    root = tmp_path_factory.mktemp("tiny")
    demos = root / "lift.hdf5"
    assert collect("lift", 6, demos, num_envs=6, progress=False).written == 6
    code = run(
        train_cli,
        "policy=bc",
        "policy.hidden_dims=[32,32]",
        f"dataset={demos}",
        "train.steps=40",
        "train.batch_size=32",
        "train.progress=false",
        "logger=none",
        "threads=1",
        f"hydra.run.dir={root / 'run'}",
    )
    assert code == 0
    return root / "run"


def test_deploy_on_the_sim_robot(checkpoint, tmp_path, capsys):
    out = tmp_path / "deploy"
    code = run(
        deploy_cli, f"checkpoint={checkpoint}", "num_episodes=2", *FAST, f"hydra.run.dir={out}"
    )
    assert code == 0
    info = json.loads((out / "deploy_info.json").read_text())
    assert len(info["episodes"]) == 2 and info["episodes_with_success_known"] == 2
    assert 0.0 <= info["ci95"][0] <= info["ci95"][1] <= 1.0
    for episode in info["episodes"]:
        assert episode["fault"] is None and 1 <= episode["steps"] <= 8
        assert episode["latency_p99_ms"] > 0 and episode["period_error_p99_pct"] is not None
    dataset = validate_dataset(out / "episodes.hdf5")
    assert len(dataset.demos) == 2 and dataset.action_dim == 7
    assert dataset.env_args["robot"] == "sim" and dataset.env_args["env_name"] == "lift"
    printed = capsys.readouterr().out  # Hydra's logging goes to stdout
    assert "episode 2/2: " in printed and "Wilson CI" in printed


def test_spec_mismatch_is_refused_naming_the_key(checkpoint, tmp_path, capsys):
    code = run(
        deploy_cli,
        f"checkpoint={checkpoint}",
        "+robot.kwargs.task_overrides.control_freq=10",  # a 10 Hz twin for a 20 Hz policy
        *FAST,
        f"hydra.run.dir={tmp_path}",
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "does not fit robot 'sim'" in err and "action control_freq: 20.0 vs 10.0" in err
    assert not (tmp_path / "episodes.hdf5").exists()


def test_fault_stops_the_run(checkpoint, tmp_path, capsys):
    out = tmp_path / "deploy"
    code = run(
        deploy_cli,
        f"checkpoint={checkpoint}",
        "num_episodes=3",
        "+robot.kwargs.faults.raise_at_step=3",
        *FAST,
        f"hydra.run.dir={out}",
    )
    assert code == 1
    assert "injected driver fault at step 3" in capsys.readouterr().out
    info = json.loads((out / "deploy_info.json").read_text())
    assert len(info["episodes"]) == 1  # the run ended at the fault
    assert info["episodes"][0]["fault"]["kind"] == "driver_error"
    assert validate_dataset(out / "episodes.hdf5").total_samples == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("robot.driver=nope", "unknown robot driver 'nope'"),
        ("robot.safety=missing.yaml", "missing.yaml"),
        ("chunking=sometimes", "chunking"),
    ],
)
def test_bad_input_exits_2(checkpoint, tmp_path, capsys, override, message):
    code = run(deploy_cli, f"checkpoint={checkpoint}", override, *FAST, f"hydra.run.dir={tmp_path}")
    assert code == 2
    assert message in capsys.readouterr().err


def test_sigint_stops_a_deploy_that_inherited_it_ignored(checkpoint, tmp_path, monkeypatch):
    """A deploy started as a background job inherits SIGINT ignored; Ctrl-C / ``kill -INT`` must
    still e-stop it (exit 130), and the caller's SIGINT disposition is restored afterwards."""
    import os
    import signal

    from robolearn.real.control_loop import ControlLoop

    real_next_action = ControlLoop._next_action

    def interrupted(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real_next_action(self, *args, **kwargs)

    monkeypatch.setattr(ControlLoop, "_next_action", interrupted)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        out = tmp_path / "deploy"
        code = run(deploy_cli, f"checkpoint={checkpoint}", *FAST, f"hydra.run.dir={out}")
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130
    info = json.loads((out / "deploy_info.json").read_text())
    assert info["episodes"][0]["fault"]["kind"] == "estop"


def test_a_robot_that_would_move_otherwise_than_in_training_is_refused():
    """Its own action scale, or a loop rate it cannot follow: each action would move the arm by a
    different amount per second or per step than the policy learned."""
    from robolearn.real.safety import ActionScale

    class Arm:
        name = "arm"

        def __init__(self, max_pos_delta: float = 0.05, max_rot_delta: float = 0.25):
            self.max_pos_delta, self.max_rot_delta = max_pos_delta, max_rot_delta

    class Twin(Arm):
        def __init__(self, rate_hz: float = 0.0):
            super().__init__()

    trained = ActionScale(0.05, 0.25)
    deploy_cli.check_robot_matches_training(Arm(), 20.0, trained, 0.0)
    deploy_cli.check_robot_matches_training(Arm(), 20.0, trained, 20.0)
    deploy_cli.check_robot_matches_training(Twin(), 20.0, trained, 40.0)  # steps its physics at it
    with pytest.raises(
        ValueError, match="max_pos_delta = 0.1, the checkpoint was trained with 0.05"
    ):
        deploy_cli.check_robot_matches_training(Arm(max_pos_delta=0.1), 20.0, trained, 0.0)
    with pytest.raises(ValueError, match="rate_hz=40.0: .* 2x as fast as trained"):
        deploy_cli.check_robot_matches_training(Arm(), 20.0, trained, 40.0)
