"""PPO (rsl_rl flavour) over any :class:`~robolearn.rl.actor.RLActor`, demonstration-regularised.

Per minibatch (METHODS.md §3, §4)::

    ratio_k   = exp(log π(c_k|s) − log π_old(c_k|s))                 c_k: the k-th random choice
    L_clip    = −mean_k min(ratio_k · w_k·Â, clip(ratio_k, 1 ± ε_k) · w_k·Â)
    L_value   = max((V − R)², (V_old + clip(V − V_old, ±ε_v) − R)²)   clipped value loss
    L         = L_clip + c_v·L_value − c_H·H + λ_t·KL(π ‖ π_BC) + β_t·L_BC(demos)

``Â`` is normalised over the rollout. The actor terms are left out during the critic warm-up.
``adaptive`` learning rate (rsl_rl): per minibatch, the KL between the rollout's policy and
the current one (estimated from the log-ratios, ``mean((r − 1) − log r)``, averaged over the
``K`` choices) divides the actor's LR by 1.5 above ``2·desired_kl`` and multiplies it by 1.5
below ``desired_kl / 2``, within ``[lr_min, lr_max]``. The critic's LR is constant.

A warm start begins at ``warm_start_lr`` (1e-5), not ``lr``: a BC policy's normaliser is fitted
on the narrow distribution of a few demos (min-max scales of 10^2..10^4 on near-constant terms
such as the gripper opening), so states off that distribution have large features and one Adam
step at 1e-3 can move the policy by a KL of hundreds. The adaptive rule raises the LR by up to
1.5x per minibatch while the KL stays below target, so starting low costs a few minibatches.
With ``schedule: fixed`` nothing would raise it, so there the actor keeps ``lr`` (DPPO's 1e-5).
``obs_clip`` (in the policy's config, see :func:`robolearn.rl.build.make_actor`) bounds those
features at ±5, which let the same KL target take ~10x larger steps on lift from 10 demos.

The update may run with more torch threads (``update_threads``; 0: one per core) than the rollout
(:func:`robolearn.rl.runner.torch_threads`): the simulator is idle while it runs. The default is
1, since oversubscribed cores (a shared machine) make a multi-threaded update many times slower.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robolearn.rl.storage import RolloutStorage

SCHEDULES = ("adaptive", "fixed")


class DivergenceError(RuntimeError):
    """A non-finite loss or gradient: the update was not applied (:meth:`PPO.update` undoes the
    minibatches of it that ran before), so a checkpoint saved then holds the last good state."""


@dataclass(frozen=True)
class ScratchPolicyConfig:
    """The fresh ``bc`` gaussian policy a run without ``init`` starts from."""

    hidden_dims: tuple[int, ...] = (256, 256, 256)
    activation: str = "mish"
    n_obs_steps: int = 1
    obs_std_floor: float = 0.05  # normaliser: std of the reset observations, floored at this
    reset_samples: int = 4096  # reset states gathered to fit the normaliser
    #: Ceiling of the Gaussian's std (normalised action units, where the action range is
    #: [-1, 1]). The env clips actions to that range, so std beyond it buys entropy without
    #: changing behaviour: an entropy bonus then drives it up unopposed (docs/benchmarks.md).
    max_std: float = 1.0


@dataclass(frozen=True)
class RLConfig:
    """``conf/rl/ppo.yaml``."""

    name: str = "ppo"
    num_steps: int = 24  # decisions per world per rollout
    num_epochs: int = 5
    num_minibatches: int = 4
    clip: float = 0.2
    value_clip: float = 0.2
    gamma: float = 0.99
    lam: float = 0.95
    lr: float = 1.0e-3  # actor; the adaptive schedule moves it
    warm_start_lr: float | None = 1.0e-5  # warm start: the actor's LR starts here (null: lr)
    critic_lr: float | None = None  # null: lr (constant)
    schedule: str = "adaptive"  # adaptive | fixed
    desired_kl: float = 0.01
    lr_min: float = 1.0e-6
    lr_max: float = 1.0e-2
    entropy_coef: float = 0.01
    value_coef: float = 1.0
    max_grad_norm: float = 1.0
    init_std: float = 0.5  # deterministic-head BC: initial std of the normalised action
    min_std: float = 0.1  # floor of the Gaussian actor's std (normalised action units)
    obs_clip: float | None = 5.0  # the actor's normalised features clipped to ±this (null: off)
    critic_hidden_dims: tuple[int, ...] = (256, 256, 256)
    critic_activation: str = "mish"
    critic_warmup_iters: int = 5  # warm start: iterations that train only the critic
    demo_reg_coef: float = 0.1  # λ0 of λ·KL(π ‖ π_BC); warm start only
    demo_reg_decay: float = 0.98  # λ is multiplied by this after every actor update
    demo_reg_min: float = 0.0
    demo_bc_coef: float = 0.0  # β0 of the BC loss on demo batches (needs demo_dataset)
    demo_dataset: str | None = None
    demo_batch_size: int = 256
    kl_stop: float = 0.5  # stop when the approx KL of an update exceeds this ...
    kl_stop_patience: int = 3  # ... this many updates in a row
    update_threads: int = 1  # torch threads for the PPO update; 0: one per core (conf/rl/ppo.yaml)
    checkpoint_every: int = 50  # iterations; also at the end, on Ctrl-C and on a stop
    log_every: int = 1
    scratch: ScratchPolicyConfig = field(default_factory=ScratchPolicyConfig)
    actor: dict = field(default_factory=dict)  # actor-kind settings (DPPO), given to its factory

    def __post_init__(self):
        for key in ("num_steps", "num_epochs", "num_minibatches", "checkpoint_every", "log_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"rl.{key} must be >= 1, got {getattr(self, key)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"rl.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0 < self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError(
                f"need 0 < rl.gamma <= 1 and 0 <= rl.lam <= 1, got {self.gamma}, {self.lam}"
            )
        if self.obs_clip is not None and not self.obs_clip > 0:
            raise ValueError(f"rl.obs_clip must be positive or null, got {self.obs_clip}")
        for key in (
            "lr",
            "clip",
            "value_clip",
            "max_grad_norm",
            "init_std",
            "min_std",
            "kl_stop",
            "desired_kl",
            "lr_min",
        ):
            if not getattr(self, key) > 0:
                raise ValueError(f"rl.{key} must be positive, got {getattr(self, key)}")
        for key in ("warm_start_lr", "critic_lr"):
            if getattr(self, key) is not None and not getattr(self, key) > 0:
                raise ValueError(f"rl.{key} must be positive or null, got {getattr(self, key)}")
        if self.lr_min > self.lr_max:
            raise ValueError(f"rl.lr_min ({self.lr_min}) > rl.lr_max ({self.lr_max})")
        if self.demo_reg_min > self.demo_reg_coef:
            raise ValueError(
                f"rl.demo_reg_min ({self.demo_reg_min}) > rl.demo_reg_coef ({self.demo_reg_coef}): "
                "the coefficient would jump up after the first update"
            )
        for key in (
            "critic_warmup_iters",
            "demo_reg_coef",
            "demo_bc_coef",
            "entropy_coef",
            "update_threads",
        ):
            if getattr(self, key) < 0:
                raise ValueError(f"rl.{key} must be >= 0, got {getattr(self, key)}")
        if not 0 < self.demo_reg_decay <= 1:
            raise ValueError(f"rl.demo_reg_decay must be in (0, 1], got {self.demo_reg_decay}")
        if self.demo_bc_coef > 0 and not self.demo_dataset:
            raise ValueError("rl.demo_bc_coef > 0 needs rl.demo_dataset=<hdf5 file>")


class PPO:
    """The optimiser side: one Adam over actor and critic, the update, the LR schedule."""

    def __init__(self, actor: Any, critic: nn.Module, cfg: RLConfig, reference: Any = None):
        self.actor, self.critic, self.cfg, self.reference = actor, critic, cfg, reference
        actor_params = [p for p in actor.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(
            [
                {"params": actor_params, "lr": cfg.lr, "name": "actor"},
                {
                    "params": list(critic.parameters()),
                    "lr": cfg.lr if cfg.critic_lr is None else cfg.critic_lr,
                    "name": "critic",
                },
            ]
        )
        self._optimised = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.lr = cfg.lr
        # The adaptive rule raises a cautious warm-start rate as the KL allows; a fixed schedule
        # never would, so there rl.lr is the rate.
        if reference is not None and cfg.warm_start_lr is not None and cfg.schedule == "adaptive":
            self.set_lr(cfg.warm_start_lr)
        self.reg_coef = cfg.demo_reg_coef if reference is not None else 0.0
        self.bc_coef = cfg.demo_bc_coef

    def _snapshot(self) -> dict[str, Any]:
        """A copy of what an update changes: the optimised parameters (not a DPPO actor's frozen
        network), Adam's moments, the actor's LR."""
        return {
            "params": [p.detach().clone() for p in self._optimised],
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "lr": self.lr,
        }

    def _restore(self, snapshot: dict[str, Any]) -> None:
        with torch.no_grad():
            for p, saved in zip(self._optimised, snapshot["params"], strict=True):
                p.copy_(saved)
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.set_lr(snapshot["lr"])

    def set_lr(self, lr: float) -> None:
        self.lr = lr
        self.optimizer.param_groups[0]["lr"] = lr

    def kl_to_reference(self, obs: dict[str, torch.Tensor], stored: dict[str, torch.Tensor]):
        """``KL(π ‖ π_BC)`` per sample: the actor's closed form (``kl_to``) where it has one,
        else the sample estimate ``Σ_k log π(c_k) − log π_BC(c_k)`` at the rollout's choices."""
        if hasattr(self.actor, "kl_to"):
            return self.actor.kl_to(self.reference, obs)
        new, _ = self.actor.log_prob(obs, stored)
        with torch.no_grad():
            ref, _ = self.reference.log_prob(obs, stored)
        return (new - ref).sum(-1)

    def update(
        self,
        storage: RolloutStorage,
        update_actor: bool = True,
        demo_batches: Iterator[dict[str, Any]] | None = None,
    ) -> dict[str, float]:
        cfg = self.cfg
        adv = storage.advantages
        storage.advantages = (adv - adv.mean()) / (adv.std() + 1e-8)
        device = storage.device
        clip_eps = self.actor.clip_eps.to(device)
        weights = self.actor.advantage_weights.to(device)
        # An actor with no random choices (DPPO with ft_steps = 0) has no actor loss to take.
        update_actor = update_actor and clip_eps.numel() > 0
        use_reg = update_actor and self.reference is not None
        sums: dict[str, float] = {}
        count = 0
        before = self._snapshot()
        try:
            for _ in range(cfg.num_epochs):
                for mb in storage.minibatches(cfg.num_minibatches):
                    logs = self._step(mb, update_actor, use_reg, clip_eps, weights, demo_batches)
                    for k, v in logs.items():
                        sums[k] = sums.get(k, 0.0) + v
                    count += 1
        except DivergenceError:
            self._restore(before)
            raise
        out = {k: v / count for k, v in sums.items()}
        out["lr"] = self.lr
        out["demo_reg_coef"] = self.reg_coef if use_reg else 0.0
        if update_actor:
            self.reg_coef = max(self.reg_coef * cfg.demo_reg_decay, cfg.demo_reg_min)
            self.bc_coef *= cfg.demo_reg_decay
        return out

    def _step(self, mb, update_actor, use_reg, clip_eps, weights, demo_batches) -> dict[str, float]:
        cfg = self.cfg
        obs, stored = mb["obs"], mb["stored"]
        logs: dict[str, torch.Tensor] = {}
        value = self.critic(mb["critic_obs"])
        v_old, returns = mb["values"], mb["returns"]
        v_clipped = v_old + (value - v_old).clamp(-cfg.value_clip, cfg.value_clip)
        value_loss = torch.max((value - returns).square(), (v_clipped - returns).square()).mean()
        loss = cfg.value_coef * value_loss
        logs["value_loss"] = value_loss
        with torch.set_grad_enabled(update_actor):
            new_lp, entropy = self.actor.log_prob(obs, stored)
        log_ratio = new_lp - stored["log_prob"]
        ratio = log_ratio.exp()
        approx_kl = ((ratio - 1) - log_ratio).mean().detach()
        adv = mb["advantages"][:, None] * weights
        clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps)
        surrogate = -torch.min(ratio * adv, clipped * adv).mean()
        logs |= {
            "surrogate_loss": surrogate,
            "approx_kl": approx_kl,
            "clip_fraction": ((ratio - 1).abs() > clip_eps).float().mean(),
            "ratio_mean": ratio.mean(),
        }
        if entropy is not None:
            logs["entropy"] = entropy.mean()
        if update_actor:
            loss = loss + surrogate
            if entropy is not None:
                loss = loss - cfg.entropy_coef * entropy.mean()
        if self.reference is not None:
            with torch.set_grad_enabled(use_reg and self.reg_coef > 0):
                kl_bc = self.kl_to_reference(obs, stored).mean()
            logs["kl_to_bc"] = kl_bc
            if use_reg and self.reg_coef > 0:
                loss = loss + self.reg_coef * kl_bc
        if update_actor and demo_batches is not None and self.bc_coef > 0:
            demo_loss = self.actor.demo_loss(next(demo_batches))
            logs["demo_bc_loss"] = demo_loss
            loss = loss + self.bc_coef * demo_loss
        if not torch.isfinite(loss):
            raise DivergenceError(f"the PPO loss is {loss.item()} ({_fmt(logs)})")

        if update_actor and cfg.schedule == "adaptive":
            kl = approx_kl.item()
            if kl > 2.0 * cfg.desired_kl:
                self.set_lr(max(cfg.lr_min, self.lr / 1.5))
            elif 0.0 < kl < cfg.desired_kl / 2.0:
                self.set_lr(min(cfg.lr_max, self.lr * 1.5))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self._optimised, cfg.max_grad_norm)
        if not torch.isfinite(norm):
            raise DivergenceError(f"the PPO gradient norm is {norm.item()} ({_fmt(logs)})")
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in logs.items()}


def _fmt(logs: dict[str, torch.Tensor]) -> str:
    return ", ".join(f"{k} {float(v):.4g}" for k, v in logs.items() if math.isfinite(float(v)))
