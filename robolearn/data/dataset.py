"""``DemoDataset``: training windows over a robomimic-schema file.

A sample at step ``t`` of a demo of length ``T`` is

* ``obs[key]``: observations ``t - n_obs_steps + 1 .. t``, shape ``(n_obs_steps, *shape)``;
  steps before the episode start repeat its first observation;
* ``action``: actions ``t .. t + horizon - 1``, shape ``(horizon, A)``; steps past the episode
  end repeat its last action (the demo ends at success, where holding still is right);
* ``action_mask``: 1 for real steps, 0 for padding past the end.

Every step of every demo in the split is one sample. Low-dim data is read into memory once
(small, and random windows over HDF5 would be slow); image terms are read lazily through a file
handle each DataLoader worker opens for itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from robolearn.data.hdf5 import DatasetError, DemoFile, validate_dataset
from robolearn.spec import ObsSpec


@dataclass(frozen=True)
class WindowConfig:
    n_obs_steps: int = 2
    horizon: int = 16

    def __post_init__(self):
        if self.n_obs_steps < 1 or self.horizon < 1:
            raise ValueError(
                f"n_obs_steps and horizon must be >= 1, got {self.n_obs_steps}, {self.horizon}"
            )


class DemoDataset(Dataset):
    def __init__(
        self,
        path: str | os.PathLike,
        obs_keys: tuple[str, ...] | None = None,
        window: WindowConfig = WindowConfig(),
        split: str = "train",
    ):
        info = validate_dataset(path)
        self.file = DemoFile(path)
        self.spec: ObsSpec = self.file.obs_spec()
        self.obs_keys = tuple(obs_keys or self.spec.groups["policy"])
        missing = [k for k in self.obs_keys if k not in self.spec.terms]
        if missing:
            raise DatasetError(
                path,
                f"/data/*/obs/{missing[0]}",
                f"not in the file; it has {sorted(self.spec.terms)}",
            )
        self.window = window
        self.demos = self.file.mask(split)
        if not self.demos:
            raise DatasetError(path, f"/mask/{split}", "is empty: no demos to train on")
        without = [d for d in self.demos if d in info.demos_without_actions]
        if without:  # a file may mix both (ADS reads observations only); a policy needs actions
            raise DatasetError(
                path,
                f"/data/{without[0]}/actions",
                f"missing in {len(without)} of the {len(self.demos)} {split!r} demos: "
                "observation-only demos cannot train a policy",
            )
        self.image_keys = tuple(
            k for k in self.obs_keys if self.spec.terms[k].modality != "low_dim"
        )
        lowdim = [k for k in self.obs_keys if k not in self.image_keys]

        lengths = [self.file.num_samples(d) for d in self.demos]
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        data = self.file.file["data"]
        self.actions = np.concatenate([data[d]["actions"][()] for d in self.demos]).astype(
            np.float32
        )
        self.lowdim = {
            k: np.concatenate([data[d]["obs"][k][()] for d in self.demos]).astype(np.float32)
            for k in lowdim
        }
        # sample index -> (demo index, step)
        self.sample_demo = np.repeat(np.arange(len(self.demos)), self.lengths)
        self.sample_step = np.concatenate([np.arange(n) for n in self.lengths])
        self.file.close()  # workers reopen lazily for image terms

    def __len__(self) -> int:
        return len(self.sample_demo)

    def stats_arrays(self) -> dict[str, np.ndarray]:
        """All low-dim observations and actions of the split, for fitting a normaliser."""
        return {**self.lowdim, "action": self.actions}

    def __getitem__(self, index: int) -> dict[str, object]:
        demo, t = int(self.sample_demo[index]), int(self.sample_step[index])
        start, length = int(self.starts[demo]), int(self.lengths[demo])
        n_obs, horizon = self.window.n_obs_steps, self.window.horizon
        obs_steps = np.clip(np.arange(t - n_obs + 1, t + 1), 0, length - 1)
        act_steps = np.arange(t, t + horizon)
        mask = act_steps < length
        act_steps = np.minimum(act_steps, length - 1)
        obs = {k: torch.from_numpy(v[start + obs_steps]) for k, v in self.lowdim.items()}
        for key in self.image_keys:
            images = self.file.file["data"][self.demos[demo]]["obs"][key]
            obs[key] = torch.from_numpy(
                images[np.unique(obs_steps)][np.searchsorted(np.unique(obs_steps), obs_steps)]
            )
        return {
            "obs": obs,
            "action": torch.from_numpy(self.actions[start + act_steps]),
            "action_mask": torch.from_numpy(mask.astype(np.float32)),
        }
