"""BC policy: chunk shapes and bounds, both heads learn on real demos, masking, config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from robolearn.data.normalizer import Normalizer
from robolearn.policies import policy_class
from robolearn.policies.bc import BCConfig, BCPolicy
from robolearn.utils.config import from_dict

CONF = Path(__file__).parents[1] / "conf" / "policy" / "bc.yaml"


def window(batch: dict, index: torch.Tensor | slice, horizon: int = 16) -> dict:
    """Rows ``index`` of a collated batch, actions cut to the first ``horizon`` steps."""
    return {
        "obs": {k: v[index] for k, v in batch["obs"].items()},
        "action": batch["action"][index, :horizon],
        "action_mask": batch["action_mask"][index, :horizon],
    }


def train(policy: BCPolicy, batch: dict, steps: int) -> list[float]:
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        loss, _ = policy.compute_loss(window(batch, torch.randint(len(batch["action"]), (32,))))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_registry_and_yaml_defaults():
    assert policy_class("bc") is BCPolicy
    data = OmegaConf.to_container(OmegaConf.load(CONF))
    assert data.pop("name") == "bc"
    assert from_dict(BCConfig, data) == BCConfig()  # the yaml lists every field at its default


@pytest.mark.parametrize("head", ["deterministic", "gaussian"])
@pytest.mark.parametrize("horizon", [1, 16])
def test_predict_action_shape_and_bounds(lift_data, head, horizon):
    # Action statistics 100x narrower than the data: predictions land far outside the bounds.
    stats = lift_data.normalizer.to_dict()
    stats["action"] = {**stats["action"], "scale": [0.01] * 7, "offset": [0.0] * 7}
    cfg = BCConfig(head=head, horizon=horizon, n_action_steps=1)
    policy = BCPolicy(cfg, lift_data.spec, Normalizer(stats)).eval()
    chunk = policy.predict_action(window(lift_data.batch, slice(4))["obs"])
    assert chunk.shape == (4, horizon, 7)
    assert chunk.abs().max() == 1.0  # clipped to the action bounds, not beyond


@pytest.mark.parametrize("head", ["deterministic", "gaussian"])
def test_loss_falls_on_lift_demos(lift_data, head):
    policy = BCPolicy(BCConfig(head=head), lift_data.spec, lift_data.normalizer)
    losses = train(policy, lift_data.batch, 150)
    start, end = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    if head == "deterministic":
        assert end < 0.3 * start, (start, end)
    else:  # NLL: the fit sharpens the Gaussian, so the loss drops by nats, past 0
        assert end < start - 1 and end < 0, (start, end)
    _, logs = policy.compute_loss(window(lift_data.batch, slice(64)))
    assert set(logs) == ({"loss"} if head == "deterministic" else {"loss", "mse", "std"})


def test_gaussian_head_returns_the_mean_and_bounds_the_std(lift_data):
    cfg = BCConfig(head="gaussian", log_std_min=-3.0, log_std_max=1.0)
    policy = BCPolicy(cfg, lift_data.spec, lift_data.normalizer)
    features = policy.encode(window(lift_data.batch, slice(8))["obs"])
    dist = policy(features)
    assert torch.equal(policy.sample_normalized(features), dist.mean)
    last = policy.net[-1]
    with torch.no_grad():  # saturate the log-std outputs both ways
        last.bias[last.out_features // 2 :] = 1e4
        assert torch.allclose(policy(features).stddev, torch.tensor(1.0).exp())
        last.bias[last.out_features // 2 :] = -1e4
        assert torch.allclose(policy(features).stddev, torch.tensor(-3.0).exp())


def test_padded_steps_do_not_count(lift_data):
    batch = window(lift_data.batch, slice(64))
    padding = batch["action_mask"] == 0
    assert padding.any() and not padding.all()
    policy = BCPolicy(BCConfig(), lift_data.spec, lift_data.normalizer)
    loss, _ = policy.compute_loss(batch)
    changed = {**batch, "action": batch["action"].masked_fill(padding[..., None], 5.0)}
    assert torch.equal(policy.compute_loss(changed)[0], loss)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"head": "gausian"}, "head"),
        ({"activation": "tanh"}, "activation"),
        ({"hidden_dims": ()}, "hidden_dims"),
        ({"log_std_min": 2.0}, "log_std_min"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_config_errors_name_the_field(lift_data, overrides, field):
    with pytest.raises(ValueError, match=field):
        BCPolicy(BCConfig(**overrides), lift_data.spec, lift_data.normalizer)
