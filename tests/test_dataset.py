"""DemoDataset windows (padding at episode edges, masks) and Normalizer maps."""

import h5py
import numpy as np
import pytest
import torch

from robolearn.data.collect import collect
from robolearn.data.dataset import DemoDataset, WindowConfig
from robolearn.data.hdf5 import DatasetError, DemoFile
from robolearn.data.normalizer import Normalizer


@pytest.fixture(scope="module")
def reach_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("reach") / "reach.hdf5"
    collect("reach", 6, path, num_envs=6, progress=False, valid_fraction=0.2)
    return path


def test_windows_pad_at_episode_edges(reach_file):
    data = DemoDataset(reach_file, window=WindowConfig(n_obs_steps=3, horizon=8))
    with DemoFile(reach_file) as f:
        demo = f.episode(data.demos[0])
    length = len(demo["actions"])
    first = data[0]  # step 0 of the first demo
    eef = torch.from_numpy(demo["obs"]["eef_pos"])
    assert torch.equal(first["obs"]["eef_pos"], eef[[0, 0, 0]])  # history padded with the first obs
    assert first["action"].shape == (8, demo["actions"].shape[1])
    last = data[length - 1]  # last step of the first demo
    assert torch.equal(last["obs"]["eef_pos"], eef[[length - 3, length - 2, length - 1]])
    actions = torch.from_numpy(demo["actions"])
    assert torch.equal(
        last["action"], actions[[length - 1] * 8]
    )  # future padded with the last action
    assert last["action_mask"].tolist() == [1.0] + [0.0] * 7
    assert len(data) == int(data.lengths.sum())


def test_splits_are_disjoint(reach_file):
    train = DemoDataset(reach_file, split="train")
    valid = DemoDataset(reach_file, split="valid")
    assert valid.demos and not set(train.demos) & set(valid.demos)


def test_bad_files_name_the_problem(reach_file, tmp_path):
    with pytest.raises(DatasetError, match="policy|nope"):
        DemoDataset(reach_file, obs_keys=("nope",))
    with pytest.raises((FileNotFoundError, DatasetError), match="missing.hdf5"):
        DemoDataset(tmp_path / "missing.hdf5")
    corrupt = tmp_path / "corrupt.hdf5"
    corrupt.write_bytes(b"not an hdf5 file at all")
    with pytest.raises((DatasetError, OSError), match="corrupt.hdf5"):
        DemoDataset(corrupt)
    empty_valid = tmp_path / "empty_split.hdf5"
    empty_valid.write_bytes(reach_file.read_bytes())
    with h5py.File(empty_valid, "a") as f:
        del f["mask/valid"]
        f["mask/valid"] = np.array([], dtype="S8")
    with pytest.raises(DatasetError, match="mask/valid"):
        DemoDataset(empty_valid, split="valid")


@pytest.mark.parametrize("mode", ["minmax", "meanstd"])
def test_normalizer_roundtrip_and_constant_dims(mode):
    x = np.stack([np.linspace(-3, 5, 50), np.full(50, 2.0)], axis=1)
    norm = Normalizer.fit({"a": x}, mode=mode)
    t = torch.from_numpy(x).float()
    n = norm.normalize("a", t)
    if mode == "minmax":
        assert torch.allclose(n[:, 0].min(), torch.tensor(-1.0)) and torch.allclose(
            n[:, 0].max(), torch.tensor(1.0)
        )
    else:
        assert abs(n[:, 0].mean()) < 1e-5 and abs(n[:, 0].std(unbiased=False) - 1) < 1e-4
    assert torch.allclose(n[:, 1], torch.zeros(50))  # a constant dimension is centred, not blown up
    assert torch.allclose(norm.unnormalize("a", n), t, atol=1e-5)
    again = Normalizer(norm.to_dict())
    assert torch.allclose(again.normalize("a", t), n)
    with pytest.raises(ValueError, match="non-finite"):
        Normalizer.fit({"a": np.array([[np.nan]])})
