import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # the sim's own threads do the parallel work; keep torch out of their way
    yield
