"""Denoising networks for action chunks: ``forward(x (B, H, A), t (B,), cond (B, C)) -> (B, H, A)``.

``t`` is the diffusion time as a float (a scalar, or one per sample). What it means is the
caller's choice, made once per policy and network: the U-Net and the transformer see it through
a sinusoidal embedding, which suits a DDPM step index (0..99, ``diffusion``) as well as a
continuous level such as EDM's ``ln(σ)/4`` (``edm``); the MLP embeds it linearly, so its callers
pass a noise level of order 1 — ``ln(σ)/4`` in both policies (``diffusion`` converts its step
index to the equivalent σ, see :mod:`robolearn.policies.diffusion`).

* :class:`ConditionalUnet1D`: a 1-D temporal U-Net whose residual blocks are FiLM-modulated by
  [observation features, time embedding] (Chi et al.'s design). Built here rather than taken
  from diffusers: ``UNet1DModel`` is made for long audio-like signals and has no per-block
  conditioning on a global vector. GroupNorm, not BatchNorm, so that weight averaging (EMA)
  needs no running statistics.
* :class:`TransformerDenoiser`: action tokens attend to themselves (optionally causally) and,
  through cross-attention, to condition tokens [time, observation features].
* :class:`MLPDenoiser`: a FiLM-conditioned residual MLP over the flattened chunk, the cheapest
  network per evaluation on a CPU (the default policy's, ``conf/policy/edm_cpu.yaml``).

:class:`UnetConfig` / :class:`TransformerConfig` / :class:`MLPConfig` and :func:`build_denoiser`
let each policy config expose ``denoiser: unet | transformer | mlp`` with one sub-config per
network, so ``edm`` and ``diffusion`` can be compared with the very same network class.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

DENOISERS = ("unet", "transformer", "mlp")


@dataclass(frozen=True)
class UnetConfig:
    # Sized for a 2-core CPU: 1.2M parameters with low-dim lift inputs. (64, 128, 256) has 4.4M
    # and trains ~3.5x slower; Chi et al.'s (256, 512, 1024) has 65M.
    down_dims: tuple[int, ...] = (32, 64, 128)
    kernel_size: int = 5
    n_groups: int = 8
    time_embed_dim: int = 64


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    n_cond_tokens: int = 2  # the condition vector is projected to this many memory tokens
    dropout: float = 0.1
    causal: bool = True  # action token i attends to tokens <= i only


@dataclass(frozen=True)
class MLPConfig:
    hidden_dim: int = 256
    num_blocks: int = 3  # FiLM-conditioned residual blocks


class SinusoidalEmbedding(nn.Module):
    """Real-valued time (B,) -> (B, dim) sines and cosines at geometrically spaced frequencies."""

    def __init__(self, dim: int, max_period: float = 10_000.0):
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"time embedding dim must be even and >= 4, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half) / (half - 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def time_embedding(dim: int) -> nn.Sequential:
    """Sinusoidal features followed by an MLP, so the network can shape its own time code."""
    return nn.Sequential(
        SinusoidalEmbedding(dim), nn.Linear(dim, 4 * dim), nn.Mish(), nn.Linear(4 * dim, dim)
    )


def as_batch_time(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Scalar or (B,) time -> (B,) on ``x``'s device (samplers pass one time for the batch)."""
    return torch.as_tensor(t, device=x.device).expand(x.shape[0])


# --- 1-D temporal U-Net ----------------------------------------------------------------------


def conv_block(in_channels: int, out_channels: int, kernel_size: int, n_groups: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.GroupNorm(n_groups, out_channels),
        nn.Mish(),
    )


class FiLMResidualBlock(nn.Module):
    """Two conv blocks; the condition scales and shifts the first one's output per channel."""

    def __init__(
        self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, n_groups: int
    ):
        super().__init__()
        if out_channels % n_groups:
            raise ValueError(f"U-Net width {out_channels} is not divisible by n_groups={n_groups}")
        self.conv1 = conv_block(in_channels, out_channels, kernel_size, n_groups)
        self.conv2 = conv_block(out_channels, out_channels, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_channels))
        self.skip = (
            nn.Conv1d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond)[:, :, None].chunk(2, dim=1)
        h = self.conv1(x) * (1 + scale) + shift  # 1 + scale: identity modulation at init
        return self.conv2(h) + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """U-Net over the chunk's time axis; one resolution level per entry of ``down_dims``.

    Each level halves the length, so the chunk is zero-padded at its end to a multiple of
    ``2 ** (levels - 1)`` and the output cropped back (horizon 16 with 3 levels: 16 -> 8 -> 4).
    """

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        down_dims: tuple[int, ...] = UnetConfig.down_dims,
        kernel_size: int = UnetConfig.kernel_size,
        n_groups: int = UnetConfig.n_groups,
        time_embed_dim: int = UnetConfig.time_embed_dim,
    ):
        super().__init__()
        if not down_dims:
            raise ValueError("down_dims must have at least one entry")
        self.time_embed = time_embedding(time_embed_dim)
        film_dim = cond_dim + time_embed_dim

        def block(cin: int, cout: int) -> FiLMResidualBlock:
            return FiLMResidualBlock(cin, cout, film_dim, kernel_size, n_groups)

        widths = (action_dim, *down_dims)
        self.down = nn.ModuleList(
            nn.ModuleList([block(cin, cout), block(cout, cout)])
            for cin, cout in zip(widths[:-1], widths[1:], strict=True)
        )
        self.downsample = nn.ModuleList(
            nn.Conv1d(dim, dim, 3, stride=2, padding=1) for dim in down_dims[:-1]
        )
        self.mid = nn.ModuleList([block(down_dims[-1], down_dims[-1]) for _ in range(2)])
        # coarse to fine: upsample, concatenate the skip of the level above, two blocks
        self.upsample = nn.ModuleList(
            nn.ConvTranspose1d(dim, dim, 4, stride=2, padding=1) for dim in down_dims[:0:-1]
        )
        self.up = nn.ModuleList(
            nn.ModuleList([block(coarse + fine, fine), block(fine, fine)])
            for coarse, fine in zip(down_dims[:0:-1], down_dims[-2::-1], strict=True)
        )
        self.out = nn.Sequential(
            conv_block(down_dims[0], down_dims[0], kernel_size, n_groups),
            nn.Conv1d(down_dims[0], action_dim, 1),
        )
        self.length_multiple = 2 ** (len(down_dims) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor) -> torch.Tensor:
        horizon = x.shape[1]
        c = torch.cat([cond, self.time_embed(as_batch_time(t, x))], dim=-1)
        h = F.pad(x.transpose(1, 2), (0, -horizon % self.length_multiple))
        skips = []
        for level, (res1, res2) in enumerate(self.down):
            h = res2(res1(h, c), c)
            if level < len(self.downsample):
                skips.append(h)
                h = self.downsample[level](h)
        for res in self.mid:
            h = res(h, c)
        for upsample, (res1, res2) in zip(self.upsample, self.up, strict=True):
            h = torch.cat([upsample(h), skips.pop()], dim=1)
            h = res2(res1(h, c), c)
        return self.out(h)[:, :, :horizon].transpose(1, 2)


# --- transformer -----------------------------------------------------------------------------


class TransformerDenoiser(nn.Module):
    """Pre-norm transformer decoder: action tokens query memory tokens [time, condition]."""

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        horizon: int,
        d_model: int = TransformerConfig.d_model,
        n_heads: int = TransformerConfig.n_heads,
        n_layers: int = TransformerConfig.n_layers,
        n_cond_tokens: int = TransformerConfig.n_cond_tokens,
        dropout: float = TransformerConfig.dropout,
        causal: bool = TransformerConfig.causal,
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.horizon, self.n_cond_tokens, self.d_model = horizon, n_cond_tokens, d_model
        self.action_in = nn.Linear(action_dim, d_model)
        self.action_pos = nn.Parameter(0.02 * torch.randn(1, horizon, d_model))
        self.time_embed = time_embedding(d_model)
        self.cond_in = nn.Sequential(
            nn.Linear(cond_dim, d_model), nn.Mish(), nn.Linear(d_model, n_cond_tokens * d_model)
        )
        self.memory_pos = nn.Parameter(0.02 * torch.randn(1, 1 + n_cond_tokens, d_model))
        layer = nn.TransformerDecoderLayer(
            d_model,
            n_heads,
            dim_feedforward=4 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(layer, n_layers)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, action_dim))
        mask = nn.Transformer.generate_square_subsequent_mask(horizon) if causal else None
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor) -> torch.Tensor:
        horizon = x.shape[1]
        if horizon > self.horizon:
            raise ValueError(f"chunk of {horizon} steps; this network was built for {self.horizon}")
        tokens = self.action_in(x) + self.action_pos[:, :horizon]
        memory = torch.cat(
            [
                self.time_embed(as_batch_time(t, x))[:, None],
                self.cond_in(cond).view(-1, self.n_cond_tokens, self.d_model),
            ],
            dim=1,
        )
        mask = None if self.causal_mask is None else self.causal_mask[:horizon, :horizon]
        h = self.decoder(tokens, memory + self.memory_pos, tgt_mask=mask)
        return self.head(h)


# --- flat-chunk MLP --------------------------------------------------------------------------


class FiLMLinearBlock(nn.Module):
    """Pre-norm residual block; the condition scales and shifts its hidden layer (FiLM)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.inner = nn.Linear(dim, dim)
        self.film = nn.Linear(dim, 2 * dim)
        self.outer = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond).chunk(2, dim=-1)
        return h + self.outer(self.inner(self.norm(h)) * (1 + scale) + shift)


class MLPDenoiser(nn.Module):
    """``F(x, noise_level, cond)`` as a FiLM-conditioned residual MLP over the flattened chunk.

    Low-dim chunks are small (16 × 7 numbers): they need no temporal convolution, and an MLP is
    the cheapest network per evaluation on a CPU (about 1 ms per EDM-3 chunk). Noise level and
    observation features modulate every block rather than only the input, because F changes
    character with σ: at σ ≈ 1 it resolves which mode a chunk belongs to, at small σ it only
    predicts the noise. BESO embeds ``ln σ / 4`` with a linear layer; so does this network, which
    is why its ``noise_level`` must be an O(1) scalar (a raw DDPM step index of up to 99 would
    saturate the embedding): the caller converts its own notion of time to it.
    """

    def __init__(
        self,
        action_dim: int,
        horizon: int,
        cond_dim: int,
        hidden_dim: int = MLPConfig.hidden_dim,
        num_blocks: int = MLPConfig.num_blocks,
    ):
        super().__init__()
        self.chunk_shape = (horizon, action_dim)
        self.noise_embed = nn.Sequential(nn.Linear(1, hidden_dim), nn.SiLU())
        self.cond_embed = nn.Sequential(nn.Linear(hidden_dim + cond_dim, hidden_dim), nn.SiLU())
        self.input = nn.Linear(horizon * action_dim, hidden_dim)
        self.blocks = nn.ModuleList(FiLMLinearBlock(hidden_dim) for _ in range(num_blocks))
        self.output = nn.Sequential(
            nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, horizon * action_dim)
        )

    def forward(
        self, x: torch.Tensor, noise_level: torch.Tensor | float, cond: torch.Tensor
    ) -> torch.Tensor:
        level = as_batch_time(noise_level, x).to(x.dtype)
        c = self.cond_embed(torch.cat([self.noise_embed(level[:, None]), cond], dim=-1))
        h = self.input(x.flatten(1))
        for block in self.blocks:
            h = block(h, c)
        return self.output(h).view(-1, *self.chunk_shape)


def build_denoiser(
    kind: str,
    unet: UnetConfig,
    transformer: TransformerConfig,
    mlp: MLPConfig,
    action_dim: int,
    horizon: int,
    cond_dim: int,
) -> nn.Module:
    """The ``kind`` network, configured by its sub-config (the others are ignored)."""
    if kind == "unet":
        return ConditionalUnet1D(action_dim, cond_dim, **asdict(unet))
    if kind == "transformer":
        return TransformerDenoiser(action_dim, cond_dim, horizon, **asdict(transformer))
    if kind == "mlp":
        return MLPDenoiser(action_dim, horizon, cond_dim, **asdict(mlp))
    raise ValueError(f"denoiser must be one of {DENOISERS}, got {kind!r}")
