"""``edm``: score-based diffusion policy with EDM preconditioning (BESO, Reuss et al. 2023).

The network ``F`` never sees raw noisy actions: Karras et al.'s preconditioning wraps it as

    D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, ln(σ)/4, cond)

so that its input and its regression target both have unit variance at every noise level, which
is what lets a 3-step sampler work where DDPM needs 100. Training draws σ from a truncated
log-logistic centred on ``sigma_data``, where the denoising task is neither trivial (σ→0) nor
hopeless (σ→∞). Sampling integrates the probability-flow ODE with first-order (DDIM /
DPM-Solver-1) steps on an exponential σ schedule that ends at 0.

Optional goal conditioning (``goal_keys``): the goal's features are appended to the observation
features; training zeroes them for a fraction of samples so that one network learns both the
conditional and the unconditional denoiser, and inference mixes the two with classifier-free
guidance ``D = D_u + λ·(D_c − D_u)``.

The sampler is written out rather than taken from ``diffusers.EDMEulerScheduler``: that scheduler
expresses the same step (exponential schedule, ``final_sigmas_type="zero"``, no churn; the tests
check equality), but it is stateful (``set_timesteps`` and a step index per chunk) and adds
Python overhead per step to a chunk that takes a few milliseconds on a CPU, and it has nothing for
the training-time σ density or guidance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from robolearn.data.normalizer import Normalizer
from robolearn.encoders import ObservationEncoder
from robolearn.policies.base import Batch, Policy, PolicyConfig, masked_mean
from robolearn.policies.chain import DenoisingChain
from robolearn.policies.denoisers import (
    DENOISERS,
    MLPConfig,
    TransformerConfig,
    UnetConfig,
)
from robolearn.spec import ObsSpec

NORMALIZED_ACTION_BOUND = 1.0  # min-max normalised actions live in [-1, 1]


@dataclass(frozen=True)
class EDMConfig(PolicyConfig):
    denoiser: str = "unet"  # "unet" | "transformer" | "mlp"
    unet: UnetConfig = field(default_factory=UnetConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
    # EDM preconditioning and training noise density (BESO's constants)
    sigma_data: float = 0.5
    sigma_density_scale: float = 0.5  # scale of the log-logistic; its location is ln(sigma_data)
    # BESO truncates the training density to the sampler's range: the network is only ever
    # queried there, so no capacity goes to noise levels the sampler never visits.
    train_sigma_min: float = 0.005
    train_sigma_max: float = 1.0
    # sampler: exponential schedule from sigma_max to sigma_min in num_steps, then 0
    num_steps: int = 3
    sigma_min: float = 0.005
    sigma_max: float = 1.0
    # goal conditioning with classifier-free guidance
    goal_keys: tuple[str, ...] = ()  # observation keys that form the goal (last step of the window)
    goal_dropout: float = 0.1  # probability of zeroing the goal per training sample
    cfg_scale: float = 1.0  # guidance weight λ; 1 is the plain conditional denoiser
    ema_decay: float = 0.999
    # DPPO fine-tuning (robolearn.rl.dppo): the last ``finetuned_steps`` sampler steps run a
    # fine-tuned copy of the network (``finetuned``); 0 = one network for every step
    finetuned_steps: int = 0

    @property
    def data_keys(self) -> tuple[str, ...]:
        """The observation keys and the goal's: a goal left out of ``obs_keys`` is still loaded
        (and normalised) for training."""
        return tuple(dict.fromkeys((*self.obs_keys, *self.goal_keys))) if self.obs_keys else ()

    def validate(self) -> None:
        super().validate()
        if self.denoiser not in DENOISERS:
            raise ValueError(f"denoiser must be one of {DENOISERS}, got {self.denoiser!r}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        for lo, hi in (("sigma_min", "sigma_max"), ("train_sigma_min", "train_sigma_max")):
            if not 0 < getattr(self, lo) < getattr(self, hi):
                raise ValueError(
                    f"need 0 < {lo} < {hi}, got {getattr(self, lo)}, {getattr(self, hi)}"
                )
        if self.sigma_data <= 0 or self.sigma_density_scale <= 0:
            raise ValueError("sigma_data and sigma_density_scale must be positive")
        if not 0 <= self.goal_dropout < 1:
            raise ValueError(f"goal_dropout must be in [0, 1), got {self.goal_dropout}")
        if not 0 <= self.finetuned_steps <= self.num_steps:
            raise ValueError(
                f"need 0 <= finetuned_steps <= num_steps ({self.num_steps}), "
                f"got {self.finetuned_steps}"
            )


# --- EDM math --------------------------------------------------------------------------------


def edm_scalings(
    sigma: torch.Tensor, sigma_data: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(c_skip, c_out, c_in)`` of Karras et al.'s preconditioning, elementwise in ``sigma``."""
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / total.sqrt(), total.rsqrt()


def noise_input(sigma: torch.Tensor) -> torch.Tensor:
    """The noise level the network sees, ``ln(σ)/4``: O(1) over the σ range that matters."""
    return sigma.log() / 4


def exponential_schedule(num_steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """``num_steps`` noise levels log-spaced from ``sigma_max`` down to ``sigma_min``, then 0."""
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), num_steps).exp()
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def sample_log_logistic(
    n: int,
    loc: float,
    scale: float,
    sigma_min: float,
    sigma_max: float,
    device: torch.device | None = None,
) -> torch.Tensor:
    """``n`` draws of σ with ``ln σ ~ Logistic(loc, scale)`` truncated to [sigma_min, sigma_max].

    Inverse-CDF sampling on the truncated uniform: exact truncation, no rejection loop.
    """

    def cdf(sigma: float) -> float:
        return 1 / (1 + math.exp(-(math.log(sigma) - loc) / scale))

    u = torch.empty(n, device=device).uniform_(cdf(sigma_min), cdf(sigma_max))
    return (loc + scale * torch.logit(u)).exp().clamp(sigma_min, sigma_max)


# --- policy ----------------------------------------------------------------------------------


class EDMPolicy(DenoisingChain, Policy):
    name = "edm"
    Config = EDMConfig
    cfg: EDMConfig
    network_name = "model"

    def __init__(self, cfg: EDMConfig, spec: ObsSpec, normalizer: Normalizer):
        goal_keys = tuple(cfg.goal_keys)
        if goal_keys:
            # The goal must not also reach the network through the observation features, or
            # zeroing it would leave the "unconditional" denoiser conditioned after all.
            obs_keys = tuple(k for k in cfg.obs_keys or spec.groups["policy"] if k not in goal_keys)
            cfg = replace(cfg, obs_keys=obs_keys)
        super().__init__(cfg, spec, normalizer)
        self.goal_keys = goal_keys
        self.goal_encoder = ObservationEncoder(spec, goal_keys, normalizer) if goal_keys else None
        goal_dim = self.goal_encoder.feature_dim if self.goal_encoder else 0
        # ``encode`` returns observation features followed by the goal's; every key it reads:
        self.obs_keys = self.obs_keys + goal_keys
        self.obs_feature_dim += goal_dim
        goal_dims = torch.zeros(self.obs_feature_dim)
        goal_dims[self.obs_feature_dim - goal_dim :] = 1
        self.register_buffer("goal_dims", goal_dims, persistent=False)
        self.register_buffer(
            "sigmas",
            exponential_schedule(cfg.num_steps, cfg.sigma_min, cfg.sigma_max),
            persistent=False,
        )
        # Min-max normalised actions have the data's range as [-1, 1]: clip samples to it. A
        # mean-std normaliser has no such box; predict_action still clamps to the env's bounds.
        self.clip_normalized = normalizer.modes["action"] == "minmax"
        self.model = self.build_network()
        self.finetuned = self.build_network() if cfg.finetuned_steps else None

    # --- conditioning ------------------------------------------------------------------------
    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Observation window features, then the goal's features at the window's last step."""
        features = super().encode(obs)
        if self.goal_encoder is None:
            return features
        return torch.cat([features, self.goal_encoder(obs)[:, -1]], dim=-1)

    def drop_goal(self, cond: torch.Tensor) -> torch.Tensor:
        """``cond`` with the goal features zeroed: the unconditional input."""
        return cond * (1 - self.goal_dims)

    # --- denoiser ------------------------------------------------------------------------------
    def denoise(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        cond: torch.Tensor,
        cfg_scale: float = 1.0,
        network: nn.Module | None = None,
    ) -> torch.Tensor:
        """``D(x; σ)`` for noisy chunks ``x`` (B, H, A) at noise levels ``sigma`` (B,), with
        ``network`` as F (default: ``self.model``).

        With a goal and ``cfg_scale != 1``, the conditional and unconditional passes run as one
        batch and mix as ``D_u + λ·(D_c − D_u)``; as D is affine in F with the same ``c_skip·x``,
        mixing the network outputs is the same thing.
        """
        c_skip, c_out, c_in = (c[:, None, None] for c in edm_scalings(sigma, self.cfg.sigma_data))
        level = noise_input(sigma)
        network = self.model if network is None else network
        if self.goal_encoder is None or cfg_scale == 1.0:
            out = network(c_in * x, level, cond)
        else:
            both = network(
                torch.cat([c_in * x] * 2),
                torch.cat([level] * 2),
                torch.cat([cond, self.drop_goal(cond)]),
            )
            conditional, unconditional = both.chunk(2)
            out = unconditional + cfg_scale * (conditional - unconditional)
        return c_skip * x + c_out * out

    # --- Policy ---------------------------------------------------------------------------------
    def compute_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """EDM loss: MSE of F against the target that makes D(x; σ) equal the clean chunk.

        Regressing F on ``(a − c_skip·x)/c_out`` is the σ-weighted denoising loss of Karras et
        al. with its weight λ(σ) = 1/c_out² folded in; padded steps past an episode end
        (``action_mask`` 0) do not count.
        """
        actions = self.normalized_actions(batch)
        cond = self.encode(batch["obs"])
        if self.goal_encoder is not None and self.training:
            dropped = torch.rand(cond.shape[0], 1, device=cond.device) < self.cfg.goal_dropout
            cond = torch.where(dropped, self.drop_goal(cond), cond)
        sigma = sample_log_logistic(
            actions.shape[0],
            math.log(self.cfg.sigma_data),
            self.cfg.sigma_density_scale,
            self.cfg.train_sigma_min,
            self.cfg.train_sigma_max,
            device=actions.device,
        )
        x = actions + sigma[:, None, None] * torch.randn_like(actions)
        c_skip, c_out, c_in = (c[:, None, None] for c in edm_scalings(sigma, self.cfg.sigma_data))
        prediction = self.model(c_in * x, noise_input(sigma), cond)
        target = (actions - c_skip * x) / c_out
        loss = masked_mean((prediction - target).square(), batch["action_mask"])
        return loss, {"loss": loss.item()}

    # --- DenoisingChain: sample_normalized runs these -------------------------------------------
    @property
    def num_denoising_steps(self) -> int:
        return self.cfg.num_steps

    def initial_latent(self, batch: int, device: torch.device) -> torch.Tensor:
        return self.sigmas[0] * torch.randn(batch, self.cfg.horizon, self.action_dim, device=device)

    def denoising_step(
        self, x: torch.Tensor, i: int, cond: torch.Tensor, network: nn.Module
    ) -> torch.Tensor:
        """First-order probability-flow ODE step ``x ← r·x + (1 − r)·D(x; σ_i)``, r = σ_{i+1}/σ_i."""
        sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
        denoised = self.denoise(x, sigma.expand(x.shape[0]), cond, self.cfg.cfg_scale, network)
        ratio = sigma_next / sigma
        return ratio * x + (1 - ratio) * denoised

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        if self.clip_normalized:
            return x.clamp(-NORMALIZED_ACTION_BOUND, NORMALIZED_ACTION_BOUND)
        return x
