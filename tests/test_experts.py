"""Scripted experts for every task: >= 95% success over >= 200 episodes from randomised resets."""

import pytest

from robolearn.experts.measure import first_episode_success

NUM_ENVS = 200


@pytest.mark.slow
@pytest.mark.parametrize("task", ["reach", "push", "lift", "pick_place", "stack", "lift_flat"])
def test_expert_succeeds(task):
    success = first_episode_success(task, NUM_ENVS)
    rate = success.float().mean().item()
    assert rate >= 0.95, f"{task}: {int(success.sum())}/{NUM_ENVS} episodes succeeded"
