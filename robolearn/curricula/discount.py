"""Automatic Discount Scheduling (Liu et al., ICLR 2024; METHODS.md §6).

Imitating from observation with an optimal-transport proxy reward fails on tasks whose later
steps only make sense once the earlier ones are done: a far-sighted agent collects the cheap
late-stage matches and never learns the early stage. ADS starts myopic and widens the horizon as
the agent's behaviour matches more of the demos:

* the discount is ``γ(p) = α^(1/p)``, so that a reward ``p`` steps ahead weighs ``α`` (0.2);
  ``p`` starts at ``⌊0.2·T⌋``;
* a progress recogniser matches each of the agent's first ``p`` frames to its nearest frame among
  a demo's first ``p`` and scores the longest strictly increasing subsequence (LIS) of the matched
  indices: how much of the demo's order the agent reproduces. The reference ``ref(k)`` is the
  median LIS between ordered pairs of distinct demos; the agent's score is the 90th percentile
  over (episode, demo) pairs. While ``score ≥ ⌊0.9·ref(p)⌋``, ``p`` grows by one, at most 5 times
  per update and never beyond ``T``.

Features: observation terms ``obs_keys`` concatenated and standardised with the demos' mean and
standard deviation, so that every term counts regardless of its units, then compared in one of
three ways; the first two embed the frames so that the cosine cost ``1 − cos`` of METHODS §6 means
something for a few state dimensions:

* ``fourier`` (default): random Fourier features ``√(2/D)·cos(zW/σ + b)``, ``W ~ N(0, I)``,
  ``b ~ U[0, 2π)`` (Rahimi & Recht, 2007), drawn once from a fixed seed. Their inner product
  approximates the Gaussian kernel ``exp(−|z − z'|²/(2σ²))`` and their norm is ≈ 1, so
  ``1 − cos`` grows with the distance between two frames and saturates at 1 far away. σ is
  ``fourier_bandwidth`` times the median distance between the demos' frames (the median
  heuristic): a fixed σ saturates every cost once there are more terms (on ``pick_place``'s 8,
  σ = 1 std left PPO nothing to climb). The paper compares image-encoder embeddings; on a state
  of a few dimensions the plain cosine is a poor distance:
* ``affine``: ``[z, 1]``. Its cosine reads a frame's *direction* from the demos' mean, so a frame
  far out along the ray of a demo frame costs almost nothing against it, and nearby frames in
  other directions cost a lot. On ``reach_around`` (eef position only) PPO did not raise this OT
  return at all (−10.9 → −11.5 in 530k env steps; the arm drifted behind the robot's base),
  where with ``fourier`` it rose to −8.2 and the arm learned the demos' first waypoint
  (docs/benchmarks.md). Kept for the runs recorded with it.
* ``euclidean``: no embedding; the cost is the distance between standardised frames, in units of
  the demos' median distance. What the authors' code uses on state features (the cosine is for
  their image encoder's embeddings). Unlike the Gaussian kernel, whose cost is quadratic near a
  match and flat far from one, it grows in proportion to the distance everywhere, so a frame a few
  centimetres off still pays for closing them and a frame far off still feels which way is
  closer. Its costs run past where ``exp(−C/ε)`` is representable, which Sinkhorn's absorbing
  potentials handle (:mod:`robolearn.curricula.ot_reward`).

The recogniser matches frames on ``progress_keys`` (default: ``obs_keys``), embedded the same way:
with arm-dominated reward features, arm motion alone passes it long before the object follows the
demos (docs/benchmarks.md, ADS on ``stack``), so it can be told to watch the object instead.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from robolearn.curricula.base import Curriculum
from robolearn.curricula.demos import load_observation_episodes
from robolearn.curricula.ot_reward import Cost, OTReward, cosine_cost

Episode = dict[str, torch.Tensor]  # {obs key: (T, d)}
FEATURE_EMBEDDINGS = ("fourier", "affine", "euclidean")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ADSConfig:
    dataset: str = ""  # robomimic HDF5 of expert episodes; observations only are enough
    obs_keys: tuple[str, ...] = ("eef_pos", "gripper_qpos")
    #: Terms the progress recogniser matches frames on; empty: ``obs_keys``.
    progress_keys: tuple[str, ...] = ()
    alpha: float = 0.2  # weight of a reward p steps ahead
    init_progress: float = 0.2  # p starts at floor(init_progress * T)
    threshold: float = 0.9  # advance while score >= floor(threshold * ref(p))
    percentile: float = 90.0  # agent score: this percentile over (episode, demo) pairs
    max_increments: int = 5  # per update
    sinkhorn_eps: float = 0.01
    sinkhorn_iterations: int = 100
    target_return: float = 10.0  # |return| of the first OT-rewarded episode
    #: How standardised frames are compared: "fourier" or "affine" (embeddings under the cosine
    #: cost) or "euclidean" (their distance; module docstring).
    features: str = "fourier"
    fourier_dim: int = 256  # random Fourier features
    fourier_bandwidth: float = 1.0  # kernel width σ over the median distance of demo frames
    #: The baseline of METHODS §6: the same OT rewards with this constant γ (p is still
    #: recognised and logged, not used). None: γ(p) = α^(1/p), the schedule.
    fixed_gamma: float | None = None

    def validate(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"ads.alpha must be in (0, 1), got {self.alpha}")
        if not 0.0 < self.init_progress <= 1.0:
            raise ValueError(f"ads.init_progress must be in (0, 1], got {self.init_progress}")
        if not self.obs_keys:
            raise ValueError("ads.obs_keys is empty: name the observation terms to compare")
        if not 0.0 <= self.percentile <= 100.0:
            raise ValueError(f"ads.percentile must be in [0, 100], got {self.percentile}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"ads.threshold must be in (0, 1], got {self.threshold}")
        if self.max_increments < 1:
            raise ValueError(f"ads.max_increments must be >= 1, got {self.max_increments}")
        if self.target_return <= 0:
            raise ValueError(f"ads.target_return must be > 0, got {self.target_return}")
        if self.fixed_gamma is not None and not 0.0 < self.fixed_gamma < 1.0:
            raise ValueError(f"ads.fixed_gamma must be in (0, 1) or null, got {self.fixed_gamma}")
        if self.features not in FEATURE_EMBEDDINGS:
            raise ValueError(
                f"ads.features must be one of {FEATURE_EMBEDDINGS}, got {self.features!r}"
            )
        if self.sinkhorn_iterations < 1 or self.sinkhorn_eps <= 0:
            raise ValueError(
                f"ads.sinkhorn_iterations must be >= 1 and ads.sinkhorn_eps > 0, got "
                f"{self.sinkhorn_iterations} and {self.sinkhorn_eps}"
            )
        if self.fourier_dim < 1 or self.fourier_bandwidth <= 0:
            raise ValueError(
                f"ads.fourier_dim must be >= 1 and ads.fourier_bandwidth > 0, got "
                f"{self.fourier_dim} and {self.fourier_bandwidth}"
            )

    @property
    def recognised_keys(self) -> tuple[str, ...]:
        """The terms the progress recogniser compares."""
        return tuple(self.progress_keys) or tuple(self.obs_keys)

    @property
    def recorded_keys(self) -> tuple[str, ...]:
        """Every term ADS reads from an episode: the reward's, then the recogniser's."""
        return tuple(dict.fromkeys((*self.obs_keys, *self.recognised_keys)))


def discount(progress: int, alpha: float) -> float:
    """``γ(p) = α^(1/p)``: a reward ``p`` steps ahead is weighted ``α``."""
    return alpha ** (1.0 / progress)


def lis_length(sequence: Sequence[int]) -> int:
    """Length of the longest strictly increasing subsequence (patience sorting, O(n log n))."""
    tails: list[int] = []
    for value in sequence:
        i = bisect.bisect_left(tails, value)
        if i == len(tails):
            tails.append(value)
        else:
            tails[i] = value
    return len(tails)


def matched_lis(agent: torch.Tensor, demo: torch.Tensor, progress: int, cost: Cost) -> int:
    """LIS of the nearest-demo-frame indices of the agent's first ``progress`` frames."""
    return lis_length(cost(agent[:progress], demo[:progress]).argmin(dim=1).tolist())


class ADSCurriculum(Curriculum):
    """The discount ``gamma`` for the trainer, and OT proxy rewards for its episodes."""

    name = "ads"

    def __init__(self, demos: Sequence[Episode], horizon: int, cfg: ADSConfig | None = None):
        self.cfg = cfg or ADSConfig()
        self.cfg.validate()
        if len(demos) < 2:
            raise ValueError(
                f"ADS needs at least 2 demos (its reference compares pairs of demos), got {len(demos)}"
            )
        if horizon < 1:
            raise ValueError(f"ADS horizon (episode length) must be >= 1, got {horizon}")
        self.horizon = horizon
        self.reward_features = StandardisedFeatures(self.cfg.obs_keys, demos, self.cfg)
        self.demos = [self.reward_features(d) for d in demos]
        if self.cfg.recognised_keys == tuple(self.cfg.obs_keys):  # the default: share them
            self.progress_features, self.progress_demos = self.reward_features, self.demos
        else:
            self.progress_features = StandardisedFeatures(self.cfg.recognised_keys, demos, self.cfg)
            self.progress_demos = [self.progress_features(d) for d in demos]
        longest = max(len(x) for x in self.demos)
        if longest < horizon:
            # ref(k) cannot grow past the demos' length: p then rises to T on the first frames'
            # match alone (docs/benchmarks.md, ADS vs fixed gamma).
            log.warning(
                "ADS: the demos have at most %d frames but episodes run %d steps; progress "
                "beyond frame %d is not measured. Collect demos that span the episode "
                "(e.g. +task.terminate_on_success=false task.episode_length=%d)",
                longest,
                horizon,
                longest,
                horizon,
            )
        self.ot_reward = OTReward(
            self.demos,
            self.cfg.sinkhorn_eps,
            self.cfg.sinkhorn_iterations,
            self.cfg.target_return,
            cost=self.reward_features.cost,
        )
        self.progress = max(1, math.floor(self.cfg.init_progress * horizon))
        self._ref: dict[int, float] = {}
        self._last_score = float("nan")
        self._last_reference = float("nan")
        self._last_return = float("nan")  # mean OT return of the last rewarded episodes

    @classmethod
    def from_dataset(
        cls, path: str | os.PathLike, horizon: int, cfg: ADSConfig | None = None
    ) -> ADSCurriculum:
        cfg = cfg or ADSConfig(dataset=str(path))
        return cls(load_observation_episodes(path, cfg.recorded_keys), horizon, cfg)

    @property
    def gamma(self) -> float:
        """The trainer's discount: ``γ(p)``, or ``fixed_gamma`` for the fixed-γ baseline."""
        if self.cfg.fixed_gamma is not None:
            return self.cfg.fixed_gamma
        return discount(self.progress, self.cfg.alpha)

    # --- features and rewards -------------------------------------------------------------------
    def rewards(self, episodes: Sequence[Episode]) -> list[torch.Tensor]:
        """OT proxy rewards ``(T_b,)`` of each episode; episodes of equal length run batched."""
        feats = [self.reward_features(e) for e in episodes]
        out: list[torch.Tensor | None] = [None] * len(feats)
        for length in dict.fromkeys(len(f) for f in feats):
            idx = [i for i, f in enumerate(feats) if len(f) == length]
            for i, r in zip(idx, self.ot_reward(torch.stack([feats[i] for i in idx])), strict=True):
                out[i] = r
        paid: list[torch.Tensor] = out  # type: ignore[assignment]  # every index is filled
        if paid:  # what PPO optimises: the task's own reward is not what it is paid
            self._last_return = float(torch.stack([r.sum() for r in paid]).mean())
        return paid

    def _compared(self) -> dict[str, Any]:
        """What the OT rewards and progress scores are computed on, as saved with them."""
        cfg = self.cfg
        return {
            "obs_keys": list(cfg.obs_keys),
            "progress_keys": list(cfg.recognised_keys),
            "features": cfg.features,
        }

    # --- progress ----------------------------------------------------------------------------
    def reference(self, k: int) -> float:
        """``ref(k)``: median LIS over ordered pairs of distinct demos, their first ``k`` frames."""
        if k not in self._ref:
            demos = self.progress_demos
            cost = self.progress_features.cost
            scores = [matched_lis(a, b, k, cost) for a, b in itertools.permutations(demos, 2)]
            self._ref[k] = float(torch.tensor(scores, dtype=torch.float64).median())
        return self._ref[k]

    def agent_score(self, episodes: Sequence[torch.Tensor], k: int) -> float:
        """The ``percentile`` of matched LIS over (episode, demo) pairs, features given."""
        cost = self.progress_features.cost
        scores = [matched_lis(e, d, k, cost) for e in episodes for d in self.progress_demos]
        q = self.cfg.percentile / 100.0
        return float(torch.quantile(torch.tensor(scores, dtype=torch.float64), q))

    def update(self, stats: dict[str, Any]) -> dict[str, float]:
        """Advance ``p`` on ``stats["episodes"]`` (a list of ``{obs key: (T, d)}``) if it matches."""
        episodes = stats.get("episodes") or []
        feats = [self.progress_features(e) for e in episodes]
        for _ in range(self.cfg.max_increments):
            if not feats or self.progress >= self.horizon:
                break
            # Logged as a pair: the last comparison's score and the reference it was held to.
            self._last_score = self.agent_score(feats, self.progress)
            self._last_reference = self.reference(self.progress)
            if self._last_score < math.floor(self.cfg.threshold * self._last_reference):
                break
            self.progress += 1
        return {
            f"{self.name}/progress": float(self.progress),
            f"{self.name}/gamma": self.gamma,
            f"{self.name}/score": self._last_score,
            f"{self.name}/reference": self._last_reference,
            f"{self.name}/ot_return": self._last_return,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"progress": self.progress, "scale": self.ot_reward.scale, **self._compared()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The reward scale and progress are in units of the saved comparison: refuse another.
        saved = {k: state.get(k, v) for k, v in self._compared().items()}
        if saved != self._compared():
            raise ValueError(
                f"ads: the checkpoint compared {saved}, this run compares {self._compared()}; "
                "resume with the same curriculum.ads.obs_keys, progress_keys and features"
            )
        self.progress = int(state["progress"])
        self.ot_reward.scale = state["scale"]


def median_distance(frames: torch.Tensor, max_frames: int = 2000) -> float:
    """Median Euclidean distance between distinct frames ``(F, D)`` (an evenly spaced subset of
    at most ``max_frames``, so that long datasets cost the same); 1 when all coincide."""
    step = max(1, math.ceil(len(frames) / max_frames))
    subset = frames[::step]
    dist = torch.cdist(subset, subset)
    positive = dist[dist > 0]
    return float(positive.median()) if len(positive) else 1.0


class StandardisedFeatures:
    """Frames of ``keys`` concatenated, standardised with the demos' statistics, then embedded
    as ``cfg.features`` says; :meth:`cost` compares two sequences of them (module docstring)."""

    def __init__(self, keys: Sequence[str], demos: Sequence[Episode], cfg: ADSConfig):
        self.keys, self.embedding = tuple(keys), cfg.features
        frames = torch.cat([self._concat(d, f"demo {i}") for i, d in enumerate(demos)])
        self.mean, self.std = frames.mean(0), frames.std(0).clamp_min(1e-6)
        # The demos' own scale: typical distances between frames grow with the number of terms.
        self.scale = median_distance((frames - self.mean) / self.std)
        if self.embedding == "fourier":
            # The kernel's width by the median heuristic: a width far below the typical distance
            # saturates every cost at 1.
            self.bandwidth = cfg.fourier_bandwidth * self.scale
            # Drawn from a fixed seed: the same config gives the same features after a resume.
            gen = torch.Generator().manual_seed(0)
            shape = (len(self.mean), cfg.fourier_dim)
            self.weights = torch.randn(shape, generator=gen, dtype=torch.float64) / self.bandwidth
            self.phases = 2 * math.pi * torch.rand(shape[1], generator=gen, dtype=torch.float64)

    def __call__(self, episode: Episode) -> torch.Tensor:
        """``(T, F)`` features of one episode's observations."""
        z = (self._concat(episode, "episode") - self.mean) / self.std
        if self.embedding == "euclidean":
            return z / self.scale  # in the demos' median distances: ε means the same for any terms
        if self.embedding == "affine":
            return torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], dim=1)
        return math.sqrt(2.0 / len(self.phases)) * torch.cos(z @ self.weights + self.phases)

    def cost(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cost between every frame of ``x`` ``(..., T, F)`` and of ``y`` ``(..., S, F)``: the
        cosine cost of the embeddings, or the Euclidean distance of the scaled frames."""
        if self.embedding == "euclidean":
            return torch.cdist(x, y)
        return cosine_cost(x, y)

    def _concat(self, episode: Episode, what: str) -> torch.Tensor:
        missing = [k for k in self.keys if k not in episode]
        if missing:
            raise KeyError(
                f"ADS: {what} lacks observation key {missing[0]!r}; has {sorted(episode)}"
            )
        parts = [torch.as_tensor(episode[k]).double() for k in self.keys]
        return torch.cat([p.reshape(len(p), -1) for p in parts], dim=1)
