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
from torch import nn

from robolearn.data.normalizer import Normalizer
from robolearn.policies.base import Batch, Policy, PolicyConfig, masked_mean
from robolearn.policies.chain import DenoisingChain
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
    # DPPO fine-tuning (robolearn.rl.dppo): the last ``finetuned_steps`` DDIM steps run a
    # fine-tuned copy of the denoiser (``finetuned``); 0 = one network for every step
    finetuned_steps: int = 0

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
        if self.finetuned_steps and self.sampler != "ddim":
            raise ValueError(
                f"finetuned_steps needs sampler 'ddim' (deterministic steps), got {self.sampler!r}"
            )
        if not 0 <= self.finetuned_steps <= self.num_inference_steps:
            raise ValueError(
                f"need 0 <= finetuned_steps <= num_inference_steps ({self.num_inference_steps}), "
                f"got {self.finetuned_steps}"
            )


class DiffusionPolicy(DenoisingChain, Policy):
    name = "diffusion"
    Config = DiffusionConfig
    cfg: DiffusionConfig
    network_name = "denoiser"

    def __init__(self, cfg: DiffusionConfig, spec: ObsSpec, normalizer: Normalizer):
        super().__init__(cfg, spec, normalizer)
        self.denoiser = self.build_network()
        self.finetuned = self.build_network() if cfg.finetuned_steps else None
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

    def build_network(self) -> nn.Module:
        cfg = self.cfg
        return build_denoiser(
            cfg.denoiser,
            cfg.unet,
            cfg.transformer,
            self.action_dim,
            cfg.horizon,
            self.obs_feature_dim,
        )

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

    # --- DenoisingChain: sample_normalized runs these -------------------------------------------
    @property
    def num_denoising_steps(self) -> int:
        return len(self.sampler.timesteps)

    def initial_latent(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.randn(batch, self.cfg.horizon, self.action_dim, device=device)

    def denoising_step(
        self, x: torch.Tensor, i: int, cond: torch.Tensor, network: nn.Module
    ) -> torch.Tensor:
        """Step ``i`` of the scheduler (DDIM: deterministic; DDPM: draws its own noise)."""
        t = self.sampler.timesteps[i]
        return self.sampler.step(network(x, t, cond), t, x).prev_sample
