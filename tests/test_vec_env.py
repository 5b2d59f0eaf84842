"""VecEnv: same-step autoreset, final_obs, time-limit truncation, episode stats, bad input."""

import pytest
import torch

from robolearn.envs import VecEnv

N = 4


def make(episode_length: int = 5, **overrides) -> VecEnv:
    return VecEnv("reach", N, task_overrides={"episode_length": episode_length, **overrides})


def zeros(env: VecEnv) -> torch.Tensor:
    return torch.zeros(env.num_envs, env.action_dim)


def test_truncates_at_time_limit_with_same_step_autoreset():
    env = make(episode_length=5)
    obs, _ = env.reset(seed=0)
    target = obs["policy"]["target_pos"].clone()
    rewards, successes = [], []
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(zeros(env))
        rewards.append(reward)
        successes.append(info["success"])
        assert not terminated.any()
        if t < 4:
            assert not truncated.any() and "final_obs" not in info and "episode" not in info
    assert truncated.all()
    # The last observation of the finished episode is in final_obs; the returned one is the
    # first of a fresh episode (new target, zero elapsed steps).
    final = info["final_obs"]
    assert set(final) == set(obs) == {"policy", "critic"}
    assert torch.equal(final["policy"]["target_pos"], target)
    assert not torch.equal(obs["policy"]["target_pos"], target)
    assert torch.equal(obs["policy"]["target_pos"], env.task.target)
    assert (env.episode_length == 0).all()
    episode = info["episode"]
    assert episode["env_ids"].tolist() == list(range(N))
    assert (episode["length"] == 5).all()
    torch.testing.assert_close(episode["return"], torch.stack(rewards).sum(0))
    assert torch.equal(episode["success"], torch.stack(successes).any(0))


def test_only_finished_worlds_reset():
    env = make(episode_length=5)
    env.reset(seed=0)
    env.episode_length[:2] = 3  # worlds 0 and 1 reach the limit two steps early
    obs, _, _, truncated, info = env.step(zeros(env))
    before = obs["policy"]["target_pos"].clone()
    obs, _, _, truncated, info = env.step(zeros(env))
    assert truncated.tolist() == [True, True, False, False]
    assert info["episode"]["env_ids"].tolist() == [0, 1]
    assert env.episode_length.tolist() == [0, 0, 2, 2]
    # Rows of final_obs are valid for the finished worlds; the others keep their episode.
    assert torch.equal(info["final_obs"]["policy"]["target_pos"][:2], before[:2])
    assert not torch.equal(obs["policy"]["target_pos"][:2], before[:2])
    assert torch.equal(obs["policy"]["target_pos"][2:], before[2:])


def test_final_obs_is_not_overwritten_by_the_reset():
    env = make(episode_length=1)
    env.reset(seed=0)
    _, _, _, _, info = env.step(zeros(env))
    kept = {k: v.clone() for k, v in info["final_obs"]["critic"].items()}
    env.step(zeros(env))
    for name, value in info["final_obs"]["critic"].items():
        assert torch.equal(value, kept[name]), name


def test_terminated_and_truncated_are_exclusive():
    # Success everywhere (huge radius) ends the episode on its first step, which is also the
    # time limit: a termination is not a time-out, so truncated stays False.
    env = make(episode_length=1, terminate_on_success=True, success_radius=10.0)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(zeros(env))
    assert terminated.all() and not truncated.any()
    assert info["episode"]["success"].all()


def test_diverged_world_is_terminated_and_reset():
    env = make(episode_length=50)
    env.reset(seed=0)
    env.step(zeros(env))
    env.sim.qvel[1, :7] = 1e30  # blow up world 1 mid-episode
    _, reward, terminated, truncated, info = env.step(zeros(env))
    assert info["diverged"].tolist() == [False, True, False, False]
    assert terminated.tolist() == [False, True, False, False] and not truncated.any()
    assert info["episode"]["env_ids"].tolist() == [1]
    assert torch.isfinite(reward).all()
    assert env.episode_length.tolist() == [2, 0, 2, 2]


def test_a_diverged_world_never_succeeds(monkeypatch):
    """The backend resets a diverged world to the model's defaults, where a task's success test
    may well pass (push: a cube at rest on a target near its default place)."""
    env = make(episode_length=50)
    env.reset(seed=0)
    monkeypatch.setattr(env.task, "success", lambda: torch.ones(env.num_envs, dtype=torch.bool))
    env.sim.qvel[1, :7] = 1e30
    _, _, _, _, info = env.step(zeros(env))
    assert info["diverged"].tolist() == [False, True, False, False]
    assert info["success"].tolist() == [True, False, True, True]
    assert info["episode"]["env_ids"].tolist() == [1] and not info["episode"]["success"].any()


def test_reset_seed_reproduces_observations():
    env = make()
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    assert torch.equal(a["critic"]["target_pos"], b["critic"]["target_pos"])
    assert not torch.equal(a["critic"]["target_pos"], c["critic"]["target_pos"])


def test_close_twice_is_harmless():
    env = make()
    env.close()
    env.close()


@pytest.mark.parametrize(
    ("action", "error", "match"),
    [
        (torch.zeros(N, 3), ValueError, r"action has shape \(4, 3\), expected \(4, 7\)"),
        (torch.zeros(N + 1, 7), ValueError, r"action has shape \(5, 7\), expected \(4, 7\)"),
        (torch.zeros(N, 7, dtype=torch.int64), TypeError, "floating-point.*torch.int64"),
        (torch.zeros(N, 7, device="meta"), ValueError, "action is on device meta, env is on cpu"),
        ([[0.0] * 7] * N, TypeError, "must be a torch.Tensor.*got list"),
    ],
)
def test_bad_actions_are_rejected(action, error, match):
    env = make()
    with pytest.raises(error, match=match):
        env.step(action)


def test_nan_action_names_the_env_ids():
    env = make()
    action = zeros(env)
    action[1, 0] = float("nan")
    action[3, 6] = float("inf")
    with pytest.raises(ValueError, match=r"NaN/Inf for env ids \[1, 3\]"):
        env.step(action)


@pytest.mark.parametrize("num_envs", [0, -3, 2.0, True])
def test_bad_num_envs(num_envs):
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        VecEnv("reach", num_envs)


def test_unknown_task_backend_and_config_key():
    with pytest.raises(ValueError, match=r"unknown task 'reech'; choose from \[.*'reach'"):
        VecEnv("reech", 2)
    with pytest.raises(
        ValueError, match=r"unknown sim backend 'gpu'; choose from \('cpu', 'warp'\)"
    ):
        VecEnv("reach", 2, backend="gpu")
    with pytest.raises(ValueError, match=r"unknown config key 'task.episode_len' for ReachConfig"):
        VecEnv("reach", 2, task_overrides={"episode_len": 5})
    with pytest.raises(ValueError, match=r"config key 'task.episode_length' must be an integer"):
        VecEnv("reach", 2, task_overrides={"episode_length": "long"})
