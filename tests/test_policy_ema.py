"""EMA of the weights: diffusion_policy's warm-up decay, the update rule, buffers, resume."""

from __future__ import annotations

import pytest
import torch
from diffusers.training_utils import EMAModel
from torch import nn

from robolearn.policies.ema import EMA


class Scaled(nn.Module):
    """One parameter and one (non-averaged) buffer."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(3))
        self.register_buffer("stat", torch.zeros(1))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"update_after_step": 5, "inv_gamma": 2.0, "power": 2 / 3, "min_decay": 0.1}],
)
def test_decay_is_diffusers_warmup_schedule(kwargs):
    ema = EMA(Scaled(), max_decay=0.999, **kwargs)
    reference = EMAModel(
        Scaled().parameters(),
        decay=ema.max_decay,
        min_decay=ema.min_decay,
        update_after_step=ema.update_after_step,
        use_ema_warmup=True,
        inv_gamma=ema.inv_gamma,
        power=ema.power,
    )
    for n in [*range(20), 100, 1000, 10_000, 100_000]:
        assert ema.decay(n) == pytest.approx(reference.get_decay(n), abs=1e-12)
    assert ema.decay(2 + kwargs.get("update_after_step", 0)) > 0
    assert ema.decay(100_000) == 0.999  # clamped at max_decay


def test_update_averages_parameters_and_copies_buffers():
    model, values = Scaled(), [1.0, 2.0, 4.0, 8.0]
    ema = EMA(model)
    expected = 0.0
    for n, value in enumerate(values):
        with torch.no_grad():
            model.weight.fill_(value)
            model.stat.fill_(-value)
        ema.update(model)
        decay = ema.decay(n)
        expected = decay * expected + (1 - decay) * value
        assert torch.allclose(ema.model.weight, torch.full((3,), expected))
        assert ema.model.stat.item() == -value  # buffers follow the trained model
    assert ema.decay(0) == ema.decay(1) == 0  # the first two updates copy the weights
    assert 2.0 < expected < 8.0
    assert not ema.model.training and not ema.model.weight.requires_grad


def test_state_dict_round_trip_resumes_the_schedule():
    model = Scaled()
    ema = EMA(model)
    for value in (1.0, 2.0, 3.0):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update(model)
    resumed = EMA(Scaled())
    resumed.load_state_dict(ema.state_dict())
    assert torch.equal(resumed.model.weight, ema.model.weight)
    with torch.no_grad():
        model.weight.fill_(10.0)
    ema.update(model)
    resumed.update(model)
    assert torch.equal(resumed.model.weight, ema.model.weight)
