"""``OTRewardEnv``: ADS's optimal-transport rewards (METHODS.md §6), given to whole episodes.

An OT reward is a property of a whole episode, while PPO needs every step's reward when its
rollout ends. The simplest correct design makes rollouts out of whole episodes: the trainer
resets every world at the start of each rollout (:class:`~robolearn.curricula.hooks.CurriculumHooks`)
and a rollout lasts a whole number of episode lengths (``rl.num_steps`` a multiple of
``task.episode_length``, checked at start), so each world runs complete episodes back to back.
During the rollout this env pays nothing (imitation from observation: the task's reward is not
used) and records the observation terms ADS compares; after it, before GAE,
:meth:`OTRewardEnv.episode_rewards` gives every step of every episode that ended in the rollout
its OT reward. An episode still running when the rollout stops (one that began after an earlier
episode of its world ended early, e.g. at success with ``task.terminate_on_success``) gets 0 for
its steps: its world is reset at the next rollout's start, so its OT reward cannot be known.

A step's frame is the observation it led to (``info["final_obs"]`` for an episode's last step),
so that step ``t``'s reward scores what action ``t`` did.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from robolearn.curricula.discount import ADSCurriculum, Episode
from robolearn.envs.vec_env import Obs
from robolearn.envs.wrapper import EnvWrapper

log = logging.getLogger(__name__)


class OTRewardEnv(EnvWrapper):
    """A vector env paying ADS's OT rewards per episode instead of the task's reward."""

    def __init__(self, env: Any, ads: ADSCurriculum):
        terms = env.spec.terms
        missing = [k for k in ads.cfg.recorded_keys if k not in terms]
        if missing:
            raise ValueError(
                f"curriculum.ads.obs_keys/progress_keys: task {env.task.name!r} has no "
                f"observation term {missing[0]!r}; its terms are {sorted(terms)}"
            )
        ending = env.task.early_ends()
        if ending:
            # OT rewards are never positive: an episode that ends early stops paying them, so
            # ending is itself rewarded, the more so the longer the horizon (docs/benchmarks.md).
            log.warning(
                "ADS: task %r ends episodes early (%s); OT rewards are never positive, so PPO is "
                "paid to end them (e.g. by dropping an object off the table). For fixed-length "
                "episodes as in METHODS §6: task.terminate_on_success=false "
                "+task.terminate_on_fall=false",
                env.task.name,
                ", ".join(ending),
            )
        super().__init__(env)
        self.ads = ads
        self._frames: list[dict[str, torch.Tensor]] = []  # per env step: {key: (N, d)}
        self._ended: list[torch.Tensor] = []  # per env step: (N,) bool

    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        self._frames.clear()
        self._ended.clear()
        return self.env.reset(seed)

    def step(
        self, action: torch.Tensor
    ) -> tuple[Obs, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        ended = terminated | truncated
        now, last = _terms(obs), _terms(info.get("final_obs", obs))
        n = len(ended)
        self._frames.append(
            {
                k: torch.where(ended[:, None], last[k].reshape(n, -1), now[k].reshape(n, -1))
                for k in self.ads.cfg.recorded_keys
            }
        )
        self._ended.append(ended)
        return obs, torch.zeros_like(reward), terminated, truncated, info

    def episode_rewards(self) -> tuple[torch.Tensor, list[Episode]]:
        """OT rewards ``(T, N)`` of the steps recorded since the last reset, and the episodes that
        ended in them (``{key: (length, d)}`` on the CPU, for ADS's progress recogniser)."""
        steps, n = len(self._frames), self.env.num_envs
        frames = {
            k: torch.stack([f[k] for f in self._frames]).cpu() for k in self.ads.cfg.recorded_keys
        }
        ended = torch.stack(self._ended).cpu() if steps else torch.zeros(0, n, dtype=torch.bool)
        spans: list[tuple[int, int, int]] = []  # (world, first step, end step)
        episodes: list[Episode] = []
        for world in range(n):
            start = 0
            for end in (ended[:, world].nonzero().flatten() + 1).tolist():
                spans.append((world, start, end))
                episodes.append({k: x[start:end, world] for k, x in frames.items()})
                start = end
        rewards = torch.zeros(steps, n)
        for (world, start, end), r in zip(spans, self.ads.rewards(episodes), strict=True):
            rewards[start:end, world] = r.float()
        return rewards.to(self.env.device), episodes


def _terms(obs: Obs) -> dict[str, torch.Tensor]:
    """Every observation term, whatever its group."""
    return {k: x for group in obs.values() for k, x in group.items()}
