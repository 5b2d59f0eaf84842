"""Building the RL actor: from a pretrained checkpoint's policy, or from scratch.

Routing by policy kind: ``bc`` -> :class:`~robolearn.rl.gaussian_actor.GaussianActor`;
``diffusion`` / ``edm`` -> the DPPO diffusion-chain actor, ``robolearn.rl.dppo.make_actor``
(imported only then).

From scratch (no ``init``): a fresh ``bc`` policy with a ``gaussian`` head, ``horizon = 1``.
It needs a normaliser before it has seen any data. Choice: observations are normalised
``meanstd`` with statistics of ``reset_samples`` reset states (cheap, and the states a policy
starts from), with the std floored at ``obs_std_floor`` — reset states vary little in some
terms (the arm's home posture has ±0.02 rad of noise), and an unfloored std would scale the
states reached later by ~50. Actions are mapped ``minmax`` from the action spec's bounds, so the
Gaussian lives in [-1, 1] per dimension, and its std is squashed below ``max_std`` (1 by
default): wider is clipped by the env into the same bang-bang actions, so it only feeds the
entropy bonus, which pushed most dims of privileged-action runs to the old ceiling of e² ≈ 7.4.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any

import numpy as np
import torch

from robolearn.data.normalizer import Normalizer
from robolearn.envs.vec_env import VecEnv
from robolearn.policies import Policy
from robolearn.policies.bc import BCConfig, BCPolicy
from robolearn.rl.gaussian_actor import GaussianActor
from robolearn.rl.ppo import RLConfig

DIFFUSION_KINDS = ("diffusion", "edm")


def make_actor(policy: Policy, cfg: RLConfig) -> Any:
    """The RL actor for a pretrained (or fresh) policy, whose config gets ``obs_clip``.

    The clip lives in the policy's config (not only in the actor) so that the exported
    checkpoint sees the same features at evaluation as the actor did in training."""
    if cfg.obs_clip != policy.cfg.obs_clip:
        policy.cfg = dataclasses.replace(policy.cfg, obs_clip=cfg.obs_clip)
    if policy.name == "bc":
        return GaussianActor(policy, init_std=cfg.init_std, clip=cfg.clip, min_std=cfg.min_std)  # type: ignore[arg-type]
    if policy.name in DIFFUSION_KINDS:
        try:
            dppo = importlib.import_module("robolearn.rl.dppo")
        except ModuleNotFoundError as e:
            if e.name != "robolearn.rl.dppo":
                raise
            raise ValueError(
                f"a {policy.name!r} policy is fine-tuned with DPPO (robolearn.rl.dppo), "
                "which this install does not have yet"
            ) from None
        return dppo.make_actor(policy, cfg)
    raise ValueError(
        f"no RL actor for policy kind {policy.name!r}; RL fine-tunes bc, diffusion, edm"
    )


def frozen_reference(actor: Any) -> Any:
    """π_BC for the demonstration regulariser: a deep copy of the initial actor, gradients off."""
    import copy

    ref = copy.deepcopy(actor)
    ref.requires_grad_(False)
    return ref.eval()


def scratch_policy(env: VecEnv, cfg: RLConfig, seed: int = 0) -> BCPolicy:
    """A fresh ``bc`` gaussian policy for ``env`` (see the module docstring)."""
    s = cfg.scratch
    if not cfg.init_std < s.max_std:
        raise ValueError(
            f"rl.init_std ({cfg.init_std}) must be below rl.scratch.max_std ({s.max_std}), "
            "the ceiling of a from-scratch policy's std"
        )
    spec = env.spec
    keys = spec.groups["policy"]
    samples: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    rounds = max(1, math.ceil(s.reset_samples / env.num_envs))
    for i in range(rounds):
        obs, _ = env.reset(seed=seed * 1000 + i)
        for k in keys:
            samples[k].append(obs["policy"][k].cpu().numpy())
    stats: dict[str, dict[str, Any]] = {}
    for k in keys:
        x = np.concatenate(samples[k]).astype(np.float64)
        std = np.maximum(x.std(0), s.obs_std_floor)
        stats[k] = {"mode": "meanstd", "scale": 1.0 / std, "offset": -x.mean(0) / std}
    low = np.broadcast_to(np.asarray(spec.action.low, dtype=np.float64), (spec.action.dim,))
    high = np.broadcast_to(np.asarray(spec.action.high, dtype=np.float64), (spec.action.dim,))
    scale = 2.0 / (high - low)
    stats["action"] = {"mode": "minmax", "scale": scale, "offset": -1.0 - low * scale}
    bc_cfg = BCConfig(
        n_obs_steps=s.n_obs_steps,
        horizon=1,
        n_action_steps=1,
        head="gaussian",
        hidden_dims=tuple(s.hidden_dims),
        activation=s.activation,
        log_std_min=-5.0,
        log_std_max=math.log(s.max_std),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = BCPolicy(bc_cfg, spec, Normalizer(stats))
        _init_gaussian_head(policy, cfg.init_std)
    return policy


@torch.no_grad()
def _init_gaussian_head(policy: BCPolicy, init_std: float) -> None:
    """Small initial means and a std of about ``init_std``: the last layer's mean half is
    scaled down, its log-std half set to the raw value that maps to ``log(init_std)``."""
    last = policy.net[-1]
    a = policy.action_dim * policy.cfg.horizon
    last.weight[:a] *= 0.01
    last.bias[:a] = 0.0
    lo, hi = policy.cfg.log_std_min, policy.cfg.log_std_max
    target = (math.log(init_std) - lo) / (0.5 * (hi - lo)) - 1.0  # tanh(raw) = target
    last.weight[a:] *= 0.01
    last.bias[a:] = math.atanh(max(-0.999, min(0.999, target)))
