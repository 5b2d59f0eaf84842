"""``RLActor``: what the RL trainer needs from a policy, whatever its kind.

One PPO update serves every actor. An actor turns a window of ``policy``-group observations into
the actions executed in the env and, for the update, the log-probabilities of the random choices
it made. Those choices may be one Gaussian action (``K = 1``: a BC policy's Gaussian head) or the
``K`` fine-tuned denoising steps of a diffusion chain (DPPO, METHODS.md §4). The PPO loss is
computed per choice with that choice's clip range and advantage weight, then averaged:

    ratio_k = exp(log_prob_new[:, k] - log_prob_old[:, k])
    loss    = -mean_k  min(ratio_k · w_k·A,  clip(ratio_k, 1 ± clip_eps[k]) · w_k·A)

A decision executes ``n_exec`` env steps (1 for a Gaussian actor; an action chunk's
``n_action_steps`` for a diffusion actor), so the env-level MDP is a semi-MDP: the trainer sums
the discounted rewards of the executed steps and bootstraps with ``gamma ** n_exec``
(:mod:`robolearn.rl.runner` documents episodes that end mid-chunk and time-outs).

Where actors come from: :func:`robolearn.rl.build.make_actor` routes a policy by kind — ``bc`` to
:class:`~robolearn.rl.gaussian_actor.GaussianActor`, ``diffusion``/``edm`` to
``robolearn.rl.dppo.make_actor(policy, cfg: RLConfig)`` (``cfg.actor`` holds the kind's own keys).

Besides the protocol, the trainer uses, where present:

* ``nn.Module`` behaviour: ``to``, ``eval``, ``state_dict``/``load_state_dict`` (resume);
* ``kl_to(reference, obs) -> (B,)``: ``KL(π ‖ π_ref)`` in closed form (default: the sample
  estimate ``Σ_k log π(c_k) − log π_ref(c_k)`` at the rollout's stored choices);
* ``demo_loss(batch) -> scalar``: a BC loss on a :class:`~robolearn.data.dataset.DemoDataset`
  batch, for ``rl.demo_bc_coef > 0``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from robolearn.policies.base import Policy

ObsWindow = dict[str, torch.Tensor]  # {key: (B, n_obs_steps, *shape)}, raw (un-normalised)


@runtime_checkable
class RLActor(Protocol):
    n_obs_steps: int  # length of the observation window the actor reads
    n_exec: int  # env steps executed per decision
    obs_keys: tuple[str, ...]  # ``policy``-group terms it reads

    @property
    def clip_eps(self) -> torch.Tensor:
        """(K,) PPO clip range of each random choice."""
        ...

    @property
    def advantage_weights(self) -> torch.Tensor:
        """(K,) factor on the advantage of each choice (ones; DPPO: denoising discount)."""
        ...

    def act(
        self, obs: ObsWindow, deterministic: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Env actions ``(B, n_exec, A)`` in env units, clipped to the action bounds, and the
        per-sample tensors the trainer stores for the update, with at least ``"log_prob"``
        ``(B, K)``. Every stored tensor has batch dimension first."""
        ...

    def log_prob(
        self, obs: ObsWindow, stored: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probabilities ``(B, K)`` of the stored choices under the current weights, and the
        entropy ``(B,)`` where it has a closed form (else ``None``). With unchanged weights this
        returns exactly ``stored["log_prob"]`` (ratio ≡ 1 on the first minibatch)."""
        ...

    def parameters(self, recurse: bool = True): ...

    def export_policy(self) -> Policy:
        """The imitation-format policy with the current weights, saved as the RL checkpoint so
        that ``robolearn.load_policy``, ``robolearn-eval`` and deployment load it unchanged."""
        ...
