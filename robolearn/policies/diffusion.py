"""``diffusion``: Diffusion Policy (Chi et al.) — DDPM training, DDIM or DDPM sampling.

Training noises the normalised action chunk at a random DDPM step and regresses the noise (or
the clean chunk, ``prediction_type: sample``) with a denoiser conditioned on the encoded
observation window. Sampling runs diffusers' DDIM (deterministic, ``num_inference_steps``
steps) or DDPM (ancestral, the full ``num_train_timesteps`` chain) from Gaussian noise.

``clip_sample`` clips each step's estimate of the clean chunk to [-1, 1], the range of
min-max-normalised actions; keep it on with the default ``minmax`` normaliser.

The schedulers are plain Python objects rebuilt from the config, not state: the policy's
``state_dict`` holds only weights and normaliser statistics, and ``copy.deepcopy`` (EMA,
``AveragedModel``) copies them along with everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from robolearn.data.normalizer import Normalizer
from robolearn.policies.base import Batch, Policy, PolicyConfig, masked_mean
from robolearn.policies.denoisers import (
    DENOISERS,
    TransformerConfig,
    UnetConfig,
    build_denoiser,
)
from robolearn.spec import ObsSpec

SAMPLERS = ("ddim", "ddpm")
PREDICTION_TYPES = ("epsilon", "sample")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")


@dataclass(frozen=True)
class DiffusionConfig(PolicyConfig):
    denoiser: str = "unet"  # "unet" | "transformer"
    unet: UnetConfig = field(default_factory=UnetConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"  # what the network predicts: "epsilon" (noise) | "sample"
    clip_sample: bool = True
    sampler: str = "ddim"  # "ddim" | "ddpm" (always the full num_train_timesteps chain)
    num_inference_steps: int = 10  # DDIM steps

    def validate(self) -> None:
        super().validate()
        for key, choices in (
            ("denoiser", DENOISERS),
            ("sampler", SAMPLERS),
            ("prediction_type", PREDICTION_TYPES),
            ("beta_schedule", BETA_SCHEDULES),
        ):
            if getattr(self, key) not in choices:
                raise ValueError(f"{key} must be one of {choices}, got {getattr(self, key)!r}")
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise ValueError(
                "need 1 <= num_inference_steps <= num_train_timesteps, got "
                f"{self.num_inference_steps}, {self.num_train_timesteps}"
            )


class DiffusionPolicy(Policy):
    name = "diffusion"
    Config = DiffusionConfig
    cfg: DiffusionConfig

    def __init__(self, cfg: DiffusionConfig, spec: ObsSpec, normalizer: Normalizer):
        super().__init__(cfg, spec, normalizer)
        self.denoiser = build_denoiser(
            cfg.denoiser,
            cfg.unet,
            cfg.transformer,
            self.action_dim,
            cfg.horizon,
            self.obs_feature_dim,
        )
        schedule = {
            "num_train_timesteps": cfg.num_train_timesteps,
            "beta_schedule": cfg.beta_schedule,
            "prediction_type": cfg.prediction_type,
            "clip_sample": cfg.clip_sample,
        }
        self.noise_scheduler = DDPMScheduler(**schedule)
        if cfg.sampler == "ddim":
            self.sampler = DDIMScheduler(**schedule)
            self.sampler.set_timesteps(cfg.num_inference_steps)
        else:
            self.sampler = DDPMScheduler(**schedule)
            self.sampler.set_timesteps(cfg.num_train_timesteps)

    def compute_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        actions = self.normalized_actions(batch)
        cond = self.encode(batch["obs"])
        noise = torch.randn_like(actions)
        t = torch.randint(self.cfg.num_train_timesteps, (actions.shape[0],), device=actions.device)
        noisy = self.noise_scheduler.add_noise(actions, noise, t)
        prediction = self.denoiser(noisy, t, cond)
        target = noise if self.cfg.prediction_type == "epsilon" else actions
        loss = masked_mean((prediction - target).square(), batch["action_mask"])
        return loss, {"loss": loss.item()}

    @torch.no_grad()
    def sample_normalized(self, obs_features: torch.Tensor) -> torch.Tensor:
        x = torch.randn(
            obs_features.shape[0], self.cfg.horizon, self.action_dim, device=obs_features.device
        )
        for t in self.sampler.timesteps:
            x = self.sampler.step(self.denoiser(x, t, obs_features), t, x).prev_sample
        return x
