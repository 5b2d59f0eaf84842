"""Observation-only expert episodes for imitation from observation (ADS, METHODS.md §6).

Reads the observation keys a curriculum needs from a robomimic-schema HDF5 file; actions are not
needed (files without them are valid input). A missing key fails at start, naming the key, the
demo and the file, rather than hours into training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from robolearn.data.hdf5 import DatasetError, DemoFile


def load_observation_episodes(
    path: str | os.PathLike, keys: Sequence[str]
) -> list[dict[str, torch.Tensor]]:
    """Every demo of ``path`` as ``{key: (T, d) float32}``, in the file's demo order."""
    if not keys:
        raise ValueError("no observation keys given: name the obs keys the curriculum compares")
    with DemoFile(path) as demo_file:
        demos = demo_file.demos
        if not demos:
            raise DatasetError(path, "/data", "holds no demos")
        episodes = []
        for demo in demos:
            obs = demo_file.file["data"][demo].get("obs")
            available = sorted(obs) if obs is not None else []
            missing = [k for k in keys if k not in available]
            if missing:
                raise DatasetError(
                    path,
                    f"/data/{demo}/obs/{missing[0]}",
                    f"missing observation key {missing[0]!r} (needed: {list(keys)}; "
                    f"the demo has {available})",
                )
            arrays = {k: torch.as_tensor(obs[k][()], dtype=torch.float32) for k in keys}
            episodes.append({k: v.reshape(len(v), -1) for k, v in arrays.items()})
    return episodes
