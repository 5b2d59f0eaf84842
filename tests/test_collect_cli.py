"""``robolearn-collect`` end to end on ``reach``: the file, its states, bad input, Ctrl-C."""

from __future__ import annotations

import json
import sys

import mujoco
import numpy as np
import pytest
import torch

from robolearn.cli import collect as cli
from robolearn.cli.common import demo_task_config
from robolearn.data.collect import collect
from robolearn.data.hdf5 import DemoFile, EpisodeWriter, validate_dataset
from robolearn.experts import make_expert
from robolearn.sim.scene import build_model
from robolearn.tasks import make_task
from robolearn.utils.stats import wilson_interval


def run_cli(monkeypatch, *overrides: str) -> int:
    """Run the console script in-process (Hydra and all) and return its exit status."""
    monkeypatch.setattr(sys, "argv", ["robolearn-collect", *overrides])
    try:
        cli.main()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_collect_reach(workdir, monkeypatch):
    args = ("task=reach", "num_episodes=8", "num_envs=4", "progress=false")
    assert run_cli(monkeypatch, *args) == 0
    path = workdir / "datasets" / "reach_expert.hdf5"  # default output, against the run's cwd
    info = validate_dataset(path)
    assert len(info.demos) == 8 and info.action_dim == 7
    assert {"joint_vel", "domain_params"} <= set(info.obs_keys)  # critic terms are kept too
    assert set(info.spec.groups["policy"]) <= set(info.obs_keys)
    assert len(list((workdir / "outputs").glob("*/*_collect_reach/.hydra"))) == 1

    with DemoFile(path) as demos:
        kwargs = demos.env_args["env_kwargs"]
        assert kwargs["task_config"]["terminate_on_success"] and kwargs["backend"] == "cpu"
        model = build_model(make_task(kwargs["task"], kwargs["task_config"]).scene)
        layout = demos.env_args["states"]
        data = mujoco.MjData(model)
        for name in demos.demos:
            ep = demos.episode(name)
            assert demos.file["data"][name].attrs["success"]
            assert ep["dones"][-1] == 1 and not ep["dones"][:-1].any()  # complete episodes
            for key, value in ep["obs"].items():  # next_obs[t] is obs[t + 1] within a demo
                np.testing.assert_array_equal(ep["next_obs"][key][:-1], value[1:])
            assert ep["states"].shape[1] == mujoco.mj_stateSize(model, layout["mj_state_spec"])
            for t in (0, len(ep["states"]) - 1):  # a state row restores the world at obs[t]
                mujoco.mj_setState(model, data, ep["states"][t], layout["mj_state_spec"])
                mujoco.mj_forward(model, data)
                np.testing.assert_allclose(
                    data.site("tcp").xpos, ep["obs"]["eef_pos"][t], atol=1e-5
                )

    # The file exists now: a second run refuses to replace it, unless told to.
    assert run_cli(monkeypatch, *args) == 2
    assert run_cli(monkeypatch, *args, "num_episodes=2", "overwrite=true") == 0
    assert len(validate_dataset(path).demos) == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("task=nope",), "Could not find 'task/nope'"),  # Hydra lists the task configs
        (("task=reach", "task.name=nope"), "unknown task 'nope'; choose from"),
        (("task=reach", "num_episodes=abc"), "'num_episodes' must be an integer"),
        (("task=reach", "task.episode_length=1.5"), "'task.episode_length' must be an integer"),
        (("task=reach", "valid_fraction=yes"), "'valid_fraction' must be a number"),
        (("task=reach", "sim.backend=gpu"), "unknown sim backend 'gpu'"),
        # one line at start, not a traceback from the collection
        (("task=reach", "valid_fraction=1.0"), "error: valid_fraction must be in [0, 1), got 1.0"),
        (("task=reach", "action_noise=-0.1"), "error: action_noise must be in [0, 1), got -0.1"),
        (("task=reach", "output=/proc/demos.hdf5"), "cannot write output file"),
    ],
)
def test_bad_input_is_a_clear_error(workdir, monkeypatch, capsys, overrides, message):
    assert run_cli(monkeypatch, *overrides) != 0
    assert message in capsys.readouterr().err
    assert not (workdir / "datasets").exists() or not any((workdir / "datasets").iterdir())


def test_ctrl_c_keeps_completed_episodes(workdir, monkeypatch):
    """A KeyboardInterrupt after three written episodes: those three are in a valid file."""
    real = EpisodeWriter.add_episode

    def add_then_interrupt(self, *args, **kwargs):
        if self.num_episodes == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(EpisodeWriter, "add_episode", add_then_interrupt)
    status = run_cli(
        monkeypatch, "task=reach", "num_episodes=20", "num_envs=4", "output=out/r.hdf5"
    )
    assert status == 130
    info = validate_dataset(workdir / "out" / "r.hdf5")
    assert info.demos == ("demo_0", "demo_1", "demo_2")
    assert [p.name for p in (workdir / "out").iterdir()] == ["r.hdf5"]  # no temp file left


def test_wilson_interval():
    low, high = wilson_interval(11, 11)
    assert high == 1.0 and low == pytest.approx(0.7412, abs=1e-4)
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_failed_episodes_are_complete_and_kept_only_when_asked(tmp_path):
    never = {"success_radius": 0.0, "episode_length": 5}  # every episode times out
    result = collect(
        "reach",
        3,
        tmp_path / "failed.hdf5",
        num_envs=2,
        task_overrides=never,
        keep_failed=True,
        progress=False,
    )
    assert (result.written, result.successes) == (3, 0) and result.success_interval[0] == 0.0
    with DemoFile(result.path) as demos:
        for name in demos.demos:
            attrs = demos.file["data"][name].attrs
            assert not attrs["success"] and attrs["truncated"]
            assert demos.num_samples(name) == 5 and demos.episode(name)["dones"][-1] == 1

    result = collect(
        "reach",
        3,
        tmp_path / "none.hdf5",
        num_envs=2,
        task_overrides=never,
        max_attempts=4,
        progress=False,
    )
    assert result.path is None and result.written == 0 and result.attempts >= 4
    assert not (tmp_path / "none.hdf5").exists() and list(tmp_path.iterdir()) == [
        tmp_path / "failed.hdf5"
    ]


def test_action_noise_executes_noisy_actions_and_records_the_experts(tmp_path):
    """DART demos: the worlds drift off the noise-free trajectories, and every recorded action is
    what the (stateless) reach expert says at the recorded observation, not the noisy one."""
    paths = {}
    for noise in (0.0, 0.3):
        result = collect(
            "reach", 2, tmp_path / f"n{noise}.hdf5", num_envs=2, action_noise=noise, progress=False
        )
        paths[noise] = result.path
    expert = make_expert("reach", 1, "cpu")
    with DemoFile(paths[0.0]) as clean, DemoFile(paths[0.3]) as noisy:
        args = json.loads(noisy.file["data"].attrs["env_args"])
        assert args["collection"]["action_noise"] == 0.3
        name = noisy.demos[0]
        episode = noisy.episode(name)
        obs = {k: torch.as_tensor(v) for k, v in episode["obs"].items()}
        policy_keys = ("eef_pos", "eef_quat", "target_pos")
        labels = expert({k: obs[k] for k in policy_keys})
        np.testing.assert_allclose(episode["actions"], labels.numpy(), atol=1e-5)
        steps = min(clean.num_samples(name), noisy.num_samples(name))
        drift = np.abs(
            clean.episode(name)["obs"]["eef_pos"][:steps] - episode["obs"]["eef_pos"][:steps]
        )
        assert drift.max() > 1e-3
    with pytest.raises(ValueError, match="action_noise"):
        collect("reach", 1, tmp_path / "bad.hdf5", action_noise=-0.1, progress=False)


def test_push_demos_end_under_the_experts_tighter_radius(workdir, monkeypatch):
    """Push demos end with the cube within the expert's 1 cm, not the task's 3 cm, and the
    recorded task config says so; a radius given on the command line wins over the expert's."""
    base = ("task=push", "num_episodes=2", "num_envs=2", "progress=false")
    for extra, radius in (((), 0.01), (("task.success_radius=0.02",), 0.02)):
        output = workdir / f"push_{radius}.hdf5"
        assert run_cli(monkeypatch, *base, *extra, f"output={output}") == 0
        with DemoFile(output) as demos:
            assert demos.env_args["env_kwargs"]["task_config"]["success_radius"] == radius
            for name in demos.demos:
                last = {k: v[-1] for k, v in demos.episode(name)["next_obs"].items()}
                assert np.linalg.norm((last["cube_pos"] - last["target_pos"])[:2]) < radius
    assert demo_task_config("lift", {"episode_length": 50}, ["task=lift"]) == {"episode_length": 50}
