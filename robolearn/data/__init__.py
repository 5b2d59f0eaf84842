"""Demonstration data: robomimic-schema HDF5 files, their validation, and collection.

``robolearn.data.hdf5`` is numpy-only; ``robolearn.data.collect`` drives a ``VecEnv`` (torch) and
is imported on its own so that reading data never pulls in the simulator.
"""

from robolearn.data.hdf5 import (
    DatasetError,
    DatasetInfo,
    DemoFile,
    EpisodeWriter,
    validate_dataset,
)

__all__ = ["DatasetError", "DatasetInfo", "DemoFile", "EpisodeWriter", "validate_dataset"]
