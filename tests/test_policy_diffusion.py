"""Diffusion policy: the method tests of METHODS.md §1, training, masking, copies, config."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from robolearn.data.normalizer import Normalizer
from robolearn.policies import policy_class
from robolearn.policies.bc import BCConfig, BCPolicy
from robolearn.policies.denoisers import TransformerConfig, UnetConfig
from robolearn.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robolearn.policies.edm import noise_input
from robolearn.policies.ema import EMA
from robolearn.spec import ActionSpec, ObsSpec, TermSpec
from robolearn.utils.config import from_dict

CONF = Path(__file__).parents[1] / "conf" / "policy" / "diffusion.yaml"
# The default U-Net is small already; a transformer half the default's depth and width suffices.
SMALL_TRANSFORMER = TransformerConfig(d_model=64, n_layers=2, dropout=0.0)


def window(batch: dict, index: torch.Tensor | slice) -> dict:
    return {
        "obs": {k: v[index] for k, v in batch["obs"].items()},
        "action": batch["action"][index],
        "action_mask": batch["action_mask"][index],
    }


def train(policy: nn.Module, batch: dict, steps: int, batch_size: int = 32) -> list[float]:
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        index = torch.randint(len(batch["action"]), (batch_size,))
        loss, _ = policy.compute_loss(window(batch, index))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def lift_policy(lift_data, **overrides) -> DiffusionPolicy:
    cfg = DiffusionConfig(transformer=SMALL_TRANSFORMER, **overrides)
    return DiffusionPolicy(cfg, lift_data.spec, lift_data.normalizer)


class OracleDenoiser(nn.Module):
    """Predicts exactly what makes every step's clean-chunk estimate equal ``target``."""

    def __init__(self, target: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: str):
        super().__init__()
        self.target, self.alphas_cumprod = target, alphas_cumprod
        self.prediction_type = prediction_type

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "sample":
            return self.target
        alpha = self.alphas_cumprod[int(t)]
        return (x - alpha.sqrt() * self.target) / (1 - alpha).sqrt()  # the noise in x


def test_registry_and_yaml_defaults():
    assert policy_class("diffusion") is DiffusionPolicy
    data = OmegaConf.to_container(OmegaConf.load(CONF))
    assert data.pop("name") == "diffusion"
    assert from_dict(DiffusionConfig, data) == DiffusionConfig()


@pytest.mark.parametrize("denoiser", ["unet", "transformer", "mlp"])
def test_predict_action_shape_and_bounds(lift_data, denoiser):
    # Action statistics 100x narrower than the data: samples land far outside the bounds.
    stats = lift_data.normalizer.to_dict()
    stats["action"] = {**stats["action"], "scale": [0.01] * 7, "offset": [0.0] * 7}
    policy = DiffusionPolicy(DiffusionConfig(denoiser=denoiser), lift_data.spec, Normalizer(stats))
    chunk = policy.eval().predict_action(window(lift_data.batch, slice(3))["obs"])
    assert chunk.shape == (3, 16, 7)
    assert chunk.abs().max() == 1.0  # clipped to the action bounds, not beyond


def test_ddim_step_with_the_true_noise_recovers_x0(lift_data):
    policy = lift_policy(lift_data)
    ddim, ddpm = policy.sampler, policy.noise_scheduler
    x0 = torch.rand(4, 16, 7) * 2 - 1
    noise = torch.randn_like(x0)
    timesteps = ddim.timesteps.tolist()
    assert len(timesteps) == 10
    for t, t_prev in zip(timesteps, timesteps[1:] + [None], strict=True):
        out = ddim.step(noise, t, ddpm.add_noise(x0, noise, torch.tensor([t])))
        torch.testing.assert_close(out.pred_original_sample, x0, atol=1e-4, rtol=0)
        expected = x0 if t_prev is None else ddpm.add_noise(x0, noise, torch.tensor([t_prev]))
        torch.testing.assert_close(out.prev_sample, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_oracle_denoiser_makes_the_sampler_return_the_target(lift_data, sampler, prediction_type):
    policy = lift_policy(lift_data, sampler=sampler, prediction_type=prediction_type)
    target = torch.rand(2, 16, 7) * 2 - 1
    policy.denoiser = OracleDenoiser(target, policy.noise_scheduler.alphas_cumprod, prediction_type)
    features = torch.zeros(2, policy.obs_feature_dim)
    steps = 10 if sampler == "ddim" else 100
    assert len(policy.sampler.timesteps) == steps
    torch.testing.assert_close(policy.sample_normalized(features), target, atol=1e-4, rtol=0)


@pytest.mark.parametrize("denoiser", ["unet", "transformer", "mlp"])
def test_loss_falls_on_lift_demos(lift_data, denoiser):
    losses = train(lift_policy(lift_data, denoiser=denoiser), lift_data.batch, 60)
    start, end = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert end < 0.6 * start, (start, end)


class TimeRecorder(nn.Module):
    """Predicts zeros and records the time input it is given."""

    def __init__(self):
        super().__init__()
        self.times: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.times.append(torch.as_tensor(t).float().expand(x.shape[0]).clone())
        return torch.zeros_like(x)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_mlp_sees_edm_noise_level_and_unet_the_step_index(lift_data, sampler):
    """The MLP embeds its time input linearly: it must get ln(σ_t)/4 (EDM's input for the same
    noise, O(1)) in training and sampling alike; the sinusoidal networks keep the step index."""
    mlp = lift_policy(lift_data, denoiser="mlp", sampler=sampler)
    alphas = mlp.noise_scheduler.alphas_cumprod
    expected = noise_input(((1 - alphas) / alphas).sqrt())
    torch.testing.assert_close(mlp.time_input, expected)
    assert expected.abs().max() < 2.5
    for policy, table in ((mlp, expected), (lift_policy(lift_data), torch.arange(100.0))):
        policy.denoiser = recorder = TimeRecorder()
        policy.sample_normalized(torch.zeros(3, policy.obs_feature_dim))
        steps = policy.sampler.timesteps
        assert len(recorder.times) == len(steps)
        torch.testing.assert_close(torch.stack([t[0] for t in recorder.times]), table[steps])
        recorder.times.clear()
        policy.compute_loss(window(lift_data.batch, slice(16)))
        (t,) = recorder.times
        assert torch.isin(t, table).all()


class ZeroDenoiser(nn.Module):
    """Predicts zeros and keeps its output, to read the loss's gradient per chunk step."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.output = torch.zeros_like(x, requires_grad=True)
        return self.output


def test_padded_steps_get_no_gradient(lift_data):
    batch = window(lift_data.batch, slice(64))
    padding = batch["action_mask"] == 0
    assert padding.any() and not padding.all()
    policy = lift_policy(lift_data)
    policy.denoiser = ZeroDenoiser()
    policy.compute_loss(batch)[0].backward()
    grad = policy.denoiser.output.grad
    assert (grad[padding] == 0).all() and (grad[~padding] != 0).all()


def test_copies_and_weight_averages_predict(lift_data):
    """EMA needs the policy to deep-copy (schedulers included) and average without BatchNorm."""
    policy = lift_policy(lift_data)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in policy.modules())
    ema = EMA(policy)
    averaged = AveragedModel(policy, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    for step in range(3):
        loss, _ = policy.compute_loss(window(lift_data.batch, slice(8 * step, 8 * step + 8)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(policy)
        averaged.update_parameters(policy)
    policy.eval()
    clone = copy.deepcopy(policy)
    obs = window(lift_data.batch, slice(2))["obs"]
    chunks = []
    for model in (policy, clone, ema.model, averaged.module):
        torch.manual_seed(0)
        chunks.append(model.predict_action(obs))
    assert torch.equal(chunks[0], chunks[1])
    assert all(c.shape == (2, 16, 7) and c.isfinite().all() for c in chunks)
    assert set(ema.model.state_dict()) == set(policy.state_dict())


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"denoiser": "unett"}, "denoiser"),
        ({"sampler": "dpm"}, "sampler"),
        ({"prediction_type": "v_prediction"}, "prediction_type"),
        ({"beta_schedule": "cosine"}, "beta_schedule"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_inference_steps": 101}, "num_inference_steps"),
        ({"unet": UnetConfig(n_groups=7)}, "n_groups"),
        ({"denoiser": "transformer", "transformer": TransformerConfig(n_heads=3)}, "n_heads"),
    ],
)
def test_config_errors_name_the_field(lift_data, overrides, field):
    with pytest.raises(ValueError, match=field):
        DiffusionPolicy(DiffusionConfig(**overrides), lift_data.spec, lift_data.normalizer)


def test_samples_cover_both_modes_where_mse_bc_averages_them():
    """Toy: whatever the observation, the demo chunk is all +0.8 or all -0.8 (plus noise)."""
    n, horizon = 512, 4
    spec = ObsSpec({"state": TermSpec((2,))}, {"policy": ("state",)}, ActionSpec(dim=2))
    state = torch.rand(n, 1, 2) * 2 - 1
    sign = torch.randint(2, (n, 1, 1)) * 2.0 - 1
    action = 0.8 * sign + 0.05 * torch.randn(n, horizon, 2)
    data = {"obs": {"state": state}, "action": action, "action_mask": torch.ones(n, horizon)}
    normalizer = Normalizer.fit({"state": state.flatten(0, 1), "action": action.flatten(0, 1)})
    window_cfg = {"n_obs_steps": 1, "horizon": horizon, "n_action_steps": horizon}

    unet = UnetConfig(down_dims=(32, 64), time_embed_dim=32)
    diffusion = DiffusionPolicy(DiffusionConfig(**window_cfg, unet=unet), spec, normalizer)
    losses = train(diffusion, data, 300, batch_size=64)
    assert sum(losses[-20:]) < 0.5 * sum(losses[:20])
    bc = BCPolicy(BCConfig(**window_cfg, hidden_dims=(64, 64)), spec, normalizer)
    train(bc, data, 300, batch_size=64)

    obs = {"state": torch.zeros(200, 1, 2)}  # one observation, 200 samples
    means = diffusion.eval().predict_action(obs).mean(dim=(1, 2))
    plus, minus = (means > 0.5).float().mean().item(), (means < -0.5).float().mean().item()
    between = 1 - plus - minus
    print(f"diffusion mode coverage: +0.8 {plus:.0%}, -0.8 {minus:.0%}, between {between:.0%}")
    assert plus >= 0.25 and minus >= 0.25 and between < 0.10, (plus, minus, between)
    bc_mean = bc.eval().predict_action(obs).mean()
    print(f"MSE-BC mean prediction {bc_mean:+.3f}")
    assert bc_mean.abs() < 0.3
