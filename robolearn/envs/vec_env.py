"""``VecEnv``: the torch, Isaac-style vector env over a :class:`BatchedSim` and a :class:`Task`.

* ``step(action) -> (obs, reward, terminated, truncated, info)``, all tensors on ``env.device``.
* ``obs`` is a dict of observation groups, each a dict of named ``(N, d)`` float32 terms.
* Same-step autoreset: a finished world's returned observation is the first of its next episode;
  the last one is in ``info["final_obs"]`` (rows valid where ``terminated | truncated``).
  ``truncated`` marks time limits, so that value bootstrapping is right.
* ``info["diverged"]`` flags worlds whose physics blew up this step; they are terminated and reset.
* ``info["success"]`` is the success flag of the step that was just taken (before any reset);
  ``info["episode"]`` holds return/length/success for the worlds that finished this step.
"""

from __future__ import annotations

from typing import Any

import torch

from robolearn.sim.batched import make_sim
from robolearn.sim.scene import build_model
from robolearn.spec import ObsSpec
from robolearn.tasks import Task, make_task

Obs = dict[str, dict[str, torch.Tensor]]


class VecEnv:
    def __init__(
        self,
        task: Task | str,
        num_envs: int,
        backend: str = "cpu",
        device: str | None = None,
        seed: int = 0,
        task_overrides: dict[str, Any] | None = None,
    ):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs <= 0:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.task = make_task(task, task_overrides) if isinstance(task, str) else task
        self.model = build_model(self.task.scene)
        self.sim = make_sim(self.model, num_envs, backend=backend, device=device)
        self.num_envs, self.device = num_envs, self.sim.device
        # Draws (initial states, domain parameters) come from a host generator and are copied to
        # the sim's device, so that a seed gives the same episodes on the CPU and on a GPU.
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        self.task.bind(self.sim, self.generator)
        self.substeps = self.task.cfg.substeps
        self.max_episode_length = self.task.cfg.episode_length
        self.episode_length = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.episode_return = torch.zeros(num_envs, device=self.device)
        self.episode_success = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self.task.reset(self.sim.all_ids())
        self.spec: ObsSpec = self.task.obs_spec()
        self.action_dim = self.spec.action.dim

    # --- API ---------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        if seed is not None:
            self.generator.manual_seed(seed)
        self._reset_worlds(self.sim.all_ids())
        return self._observe(), {}

    def step(
        self, action: torch.Tensor
    ) -> tuple[Obs, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        self._check_action(action)
        self.task.apply_action(action.clamp(-1.0, 1.0))
        diverged = self.sim.step(self.substeps)
        self.episode_length += 1

        # Once per step (reward and termination may both need it); never from a diverged world,
        # whose state the backend has reset to the model's defaults (a cube placed at rest).
        success = self.task.success() & ~diverged
        reward = torch.where(diverged, 0.0, self.task.reward(success))  # none from a broken state
        # A world whose physics diverged ends its episode (no bootstrapping from a broken state).
        terminated = self.task.terminated(success) | diverged
        truncated = (self.episode_length >= self.max_episode_length) & ~terminated
        self.episode_return += reward
        self.episode_success |= success
        obs = self._observe()
        info: dict[str, Any] = {"success": success, "diverged": diverged}

        done = terminated | truncated
        done_ids = done.nonzero().squeeze(-1)
        if done_ids.numel():
            info["final_obs"] = obs
            info["episode"] = {
                "env_ids": done_ids,
                "return": self.episode_return[done_ids].clone(),
                "length": self.episode_length[done_ids].clone(),
                "success": self.episode_success[done_ids].clone(),
            }
            self._reset_worlds(done_ids)
            obs = self._observe()
        return obs, reward, terminated, truncated, info

    def set_domain_params(self, env_ids: torch.Tensor, values: torch.Tensor) -> None:
        """Choose the domain parameters the next reset of ``env_ids`` uses (for curricula)."""
        self.task.domain.set_next(env_ids.to(self.device), values.to(self.device))

    @property
    def domain_param_names(self) -> tuple[str, ...]:
        return self.task.domain.names

    def close(self) -> None:
        # Idempotent: gymnasium's env checker (and wrappers) may close an env twice.
        vars(self).pop("sim", None)

    # --- internals ---------------------------------------------------------------------------
    def _reset_worlds(self, env_ids: torch.Tensor) -> None:
        self.task.reset(env_ids)
        self.episode_length[env_ids] = 0
        self.episode_return[env_ids] = 0
        self.episode_success[env_ids] = False

    def _observe(self) -> Obs:
        terms = self.task.observations()
        return {group: {k: terms[k] for k in names} for group, names in self.spec.groups.items()}

    def _check_action(self, action: torch.Tensor) -> None:
        expected = (self.num_envs, self.action_dim)
        if not isinstance(action, torch.Tensor):
            raise TypeError(
                f"action must be a torch.Tensor of shape {expected}, got {type(action).__name__}"
            )
        if tuple(action.shape) != expected:
            raise ValueError(f"action has shape {tuple(action.shape)}, expected {expected}")
        if not action.is_floating_point():
            raise TypeError(f"action must be a floating-point tensor, got dtype {action.dtype}")
        if action.device != self.device:
            raise ValueError(f"action is on device {action.device}, env is on {self.device}")
        bad = ~torch.isfinite(action).all(dim=-1)
        if bad.any():
            raise ValueError(
                f"action contains NaN/Inf for env ids {bad.nonzero().squeeze(-1).tolist()[:10]}"
            )
