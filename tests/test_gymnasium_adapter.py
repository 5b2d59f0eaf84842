"""Gymnasium adapter: gymnasium's own checkers, same-step autoreset layout, spaces, seeding."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env, data_equivalence
from gymnasium.utils.passive_env_checker import (
    check_action_space,
    check_obs,
    check_observation_space,
    data_shares_objects,
)
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers.vector import DictInfoToList, RecordEpisodeStatistics

from robolearn.envs import GymnasiumEnv, GymnasiumVectorEnv, VecEnv
from robolearn.envs.gymnasium_adapter import gym_id, make_vector_env
from robolearn.tasks import TASKS

N = 3
SHORT = {"task_overrides": {"episode_length": 4}}


@pytest.fixture
def strict_warnings():
    """Turn gymnasium's checker warnings into errors, except that unbounded observation terms
    are intended (positions and velocities have no honest bound; gymnasium's own MuJoCo envs
    declare Box(-inf, inf) too)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings(
            "ignore", message=r".*Box observation space m\w+ value is -?infinity"
        )
        yield


def random_actions(env: gym.vector.VectorEnv, seed: int = 0) -> np.ndarray:
    env.action_space.seed(seed)
    return env.action_space.sample()


def test_registered_ids_build_both_views():
    env = gym.make("robolearn/Reach-v0")
    assert isinstance(env.unwrapped, GymnasiumEnv)
    venv = gym.make_vec("robolearn/Reach-v0", num_envs=N)
    assert isinstance(venv, GymnasiumVectorEnv) and venv.num_envs == N
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert venv.spec is not None and venv.spec.id == "robolearn/Reach-v0"


@pytest.mark.parametrize("task", sorted(TASKS))
def test_single_env_passes_check_env(task, strict_warnings):
    env = gym.make(gym_id(task)).unwrapped  # made from its spec: render and close checks run too
    check_env(env)


def test_single_env_returns_the_last_observation_when_an_episode_ends():
    env = GymnasiumEnv(**SHORT)
    obs, _ = env.reset(seed=0)
    target = obs["target_pos"]
    for _ in range(4):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert isinstance(reward, float) and np.isfinite(reward)
    assert truncated and not terminated
    assert np.array_equal(obs["target_pos"], target)  # not the next episode's first
    assert info["episode"]["length"] == 4 and isinstance(info["episode"]["success"], bool)
    obs, _ = env.reset()
    assert not np.array_equal(obs["target_pos"], target)


def test_vector_env_passes_passive_checks(strict_warnings):
    venv = make_vector_env(N, **SHORT)
    check_observation_space(venv.single_observation_space)
    check_observation_space(venv.observation_space)
    check_action_space(venv.single_action_space)
    check_action_space(venv.action_space)
    assert venv.single_action_space == gym.spaces.Box(-1, 1, (7,), np.float32)
    assert venv.action_space.shape == (N, 7)
    obs, info = venv.reset(seed=0)
    check_obs(obs, venv.observation_space, "reset")
    assert info == {}
    previous = (obs, info)
    for _ in range(5):  # crosses the time limit
        obs, reward, terminated, truncated, info = venv.step(random_actions(venv))
        check_obs(obs, venv.observation_space, "step")
        assert reward.shape == (N,) and reward.dtype == np.float32 and np.isfinite(reward).all()
        assert terminated.dtype == truncated.dtype == np.bool_
        assert not data_shares_objects(previous, (obs, info)), "returned data must be fresh"
        previous = (obs, info)


def test_same_step_autoreset_layout_matches_sync_vector_env():
    """Our infos have exactly the keys gymnasium's SyncVectorEnv produces in SAME_STEP mode over
    the single-world view, on a step without and with episode ends."""
    ours = make_vector_env(N, **SHORT)
    sync = SyncVectorEnv(
        [lambda: GymnasiumEnv(**SHORT)] * N, autoreset_mode=AutoresetMode.SAME_STEP
    )

    def keys(info):
        return {k: keys(v) if isinstance(v, dict) else None for k, v in info.items()}

    ours.reset(seed=0)
    sync.reset(seed=0)
    for t in range(4):
        actions = random_actions(ours, t)
        *_, info = ours.step(actions)
        *_, sync_info = sync.step(actions)
        assert keys(info) == keys(sync_info), f"step {t}"
    assert set(info) == {"final_obs", "_final_obs", "final_info", "_final_info"}


def test_final_obs_present_exactly_for_finished_envs():
    venv = make_vector_env(N, **SHORT)
    obs, _ = venv.reset(seed=0)
    venv.env.episode_length[0] = 2  # env 0 hits the limit two steps before the others
    expected_done = [[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 1]]
    for t, expected in enumerate(expected_done):
        previous = obs
        obs, _, terminated, truncated, info = venv.step(random_actions(venv, t))
        done = terminated | truncated
        assert done.tolist() == [bool(e) for e in expected], f"step {t}"
        if not done.any():
            assert "final_obs" not in info and "final_info" not in info
            continue
        assert np.array_equal(info["_final_obs"], done)
        assert np.array_equal(info["_final_info"], done)
        assert np.array_equal(info["_success"], ~done)  # a finished env's step info is final_info's
        for i in range(N):
            final = info["final_obs"][i]
            if not done[i]:
                assert final is None
                continue
            assert final in venv.single_observation_space
            # The final observation continues the finished episode (same target); the returned
            # one starts a new episode with a freshly sampled target.
            assert np.array_equal(final["target_pos"], previous["target_pos"][i])
            assert not np.array_equal(obs["target_pos"][i], final["target_pos"])
            assert venv.env.episode_length[i] == 0
        assert np.array_equal(info["final_info"]["_episode"], done)
        assert (info["final_info"]["episode"]["length"][done] == 4).all()


def test_gymnasium_episode_statistics_wrapper_agrees():
    venv = RecordEpisodeStatistics(make_vector_env(N, **SHORT))
    venv.reset(seed=0)
    for t in range(4):
        _, _, _, _, info = venv.step(random_actions(venv, t))
    ours = info["final_info"]["episode"]
    np.testing.assert_allclose(info["episode"]["r"], ours["return"], rtol=1e-5)
    np.testing.assert_array_equal(info["episode"]["l"], ours["length"])
    listed = DictInfoToList(make_vector_env(N, **SHORT))
    listed.reset(seed=0)
    for t in range(4):
        *_, infos = listed.step(random_actions(listed, t))
    assert all(
        set(info_i["final_info"]["episode"]) == {"return", "length", "success"} for info_i in infos
    )


def test_seeding_is_reproducible():
    a, b = make_vector_env(N, seed=1), make_vector_env(N, seed=2)

    def rollout(venv, seed):
        first, _ = venv.reset(seed=seed)
        steps = [venv.step(random_actions(venv, t))[:4] for t in range(3)]
        return first, steps

    assert data_equivalence(rollout(a, 5), rollout(b, 5), exact=True)
    assert not data_equivalence(rollout(a, 5)[0], rollout(a, 6)[0])


def test_group_choice_and_bad_arguments():
    venv = GymnasiumVectorEnv(VecEnv("reach", 2), group="critic")
    obs, _ = venv.reset(seed=0)
    assert {"joint_vel", "domain_params"} <= set(obs) and obs in venv.observation_space
    with pytest.raises(
        ValueError, match=r"unknown observation group 'actor'; choose from \['critic', 'policy'\]"
    ):
        GymnasiumVectorEnv(VecEnv("reach", 2), group="actor")
    with pytest.raises(ValueError, match="seed must be an int or None"):
        venv.reset(seed=[1, 2])
    with pytest.raises(ValueError, match=r"reset options are not supported, got \['reset_mask'\]"):
        venv.reset(options={"reset_mask": np.ones(2, bool)})
    with pytest.raises(ValueError, match=r"action has shape \(2, 6\), expected \(2, 7\)"):
        venv.step(np.zeros((2, 6), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        venv.step(np.zeros((2, 7), np.int32))
    venv.close()
    venv.close()
