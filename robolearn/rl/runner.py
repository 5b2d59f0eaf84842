"""``PPORunner``: the on-policy loop — roll out in the :class:`VecEnv`, GAE, PPO update, logs,
checkpoints — for any :class:`~robolearn.rl.actor.RLActor`.

Decisions and env steps (the semi-MDP of an actor with ``n_exec > 1``)
----------------------------------------------------------------------
Per decision the actor returns ``n_exec`` actions per world and the env is stepped ``n_exec``
times. For a world whose episode goes on, the decision's reward is ``Σ_j γ^j r_j`` and the next
decision is bootstrapped with ``γ^n_exec``. A world whose episode ends at sub-step ``k``
(``k`` env steps taken) is *done* for this decision: its reward is ``Σ_{j<k} γ^j r_j``, nothing
is bootstrapped across the boundary, and for the rest of the chunk it gets the zero action —
those steps are the start of its next episode and their rewards are attributed to no decision.
A time-out (``truncated``) adds ``γ^k · V(final_obs)`` to the decision's reward, with the
critic's value of ``info["final_obs"]``; a termination adds nothing. With ``n_exec = 1`` this is
ordinary PPO with time-out bootstrapping.

Observation windows: the trainer keeps each world's last ``n_obs_steps`` ``policy``-group
observations (updated every env step, also mid-chunk); a new episode's window repeats its first
observation, as in :class:`~robolearn.eval.runner.ChunkedPolicyRunner` and the training windows.

Stopping early, always with a checkpoint: Ctrl-C (status ``"interrupted"``); non-finite rewards
or observations (``"non_finite"``: reported with the env ids, checked every env step before the
data can be used, the checkpoint holds the weights of the last completed update); a diverging
update (``"diverged"``: approx KL above ``kl_stop`` for ``kl_stop_patience`` updates in a row,
or a non-finite loss or gradient, which is never applied).

Curricula (issue 5, :mod:`robolearn.curricula.hooks`) hook in through ``callbacks``: objects
with any of ``before_rollout(runner)`` (change ``runner.gamma``, restart every episode with
``runner.reset_envs()``), ``after_rollout(runner)`` (after the rollout, before GAE: rewrite
``runner.storage.rewards``), ``after_update(runner, stats)`` (read success statistics),
``export_policy(policy) -> policy`` (what checkpoints hold and evaluation runs, e.g. without
simulation-only action dimensions) and ``state_dict``/``load_state_dict`` to be checkpointed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from robolearn.checkpoint import (
    capture_rng_state,
    load_training_state,
    restore_rng_state,
    save_checkpoint,
    update_pointer,
)
from robolearn.envs.vec_env import VecEnv
from robolearn.policies.trainer import _sigint_at_step_boundary, _StopFlag
from robolearn.rl.critic import Critic
from robolearn.rl.gae import compute_gae
from robolearn.rl.ppo import PPO, DivergenceError, RLConfig
from robolearn.rl.storage import RolloutStorage
from robolearn.utils.loggers import NullLogger, ScalarLogger

log = logging.getLogger(__name__)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous count.

    The PPO update runs while the simulator is idle, so it may use every core; the rollout keeps
    the run's ``threads`` (1 by default) so the simulator's own threads keep theirs."""
    previous = torch.get_num_threads()
    if n == previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class NonFiniteEnvError(RuntimeError):
    """The env returned NaN/Inf rewards or observations."""


@dataclass
class RLResult:
    status: str  # "done" | "interrupted" | "non_finite" | "diverged"
    iteration: int
    env_steps: int
    checkpoint: Path
    seconds: float
    message: str = ""
    env_steps_per_s: float = 0.0
    last_stats: dict[str, float] = field(default_factory=dict)


class PPORunner:
    def __init__(
        self,
        env: VecEnv,
        actor: Any,
        critic: Critic,
        cfg: RLConfig,
        *,
        total_env_steps: int,
        reference: Any = None,
        run_dir: Path,
        config: Mapping[str, Any],
        logger: ScalarLogger | None = None,
        warm_start: bool = False,
        demo_batches: Iterator[dict[str, Any]] | None = None,
        progress: bool = True,
        callbacks: Sequence[Any] = (),
    ):
        self.env, self.actor, self.critic, self.cfg = env, actor, critic, cfg
        self.device = env.device
        self.total_env_steps = total_env_steps
        self.run_dir, self.config = Path(run_dir), dict(config)
        self.logger = logger or NullLogger()
        self.warm_start, self.demo_batches = warm_start, demo_batches
        self.progress, self.callbacks = progress, list(callbacks)
        self.reference = reference
        self.ppo = PPO(actor, critic, cfg, reference)
        self.storage = RolloutStorage(cfg.num_steps, env.num_envs, self.device)
        self.gamma = cfg.gamma
        self.iteration = 0
        self.env_steps = 0
        self.kl_strikes = 0
        self.checkpoint: tuple[int, Path] | None = None
        self.history: dict[str, torch.Tensor] = {}
        self.obs: dict[str, dict[str, torch.Tensor]] | None = None
        self._episodes: list[dict[str, torch.Tensor]] = []
        self._bar: tqdm | None = None

    # --- env interaction -------------------------------------------------------------------------
    def reset_envs(self) -> None:
        """Reset every world and restart the observation windows."""
        obs, _ = self.env.reset()
        self._check_finite(obs, None, {})
        self.obs = obs
        self.history = {}
        self._push(obs["policy"], None)

    def _push(self, policy_obs: dict[str, torch.Tensor], fresh: torch.Tensor | None) -> None:
        n = self.actor.n_obs_steps
        for key in self.actor.obs_keys:
            x = policy_obs[key]
            if key not in self.history:
                self.history[key] = x.unsqueeze(1).repeat_interleave(n, 1)
                continue
            h = torch.cat([self.history[key][:, 1:], x.unsqueeze(1)], dim=1)
            if fresh is not None:  # a new episode's window repeats its first observation
                h = torch.where(fresh.view(-1, *([1] * (h.ndim - 1))), x.unsqueeze(1), h)
            self.history[key] = h

    def _check_finite(self, obs, reward, info) -> None:
        bad = torch.zeros(self.env.num_envs, dtype=torch.bool, device=self.device)
        what: list[str] = []
        if reward is not None:
            bad_r = ~torch.isfinite(reward)
            bad |= bad_r
        # A world whose physics diverged ends its episode by contract, and its final observation
        # may be non-finite (Warp leaves the state as it broke); it is never bootstrapped from.
        diverged = info.get("diverged")
        groups = [("obs", obs, None)]
        if "final_obs" in info:
            groups.append(("final_obs", info["final_obs"], None if diverged is None else ~diverged))
        bad_terms: list[tuple[str, torch.Tensor]] = []
        for name, o, rows in groups:
            for group, terms in o.items():
                for key, x in terms.items():
                    b = ~torch.isfinite(x).reshape(x.shape[0], -1).all(-1)
                    if rows is not None:
                        b &= rows
                    bad_terms.append((f"{name}[{group!r}][{key!r}]", b))
                    bad |= b
        if not bool(bad.any()):
            return
        if reward is not None and bool(bad_r.any()):
            what.append("reward")
        what += sorted({t for t, b in bad_terms if bool(b.any())})
        ids = bad.nonzero().squeeze(-1).tolist()
        raise NonFiniteEnvError(
            f"non-finite values (NaN/Inf) from the env at env step {self.env_steps} in "
            f"{', '.join(what[:4])} for env ids {ids[:20]}{' ...' if len(ids) > 20 else ''}"
        )

    @torch.no_grad()
    def _execute(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Step the env ``n_exec`` times; the decision's reward and done flags ``(N,)``."""
        n, n_exec = self.env.num_envs, actions.shape[1]
        reward = torch.zeros(n, device=self.device)
        alive = torch.ones(n, dtype=torch.bool, device=self.device)
        discount = 1.0
        for j in range(n_exec):
            action = actions[:, j] if j == 0 else torch.where(alive[:, None], actions[:, j], 0.0)
            obs, r, terminated, truncated, info = self.env.step(action)
            self._check_finite(obs, r, info)
            self.env_steps += n
            reward += torch.where(alive, discount * r, 0.0)
            ended = terminated | truncated
            if "final_obs" in info:
                timeout = alive & truncated
                v_final = self.critic(self.critic.flatten(info["final_obs"]["critic"]))
                reward += torch.where(timeout, discount * self.gamma * v_final, 0.0)
                self._episodes.append(info["episode"])
                alive = alive & ~ended
            discount *= self.gamma
            self.obs = obs
            self._push(obs["policy"], ended)
        return reward, ~alive

    @torch.no_grad()
    def collect(self) -> None:
        """Fill the storage with ``num_steps`` decisions and compute advantages."""
        self.storage.clear()
        for _ in range(self.cfg.num_steps):
            assert self.obs is not None
            window = dict(self.history)
            critic_obs = self.critic.flatten(self.obs["critic"])
            self.critic.normalizer.update(critic_obs)
            actions, stored = self.actor.act(window)
            value = self.critic(critic_obs)
            n_exec = actions.shape[1]
            reward, done = self._execute(actions)
            discount = torch.full_like(reward, self.gamma**n_exec)
            self.storage.add(window, critic_obs, stored, value, reward, done, discount)
            if self._bar is not None:
                self._bar.update(self.env.num_envs * n_exec)
        for cb in self.callbacks:
            if hasattr(cb, "after_rollout"):
                cb.after_rollout(self)
        last_value = self.critic(self.critic.flatten(self.obs["critic"]))
        s = self.storage
        s.advantages, s.returns = compute_gae(
            s.rewards, s.values, s.dones, last_value, s.discounts, self.cfg.lam
        )

    # --- the loop --------------------------------------------------------------------------------
    def iterate(self) -> tuple[dict[str, float], bool]:
        """One iteration: rollout, GAE, PPO update (the actor frozen during the critic warm-up);
        its statistics and whether the actor was updated."""
        t0 = time.perf_counter()
        for cb in self.callbacks:
            if hasattr(cb, "before_rollout"):
                cb.before_rollout(self)
        steps0 = self.env_steps
        self.collect()
        t1 = time.perf_counter()
        update_actor = not self.warm_start or self.iteration >= self.cfg.critic_warmup_iters
        with torch_threads(self.cfg.update_threads or os.cpu_count() or 1):
            stats = self.ppo.update(self.storage, update_actor, self.demo_batches)
        t2 = time.perf_counter()
        self.iteration += 1
        stats |= self._episode_stats()
        stats["env_steps_per_s"] = (self.env_steps - steps0) / (t2 - t0)
        stats["collect_s"], stats["update_s"] = t1 - t0, t2 - t1
        stats["gamma"] = self.gamma
        for cb in self.callbacks:
            if hasattr(cb, "after_update"):
                cb.after_update(self, stats)
        return stats, update_actor

    def learn(self) -> RLResult:
        self.actor.eval()  # no dropout: log-probs must be reproducible (ratio ≡ 1)
        self.critic.train()
        stop = _StopFlag()
        start, start_steps = time.perf_counter(), self.env_steps
        status, message, stats = "done", "", {}
        self._bar = tqdm(
            total=self.total_env_steps,
            initial=self.env_steps,
            desc="rl",
            unit="step",
            unit_scale=True,
            disable=not self.progress,
            dynamic_ncols=True,
        )
        try:
            with self._bar, _sigint_at_step_boundary(stop):
                self.reset_envs()
                while self.env_steps < self.total_env_steps and not stop.requested:
                    stats, update_actor = self.iterate()
                    last = self.env_steps >= self.total_env_steps or stop.requested
                    if self.iteration % self.cfg.log_every == 0 or last:
                        self._log(stats)
                    if update_actor and stats["approx_kl"] > self.cfg.kl_stop:
                        self.kl_strikes += 1
                    else:
                        self.kl_strikes = 0
                    if self.kl_strikes >= self.cfg.kl_stop_patience:
                        status = "diverged"
                        message = (
                            f"approx KL {stats['approx_kl']:.3g} > kl_stop {self.cfg.kl_stop} for "
                            f"{self.kl_strikes} updates in a row at iteration {self.iteration}"
                        )
                        break
                    if self.iteration % self.cfg.checkpoint_every == 0:
                        self.save()
        except KeyboardInterrupt:
            if stop.aborted:
                raise
            stop.requested = True
        except NonFiniteEnvError as e:
            status, message = "non_finite", str(e)
        except DivergenceError as e:
            status, message = "diverged", f"{e} at iteration {self.iteration}"
        finally:
            self._bar = None
        if status == "done" and stop.requested:
            status = "interrupted"
        if self.checkpoint is None or self.checkpoint[0] != self.iteration:
            self.save()
        assert self.checkpoint is not None
        seconds = time.perf_counter() - start
        return RLResult(
            status=status,
            iteration=self.iteration,
            env_steps=self.env_steps,
            checkpoint=self.checkpoint[1],
            seconds=seconds,
            message=message,
            env_steps_per_s=(self.env_steps - start_steps) / max(seconds, 1e-9),
            last_stats=stats,
        )

    def _episode_stats(self) -> dict[str, float]:
        if not self._episodes:
            return {}
        eps = self._episodes
        self._episodes = []
        ret = torch.cat([e["return"] for e in eps]).float()
        length = torch.cat([e["length"] for e in eps]).float()
        success = torch.cat([e["success"] for e in eps]).float()
        return {
            "success_rate": success.mean().item(),
            "return": ret.mean().item(),
            "episode_length": length.mean().item(),
            "episodes": float(ret.numel()),
        }

    def _log(self, stats: dict[str, float]) -> None:
        groups = {
            "success_rate": "rollout",
            "return": "rollout",
            "episode_length": "rollout",
            "episodes": "rollout",
            "env_steps_per_s": "perf",
            "collect_s": "perf",
            "update_s": "perf",
        }
        scalars = {f"{groups.get(k, 'train')}/{k}": v for k, v in stats.items()}
        scalars["train/iteration"] = self.iteration
        self.logger.log(scalars, self.env_steps)
        if self.progress and self._bar is not None:
            post = {"it": self.iteration}
            if "success_rate" in stats:
                post["success"] = f"{stats['success_rate']:.0%}"
                post["return"] = f"{stats['return']:.2f}"
            self._bar.set_postfix(post)

    # --- checkpoints -----------------------------------------------------------------------------
    def export_policy(self) -> Any:
        """The policy checkpoints hold and evaluation runs: the actor's, passed through the
        callbacks' ``export_policy``."""
        policy = self.actor.export_policy()
        for cb in self.callbacks:
            if hasattr(cb, "export_policy"):
                policy = cb.export_policy(policy)
        return policy

    def save(self) -> Path:
        policy = self.export_policy()
        import dataclasses

        config = {**self.config, "policy": {"name": policy.name, **dataclasses.asdict(policy.cfg)}}
        state: dict[str, Any] = {
            "step": self.iteration,
            "env_steps": self.env_steps,
            "lr": self.ppo.lr,
            "demo_reg_coef": self.ppo.reg_coef,
            "demo_bc_coef": self.ppo.bc_coef,
            "gamma": self.gamma,
            "kl_strikes": self.kl_strikes,
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer": self.ppo.optimizer.state_dict(),
            "env_rng": {"state": self.env.generator.get_state()},
            "rng": capture_rng_state(),
        }
        if self.reference is not None:
            state["reference"] = self.reference.state_dict()
        for i, cb in enumerate(self.callbacks):
            if hasattr(cb, "state_dict"):
                state[f"callback_{i}"] = cb.state_dict()
        path = save_checkpoint(
            self.run_dir / "checkpoints" / f"iter_{self.iteration:06d}",
            policy,
            config=config,
            training_state=state,
        )
        update_pointer(self.run_dir, path)
        self.checkpoint = (self.iteration, path)
        return path

    def restore(self, checkpoint: Path) -> None:
        """Continue from ``checkpoint``: actor (with its log-std), critic and its normaliser,
        π_BC, optimizer, iteration, env steps, λ, LR, γ and RNG. Episodes restart (the sim's
        state is not checkpointed)."""
        state = load_training_state(checkpoint)
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        if self.reference is not None:
            if "reference" not in state:
                raise ValueError(f"{checkpoint}: has no reference (π_BC) state to resume")
            self.reference.load_state_dict(state["reference"])
        self.ppo.optimizer.load_state_dict(state["optimizer"])
        self.ppo.set_lr(float(state["lr"]))
        self.ppo.reg_coef = float(state["demo_reg_coef"])
        self.ppo.bc_coef = float(state.get("demo_bc_coef", self.ppo.bc_coef))
        self.gamma = float(state["gamma"])
        self.kl_strikes = int(state.get("kl_strikes", 0))
        self.iteration, self.env_steps = int(state["step"]), int(state["env_steps"])
        self.env.generator.set_state(state["env_rng"]["state"])
        for i, cb in enumerate(self.callbacks):
            if hasattr(cb, "load_state_dict") and f"callback_{i}" in state:
                cb.load_state_dict(state[f"callback_{i}"])
        restore_rng_state(state["rng"])


def demo_batch_iterator(
    dataset: Any, batch_size: int, device: torch.device, seed: int = 0
) -> Iterator[dict[str, Any]]:
    """Endless shuffled batches of demonstration windows (for the BC loss), on ``device``."""
    from torch.utils.data import DataLoader

    from robolearn.policies.trainer import _to_device

    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=False, generator=generator
    )
    while True:
        for batch in loader:
            yield _to_device(batch, device)


Callback = Callable[..., Any]
