"""Scripted experts for every task: >= 95% success over >= 200 episodes from randomised resets."""

import pytest
import torch

from robolearn.envs.vec_env import VecEnv
from robolearn.experts import make_expert
from robolearn.experts.measure import first_episode_success

NUM_ENVS = 200


@pytest.mark.slow
@pytest.mark.parametrize("task", ["reach", "push", "lift", "pick_place", "stack", "lift_flat"])
def test_expert_succeeds(task):
    success = first_episode_success(task, NUM_ENVS)
    rate = success.float().mean().item()
    assert rate >= 0.95, f"{task}: {int(success.sum())}/{NUM_ENVS} episodes succeeded"


def test_a_randomising_expert_follows_the_collection_seed():
    """reach_around's expert picks a side per episode: the seed decides, the same on any device."""
    env = VecEnv("reach_around", 64, seed=0)
    obs, _ = env.reset()

    def sides(seed: int) -> torch.Tensor:
        expert = make_expert("reach_around", 64, env.device, env.task.cfg.control, seed)
        expert(obs["policy"])
        return expert.side.clone()

    assert torch.equal(sides(0), sides(0))
    assert not torch.equal(sides(0), sides(1))
