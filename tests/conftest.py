import importlib.util
import signal
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch.utils.data import default_collate

from robolearn.data.collect import collect
from robolearn.data.dataset import DemoDataset
from robolearn.data.normalizer import Normalizer
from robolearn.spec import ObsSpec


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    torch.set_num_threads(
        1
    )  # the sim's own threads do the parallel work; keep torch out of their way
    yield


@pytest.fixture(autouse=True)
def _sigint_handler_is_restored():
    """Ctrl-C handling is process-wide: a test (or the code it runs) that leaves its own SIGINT
    handler behind would silently change what Ctrl-C does in every later test."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    assert after is before, f"SIGINT handler left changed: {before!r} -> {after!r}"


@dataclass(frozen=True)
class LiftData:
    spec: ObsSpec
    normalizer: Normalizer
    batch: dict  # every training window of the file, collated (n_obs_steps 2, horizon 16)
    path: Path  # the HDF5 file


@pytest.fixture(scope="session")
def lift_data(tmp_path_factory) -> LiftData:
    """10 scripted-expert ``lift`` demos (a few seconds to collect), shared by the policy tests."""
    path = tmp_path_factory.mktemp("lift") / "lift.hdf5"
    collect("lift", 10, path, num_envs=10, progress=False)
    data = DemoDataset(path)
    batch = default_collate([data[i] for i in range(len(data))])
    return LiftData(data.spec, Normalizer.fit(data.stats_arrays()), batch, path)


@pytest.fixture
def load_script():
    """Import a file of ``scripts/`` as a module, by its stem: ``load_script("rl_experiments")``."""

    def load(stem: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{stem}.py"
        spec = importlib.util.spec_from_file_location(stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
