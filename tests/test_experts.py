"""Scripted experts for every task: >= 95% success over >= 200 episodes from randomised resets."""

import pytest
import torch

from robolearn.envs import VecEnv
from robolearn.experts import make_expert

NUM_ENVS = 200


def first_episode_success(task: str, seed: int = 0) -> torch.Tensor:
    """(NUM_ENVS,) bool: whether each world's first episode succeeded.

    Counting each world's first episode, rather than the first episodes to finish, keeps the
    estimate unbiased: quick successes finish, and would be counted, before slow failures do.
    """
    env = VecEnv(task, NUM_ENVS, seed=seed, task_overrides={"terminate_on_success": True})
    expert = make_expert(task, NUM_ENVS, env.device, env.task.cfg.control)
    obs, _ = env.reset()
    success = torch.zeros(NUM_ENVS, dtype=torch.bool)
    finished = torch.zeros(NUM_ENVS, dtype=torch.bool)
    while not finished.all():
        obs, _, _, _, info = env.step(expert(obs["policy"]))
        if "episode" in info:
            ids = info["episode"]["env_ids"]
            first = ~finished[ids]
            success[ids[first]] = info["episode"]["success"][first]
            finished[ids] = True
            expert.reset(ids)
    return success


@pytest.mark.slow
@pytest.mark.parametrize("task", ["reach", "push", "lift", "pick_place", "stack", "lift_flat"])
def test_expert_succeeds(task):
    success = first_episode_success(task)
    rate = success.float().mean().item()
    assert rate >= 0.95, f"{task}: {int(success.sum())}/{NUM_ENVS} episodes succeeded"
