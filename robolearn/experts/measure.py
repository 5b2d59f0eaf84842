"""Measure a scripted expert's success rate without bias."""

from __future__ import annotations

import torch

from robolearn.envs import VecEnv
from robolearn.experts import make_expert


def first_episode_success(
    task: str, num_envs: int = 200, seed: int = 0, backend: str = "cpu"
) -> torch.Tensor:
    """(num_envs,) bool: whether each world's first episode succeeded.

    Counting each world's first episode, rather than the first episodes to finish, keeps the
    estimate unbiased: quick successes finish, and would be counted, before slow failures do.
    """
    env = VecEnv(
        task, num_envs, backend=backend, seed=seed, task_overrides={"terminate_on_success": True}
    )
    expert = make_expert(task, num_envs, env.device, env.task.cfg.control)
    obs, _ = env.reset()
    success = torch.zeros(num_envs, dtype=torch.bool, device=env.device)
    finished = torch.zeros(num_envs, dtype=torch.bool, device=env.device)
    while not finished.all():
        obs, _, _, _, info = env.step(expert(obs["policy"]))
        if "episode" in info:
            ids = info["episode"]["env_ids"]
            first = ~finished[ids]
            success[ids[first]] = info["episode"]["success"][first]
            finished[ids] = True
            expert.reset(ids)
    env.close()
    return success.cpu()
