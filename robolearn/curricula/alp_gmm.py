"""ALP-GMM teacher (Portelas et al., CoRL 2019; METHODS.md §7): where is the learner progressing?

The teacher picks task parameters ``τ`` in a box for each episode and is told the episode's
return. Its signal is *absolute learning progress*: ``alp = |r_new − r_old|``, with ``r_old``
the return of the nearest previously tried ``τ`` (0 while the history holds ≤ ``min_history``
points). After ``bootstrap_episodes`` uniform draws it fits, every ``fit_every`` episodes,
Gaussian mixtures with ``min_components..max_components`` full-covariance components to the last
``fit_window`` points in ``(τ, alp)`` space and keeps the one with the lowest AIC. It then
samples uniformly with probability ``random_prob`` and otherwise picks a component in proportion
to its mean ALP (clamped at 0), draws from it, drops the ALP dimension and clips to the box.

Batched for vector envs: :meth:`ALPGMMTeacher.sample` draws ``(n, D)`` parameters at once and
:meth:`ALPGMMTeacher.update` takes the ``n`` episodes that ended. ``update(..., fit=False)`` only
records a fit that falls due; :meth:`ALPGMMTeacher.fit_pending` runs it later on the same window
(the window ending at its due point), which lets a caller with thousands of worlds fit once per
policy update instead of once per env step. ``τ`` is kept in box-normalised coordinates
(``[0, 1]`` per dimension) so that nearest neighbours do not depend on the parameters' units. The
ALP axis is in the task's return units: a return scale far from 1 tilts the mixtures' shape
towards (large scale) or away from (small scale) the ALP axis. Portelas et al. map returns into
[0, 1] by a range known per environment; ours are taken as they come.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ALPGMMConfig:
    bootstrap_episodes: int = 250  # uniform draws before the first fit
    fit_every: int = 250  # episodes between fits
    fit_window: int = 250  # most recent (τ, alp) points a fit sees
    min_components: int = 2
    max_components: int = 10
    random_prob: float = 0.2  # share of uniform draws once a mixture exists
    min_history: int = 5  # ALP is 0 while the history holds at most this many points
    seed: int = 0

    def validate(self) -> None:
        for name in ("bootstrap_episodes", "fit_every", "fit_window", "min_components"):
            if getattr(self, name) < 1:
                raise ValueError(f"alp_gmm.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_components < self.min_components:
            raise ValueError(
                f"alp_gmm.max_components ({self.max_components}) < min_components ({self.min_components})"
            )
        first_fit = min(self.bootstrap_episodes, self.fit_window)  # points the first fit sees
        if first_fit < self.max_components:
            raise ValueError(
                f"alp_gmm.bootstrap_episodes and fit_window ({self.bootstrap_episodes}, "
                f"{self.fit_window}) must both be >= max_components ({self.max_components}): "
                "a mixture needs at least as many points as components"
            )
        if not 0.0 <= self.random_prob <= 1.0:
            raise ValueError(f"alp_gmm.random_prob must be in [0, 1], got {self.random_prob}")


def _gaussian_mixture():
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError as e:
        raise ImportError(
            "the ALP-GMM teacher needs scikit-learn: pip install 'robolearn[curricula]'"
        ) from e
    return GaussianMixture


@dataclass
class Mixture:
    """A fitted mixture in normalised ``(τ, alp)`` space: ``(K,)``, ``(K, D+1)``, ``(K, D+1, D+1)``."""

    weights: torch.Tensor
    means: torch.Tensor
    scale_tril: torch.Tensor  # Cholesky factors of the covariances, for sampling

    @property
    def num_components(self) -> int:
        return len(self.weights)

    @property
    def alp_means(self) -> torch.Tensor:
        return self.means[:, -1]


class ALPGMMTeacher:
    """Samples ``τ`` in the box ``[low, high]`` (``(D,)`` each) where learning progresses."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor, cfg: ALPGMMConfig | None = None):
        self.cfg = cfg or ALPGMMConfig()
        self.cfg.validate()
        self.low = torch.as_tensor(low, dtype=torch.float64).flatten()
        self.high = torch.as_tensor(high, dtype=torch.float64).flatten()
        if self.low.shape != self.high.shape or not (self.low <= self.high).all():
            raise ValueError(
                f"ALP-GMM box: low {self.low.tolist()} and high {self.high.tolist()} must have one "
                "shape and low <= high"
            )
        self.dim = len(self.low)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.tau = torch.zeros(0, self.dim, dtype=torch.float64)  # normalised, all history
        self.returns = torch.zeros(0, dtype=torch.float64)
        self.alp = torch.zeros(0, dtype=torch.float64)
        self.mixture: Mixture | None = None
        self.fit_episodes: list[int] = []  # episode counts at which mixtures were fitted
        # The due point of a fit not yet run (update(fit=False)).
        self.pending_fit: int | None = None

    @property
    def num_episodes(self) -> int:
        return len(self.returns)

    # --- sampling ---------------------------------------------------------------------------
    def sample(self, n: int) -> torch.Tensor:
        """``(n, D)`` float64 parameters in the box: uniform while bootstrapping, else ALP-GMM."""
        u = torch.rand(n, self.dim, generator=self.generator, dtype=torch.float64)
        if self.mixture is not None:
            from_gmm = torch.rand(n, generator=self.generator) >= self.cfg.random_prob
            probs = self.mixture.alp_means.clamp_min(0.0)
            if probs.sum() <= 0:  # no progress anywhere: every component equally likely
                probs = torch.ones_like(probs)
            comp = torch.multinomial(probs, n, replacement=True, generator=self.generator)
            z = torch.randn(n, self.dim + 1, generator=self.generator, dtype=torch.float64)
            drawn = (
                self.mixture.means[comp] + (self.mixture.scale_tril[comp] @ z[..., None])[..., 0]
            )
            u = torch.where(from_gmm[:, None], drawn[:, : self.dim].clamp(0.0, 1.0), u)
        return self.low + u * (self.high - self.low)

    # --- learning progress -------------------------------------------------------------------
    def update(self, tau: torch.Tensor, returns: torch.Tensor, fit: bool = True) -> None:
        """Record ``n`` finished episodes: parameters ``(n, D)`` and returns ``(n,)``, in order.

        A fit that falls due runs now, or with ``fit=False`` waits for :meth:`fit_pending`.
        """
        tau = torch.as_tensor(tau, dtype=torch.float64).cpu()
        returns = torch.as_tensor(returns, dtype=torch.float64).cpu().flatten()
        if tau.ndim != 2 or tau.shape[1] != self.dim or len(tau) != len(returns):
            raise ValueError(
                f"ALP-GMM update: tau has shape {tuple(tau.shape)} and returns {tuple(returns.shape)}, "
                f"expected (n, {self.dim}) and (n,)"
            )
        if len(tau) == 0:
            return
        x = self.normalise(tau)
        before = self.num_episodes
        self.alp = torch.cat([self.alp, self._alp(x, returns)])
        self.tau = torch.cat([self.tau, x])
        self.returns = torch.cat([self.returns, returns])
        # The last fit point crossed; earlier ones in the same batch would be replaced before
        # any draw could come from them.
        every, first = self.cfg.fit_every, self.cfg.bootstrap_episodes
        due = [
            m
            for m in range(before + 1, self.num_episodes + 1)
            if m >= first and (m - first) % every == 0
        ]
        if due:
            self.pending_fit = due[-1]
        if fit:
            self.fit_pending()

    def fit_pending(self) -> bool:
        """Run the fit that fell due, on the ``fit_window`` points ending at its due point (a
        later due point replaces an earlier one not yet run). Returns whether one ran."""
        end = self.pending_fit
        if end is None:
            return False
        start = max(0, end - self.cfg.fit_window)
        self.fit(self.tau[start:end], self.alp[start:end])
        self.fit_episodes.append(end)
        self.pending_fit = None
        return True

    def normalise(self, tau: torch.Tensor) -> torch.Tensor:
        span = self.high - self.low
        return torch.where(
            span > 0, (tau - self.low) / span.clamp_min(1e-12), torch.zeros_like(tau)
        )

    def _alp(self, x: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
        """|r − r_nearest| for each new point against all earlier points (history, then batch)."""
        n, history = len(x), self.num_episodes
        dist = torch.cat([torch.cdist(x, self.tau), torch.cdist(x, x)], dim=1)  # (n, H + n)
        earlier = torch.arange(history + n)[None, :] < (history + torch.arange(n))[:, None]
        dist = dist.masked_fill(~earlier, float("inf"))
        nearest = dist.argmin(dim=1)
        all_returns = torch.cat([self.returns, returns])
        alp = (returns - all_returns[nearest]).abs()
        enough = (history + torch.arange(n)) > self.cfg.min_history
        return torch.where(enough, alp, torch.zeros_like(alp))

    def fit(self, tau: torch.Tensor, alp: torch.Tensor) -> Mixture:
        """Fit mixtures to normalised ``tau`` ``(M, D)`` and ``alp`` ``(M,)``; keep the lowest AIC."""
        gaussian_mixture = _gaussian_mixture()
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

        data = torch.cat([tau, alp[:, None]], dim=1).numpy()
        best, best_aic = None, float("inf")
        # One BLAS thread: the (D+1)-sized solves gain nothing from more, and threads that contend
        # with the simulator's made a fit 6-14x slower (1.8-4.2 s vs 0.27-0.30 s on 2 cores).
        with threadpool_limits(limits=1):
            for k in range(self.cfg.min_components, self.cfg.max_components + 1):
                gmm = gaussian_mixture(
                    n_components=k, covariance_type="full", random_state=self.cfg.seed
                )
                gmm.fit(data)
                aic = gmm.aic(data)
                if aic < best_aic:
                    best, best_aic = gmm, aic
        covariances = torch.as_tensor(best.covariances_, dtype=torch.float64)
        self.mixture = Mixture(
            weights=torch.as_tensor(best.weights_, dtype=torch.float64),
            means=torch.as_tensor(best.means_, dtype=torch.float64),
            scale_tril=torch.linalg.cholesky(covariances),
        )
        return self.mixture

    # --- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        mixture = None
        if self.mixture is not None:
            mixture = {k: getattr(self.mixture, k) for k in ("weights", "means", "scale_tril")}
        return {
            "tau": self.tau,
            "returns": self.returns,
            "alp": self.alp,
            "mixture": mixture,
            "fit_episodes": list(self.fit_episodes),
            "pending_fit": self.pending_fit,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["tau"].shape[1:] != (self.dim,):
            raise ValueError(
                f"ALP-GMM state has {state['tau'].shape[1]} parameters, this teacher {self.dim}"
            )
        self.tau, self.returns, self.alp = state["tau"], state["returns"], state["alp"]
        self.mixture = Mixture(**state["mixture"]) if state["mixture"] is not None else None
        self.fit_episodes = list(state["fit_episodes"])
        self.pending_fit = state.get("pending_fit")  # absent in checkpoints from before it existed
        self.generator.set_state(state["generator"])
