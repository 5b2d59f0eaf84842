"""robomimic-schema HDF5: round trip, validation of corrupt files, atomic and interruptible writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from robolearn.data.hdf5 import DatasetError, DemoFile, EpisodeWriter, validate_dataset
from robolearn.spec import ActionSpec, ObsSpec, TermSpec

SPEC = ObsSpec(
    terms={
        "eef_pos": TermSpec((3,)),
        "joint_vel": TermSpec((7,)),
        "agentview_image": TermSpec((8, 10, 3), dtype="uint8", modality="rgb"),
    },
    groups={"policy": ("eef_pos", "agentview_image"), "critic": ("eef_pos", "joint_vel")},
    action=ActionSpec(dim=7),
    task="reach",
)
ENV_ARGS = {"env_name": "robolearn/reach", "env_kwargs": {"task": "reach", "backend": "cpu"}}


def episode(steps: int, seed: int = 0, actions: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    obs = {
        "eef_pos": rng.normal(size=(steps, 3)).astype(np.float32),
        "joint_vel": rng.normal(size=(steps, 7)).astype(np.float32),
        "agentview_image": rng.integers(0, 255, (steps, 8, 10, 3), dtype=np.uint8),
    }
    out = {"obs": obs, "next_obs": {k: np.roll(v, -1, axis=0) for k, v in obs.items()}}
    if actions:
        out |= {
            "actions": rng.uniform(-1, 1, (steps, 7)),
            "rewards": rng.random(steps),
            "states": rng.normal(size=(steps, 12)),
        }
    return out


def write(path: Path, lengths=(5, 7, 4), **kwargs) -> Path:
    with EpisodeWriter(path, ENV_ARGS, SPEC, **kwargs) as writer:
        for i, steps in enumerate(lengths):
            ep = episode(steps, seed=i)
            writer.add_episode(ep.pop("obs"), **ep, attrs={"success": True})
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_the_file_is_on_disk_before_it_takes_its_name(tmp_path, monkeypatch):
    """fsync the temp file, rename, fsync the folder: a crash leaves the old or the new file."""
    import robolearn.data.hdf5 as hdf5

    events: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(hdf5, "fsync_path", lambda p: events.append(("fsync", Path(p).name)))
    monkeypatch.setattr(
        hdf5.os,
        "replace",
        lambda a, b: (events.append(("rename", Path(b).name)), real_replace(a, b)),
    )
    write(tmp_path / "demos.hdf5")
    assert [e[0] for e in events] == ["fsync", "rename", "fsync"]
    assert events[0][1].endswith(".tmp") and events[1][1] == "demos.hdf5"
    assert events[2][1] == tmp_path.name


def test_round_trip(tmp_path):
    path = write(tmp_path / "demos.hdf5", lengths=(5, 7, 4, 6, 3), valid_fraction=0.2)
    info = validate_dataset(path)
    assert info.demos == ("demo_0", "demo_1", "demo_2", "demo_3", "demo_4")
    assert info.total_samples == 25 and info.action_dim == 7
    assert info.obs_keys["agentview_image"] == ((8, 10, 3), "uint8")
    assert info.spec == SPEC and not info.observation_only
    assert len(info.masks["valid"]) == 1 and len(info.masks["train"]) == 4
    assert set(info.masks["valid"]) | set(info.masks["train"]) == set(info.demos)
    assert info.env_args["env_kwargs"]["backend"] == "cpu" and "robolearn_version" in info.env_args

    with DemoFile(path) as demos:
        assert demos.obs_spec() == SPEC and demos.mask("valid") == info.masks["valid"]
        ep, expected = demos.episode("demo_1"), episode(7, seed=1)
        for key, value in expected["obs"].items():
            np.testing.assert_array_equal(ep["obs"][key], value)
            np.testing.assert_array_equal(ep["next_obs"][key], expected["next_obs"][key])
        np.testing.assert_allclose(ep["actions"], expected["actions"], rtol=1e-6)
        np.testing.assert_array_equal(ep["dones"], [0, 0, 0, 0, 0, 0, 1])
        assert ep["states"].dtype == np.float64 and ep["actions"].dtype == np.float32
        assert demos.num_samples("demo_1") == 7

    with h5py.File(path) as f:
        assert f["data"].attrs["total"] == 25 and f["data/demo_1"].attrs["success"]
        image = f["data/demo_1/obs/agentview_image"]
        assert image.dtype == np.uint8 and image.compression == "gzip"
        assert image.chunks[1:] == (8, 10, 3)  # chunked along time only
        assert f["mask/train"].dtype.kind == "S"
        json.loads(f["data"].attrs["env_args"])


def test_observation_only_episodes_are_valid(tmp_path):
    path = tmp_path / "video.hdf5"
    with EpisodeWriter(path, ENV_ARGS, SPEC) as writer:
        for i in range(2):
            writer.add_episode(episode(4, seed=i, actions=False)["obs"])
    info = validate_dataset(path)
    assert info.observation_only and info.action_dim is None
    assert info.demos_without_actions == ("demo_0", "demo_1")


def test_a_policy_dataset_refuses_demos_without_actions_naming_the_first(tmp_path):
    from robolearn.data.dataset import DemoDataset

    path = tmp_path / "mixed.hdf5"
    with EpisodeWriter(path, ENV_ARGS, SPEC, valid_fraction=0.0) as writer:
        for i, actions in enumerate((True, False, True)):
            ep = episode(4, seed=i, actions=actions)
            writer.add_episode(ep.pop("obs"), **ep)
    assert validate_dataset(path).demos_without_actions == ("demo_1",)  # valid for ADS
    with pytest.raises(DatasetError, match="/data/demo_1/actions.*missing in 1 of the 3"):
        DemoDataset(path, ("eef_pos",))


def _set(path: str, value):
    def corrupt(f):
        if path in f:
            del f[path]
        f[path] = value

    return corrupt


def _attr(path: str, name: str, value):
    def corrupt(f):
        f[path].attrs[name] = value

    return corrupt


def _delete(path: str):
    def corrupt(f):
        del f[path]

    return corrupt


CORRUPTIONS = {
    "missing data group": (_delete("data"), "/data", "missing group"),
    "missing obs group": (_delete("data/demo_1/obs"), "/data/demo_1/obs", "missing"),
    "num_samples vs arrays": (_attr("data/demo_0", "num_samples", 6), "/data/demo_0/", "6"),
    "short actions": (
        _set("data/demo_1/actions", np.zeros((3, 7))),
        "/data/demo_1/actions",
        "3 steps",
    ),
    "obs key length": (
        _set("data/demo_2/obs/eef_pos", np.zeros((2, 3))),
        "/data/demo_2/obs/eef_pos",
        "2 steps",
    ),
    "missing obs key": (
        _delete("data/demo_2/obs/joint_vel"),
        "/data/demo_2/obs/joint_vel",
        "missing",
    ),
    "obs shape vs spec": (
        _set("data/demo_0/obs/eef_pos", np.zeros((5, 4))),
        "/data/demo_0/obs/eef_pos",
        "obs_spec",
    ),
    "NaN action": (
        _set("data/demo_1/actions", np.full((7, 7), np.nan)),
        "/data/demo_1/actions",
        "NaN",
    ),
    "Inf state": (
        _set("data/demo_2/states", np.full((4, 12), np.inf)),
        "/data/demo_2/states",
        "NaN or Inf",
    ),
    "dones not 0/1": (
        _set("data/demo_0/dones", np.full(5, 2, np.uint8)),
        "/data/demo_0/dones",
        "0 and 1",
    ),
    "action width": (
        _set("data/demo_2/actions", np.zeros((4, 6))),
        "/data/demo_2/actions",
        "width",
    ),
    "total": (_attr("data", "total", 99), "/data", "total=99"),
    "env_args not JSON": (
        _attr("data", "env_args", "{not json"),
        "/data.attrs['env_args']",
        "not JSON",
    ),
    "mask names missing demo": (_set("mask/valid", np.array([b"demo_9"])), "/mask/valid", "demo_9"),
    "stray member": (_set("data/extra", np.zeros(3)), "/data/extra", "unexpected"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_validation_names_first_offending_path(tmp_path, name):
    corrupt, where, problem = CORRUPTIONS[name]
    path = write(tmp_path / "demos.hdf5")
    with h5py.File(path, "r+") as f:
        corrupt(f)
    with pytest.raises(DatasetError) as err:
        validate_dataset(path)
    assert err.value.file == path and err.value.hdf5_path.startswith(where), str(err.value)
    assert problem in str(err.value) and str(path) in str(err.value)


def test_validation_of_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "notes.hdf5"
    path.write_text("hello")
    with pytest.raises(DatasetError, match="cannot open as HDF5"):
        validate_dataset(path)


def test_exception_mid_write_leaves_no_file_and_keeps_an_existing_one(tmp_path):
    path = write(tmp_path / "demos.hdf5", lengths=(3,))
    before = path.read_bytes()
    with pytest.raises(RuntimeError), EpisodeWriter(path, ENV_ARGS, SPEC, overwrite=True) as w:
        w.add_episode(episode(5)["obs"])
        raise RuntimeError("simulator diverged")
    assert path.read_bytes() == before and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError), EpisodeWriter(tmp_path / "new.hdf5", ENV_ARGS) as w:
        w.add_episode(episode(5)["obs"])
        raise RuntimeError
    assert not (tmp_path / "new.hdf5").exists() and leftovers(tmp_path) == []


def test_keyboard_interrupt_keeps_completed_episodes(tmp_path):
    path = tmp_path / "demos.hdf5"
    with pytest.raises(KeyboardInterrupt), EpisodeWriter(path, ENV_ARGS, SPEC) as writer:
        for i in range(3):
            ep = episode(5, seed=i)
            writer.add_episode(ep.pop("obs"), **ep)
        raise KeyboardInterrupt
    assert validate_dataset(path).demos == ("demo_0", "demo_1", "demo_2")
    assert leftovers(tmp_path) == []


def test_interrupt_inside_an_episode_drops_only_that_episode(tmp_path, monkeypatch):
    """Ctrl-C between two HDF5 writes of one episode: the half-written demo is removed."""
    path = tmp_path / "demos.hdf5"
    real = h5py.Group.create_dataset
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 13:  # inside the second episode (7 datasets per episode)
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", flaky)
    with pytest.raises(KeyboardInterrupt), EpisodeWriter(path, ENV_ARGS, SPEC) as writer:
        for i in range(3):
            ep = episode(5, seed=i)
            writer.add_episode(ep.pop("obs"), **ep)
    monkeypatch.undo()
    info = validate_dataset(path)
    assert info.demos == ("demo_0",) and info.total_samples == 5


def test_no_episodes_no_file(tmp_path):
    with EpisodeWriter(tmp_path / "empty.hdf5", ENV_ARGS) as writer:
        pass
    assert writer.close() is None and list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_unless_asked(tmp_path):
    path = write(tmp_path / "demos.hdf5", lengths=(3,))
    with pytest.raises(FileExistsError, match="overwrite"):
        EpisodeWriter(path, ENV_ARGS, SPEC)
    write(path, lengths=(4, 4), overwrite=True)
    assert validate_dataset(path).total_samples == 8


def test_unwritable_output_path_fails_before_writing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="cannot write output file"):
        EpisodeWriter(blocker / "demos.hdf5", ENV_ARGS)
    with pytest.raises(IsADirectoryError):
        EpisodeWriter(tmp_path, ENV_ARGS)
    assert not (tmp_path / "sub").exists()
    EpisodeWriter(tmp_path / "sub" / "demos.hdf5", ENV_ARGS).discard()  # parents are created
    assert (tmp_path / "sub").is_dir()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ep: ep["obs"].update(eef_pos=ep["obs"]["eef_pos"][:3]), "differ in length"),
        (lambda ep: ep["obs"]["eef_pos"].__setitem__((0, 0), np.nan), "obs/eef_pos contains NaN"),
        (lambda ep: ep.update(actions=ep["actions"][:, :6]), "actions have width 6"),
        (lambda ep: ep.update(rewards=ep["rewards"][:2]), "rewards has 2 steps"),
        (lambda ep: ep["obs"].update(eef_pos=np.zeros((5, 4))), "spec says (3,)"),
        (lambda ep: ep["obs"].update(extra=np.zeros((5, 1))), "not a term of the ObsSpec"),
        (
            lambda ep: ep["obs"].update(agentview_image=np.zeros((5, 8, 10, 3))),
            "must be uint8",
        ),
        (lambda ep: ep["next_obs"].pop("eef_pos"), "next_obs/eef_pos"),
    ],
)
def test_writer_rejects_bad_episodes(tmp_path, change, message):
    path = tmp_path / "demos.hdf5"
    with EpisodeWriter(path, ENV_ARGS, SPEC) as writer:
        ep = episode(5)
        change(ep)
        with pytest.raises(ValueError) as err:
            writer.add_episode(ep.pop("obs"), **ep)
        assert message in str(err.value)
        good = episode(5)
        writer.add_episode(good.pop("obs"), **good)  # the writer is still usable
    assert validate_dataset(path).demos == ("demo_0",)


def test_episodes_must_agree_with_earlier_ones_without_a_spec(tmp_path):
    with EpisodeWriter(tmp_path / "demos.hdf5", ENV_ARGS) as writer:
        writer.add_episode({"a": np.zeros((3, 2))})
        with pytest.raises(ValueError, match="obs/a"):
            writer.add_episode({"a": np.zeros((3, 4))})
