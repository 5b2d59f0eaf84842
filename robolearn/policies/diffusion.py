"""``diffusion``: Diffusion Policy (Chi et al.) — DDPM training, DDIM or DDPM sampling.

Training noises the normalised action chunk at a random DDPM step and regresses the noise (or
the clean chunk, ``prediction_type: sample``) with a denoiser conditioned on the encoded
observation window. Sampling runs diffusers' DDIM (deterministic, ``num_inference_steps``
steps) or DDPM (ancestral, the full ``num_train_timesteps`` chain) from Gaussian noise.

Any denoiser of :mod:`robolearn.policies.denoisers` serves, ``mlp`` included, so that the
samplers can be compared with ``edm`` on the very same network class (``diffusion_cpu.yaml``
vs ``edm_cpu.yaml``). The U-Net and the transformer see the DDPM step index through their
sinusoidal time embedding. The MLP embeds its time input linearly, as BESO does, and needs an
O(1) noise level: it gets the step's noise level in EDM's coordinate, ``ln(σ_t)/4`` with
``σ_t = sqrt((1 − ᾱ_t)/ᾱ_t)``. That is the exact correspondence, not an arbitrary scaling: the
DDPM input ``x_t = sqrt(ᾱ_t)·a + sqrt(1 − ᾱ_t)·ε`` equals ``(a + σ_t·ε)/sqrt(1 + σ_t²)``, i.e.
the EDM noisy chunk at σ_t scaled by EDM's ``c_in`` for unit data scale, so the same network sees
inputs of the same kind at the same level input under both training schemes. (``t/T`` would
also be O(1), but in a coordinate unrelated to the noise; ``ln(σ_t)/4`` runs from -0.92 at
t = 0 to 1.9 at t = 99, the range EDM's linear embedding is made for.)

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
    MLPConfig,
    TransformerConfig,
    UnetConfig,
)
from robolearn.policies.edm import noise_input
from robolearn.spec import ObsSpec

SAMPLERS = ("ddim", "ddpm")
PREDICTION_TYPES = ("epsilon", "sample")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")


@dataclass(frozen=True)
class DiffusionConfig(PolicyConfig):
    denoiser: str = "unet"  # "unet" | "transformer" | "mlp"
    unet: UnetConfig = field(default_factory=UnetConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
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
        # The network's time input per DDPM step (see the module docstring); not persistent, so
        # checkpoints hold weights only and load whichever denoiser they were trained with.
        alphas_cumprod = self.noise_scheduler.alphas_cumprod
        if cfg.denoiser == "mlp":
            time_input = noise_input(((1 - alphas_cumprod) / alphas_cumprod).sqrt())
        else:
            time_input = torch.arange(cfg.num_train_timesteps, dtype=torch.float32)
        self.register_buffer("time_input", time_input.float(), persistent=False)

    def compute_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        actions = self.normalized_actions(batch)
        cond = self.encode(batch["obs"])
        noise = torch.randn_like(actions)
        t = torch.randint(self.cfg.num_train_timesteps, (actions.shape[0],), device=actions.device)
        noisy = self.noise_scheduler.add_noise(actions, noise, t)
        prediction = self.denoiser(noisy, self.time_input[t], cond)
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
        return self.sampler.step(network(x, self.time_input[t], cond), t, x).prev_sample
