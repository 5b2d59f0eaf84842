"""Evaluation: per-env action queues with receding horizon, unbiased episode counting, reports."""

from __future__ import annotations

import importlib.util
import json
import logging
import math

import pytest
import torch

from robolearn.envs.vec_env import VecEnv
from robolearn.eval import ChunkedPolicyRunner, evaluate
from robolearn.eval import video as video_module
from robolearn.eval.evaluate import _EpisodeTally
from robolearn.experts import make_expert
from robolearn.policies import PolicyConfig
from robolearn.spec import ActionSpec, ObsSpec, TermSpec
from robolearn.utils.stats import wilson_interval

SPY_SPEC = ObsSpec(terms={"x": TermSpec((1,))}, groups={"policy": ("x",)}, action=ActionSpec(dim=1))


class SpyPolicy:
    """Records every ``predict_action`` window; chunk step h of an env whose newest observation
    is x holds the action ``100 * x + h``, so executed actions show which plan they came from."""

    def __init__(self, n_obs_steps: int, horizon: int, n_action_steps: int):
        self.cfg = PolicyConfig(n_obs_steps, horizon, n_action_steps)
        self.spec, self.obs_keys = SPY_SPEC, ("x",)
        self.windows: list[torch.Tensor] = []

    def predict_action(self, obs):
        self.windows.append(obs["x"][..., 0].clone())
        newest = obs["x"][:, -1:, :]  # (B, 1, 1)
        return 100 * newest + torch.arange(self.cfg.horizon, dtype=torch.float32)[:, None]

    def reset(self):
        pass


def x_at(t: int, n: int = 3) -> dict[str, torch.Tensor]:
    """Observation of env i at step t: 10 * i + t."""
    return {"x": (10 * torch.arange(n) + t).float()[:, None]}


def test_runner_replans_only_envs_whose_queue_ran_dry():
    policy = SpyPolicy(n_obs_steps=1, horizon=4, n_action_steps=2)
    runner = ChunkedPolicyRunner(policy, num_envs=3, device="cpu")
    actions = [runner.act(x_at(0))]
    runner.reset(torch.tensor([1]))  # env 1 ends its episode after one step
    actions += [runner.act(x_at(t)) for t in (1, 2, 3)]
    assert [len(w) for w in policy.windows] == [3, 1, 2, 1]
    # env 0 executes two actions of each plan (made at t=0 and t=2); env 1 re-plans at t=1, t=3.
    assert [a[0, 0].item() for a in actions] == [0, 1, 200, 201]
    assert [a[1, 0].item() for a in actions] == [1000, 1100, 1101, 1300]


def test_runner_ensembles_every_live_chunk_with_act_weights():
    policy = SpyPolicy(n_obs_steps=1, horizon=4, n_action_steps=2)
    runner = ChunkedPolicyRunner(policy, num_envs=3, device="cpu", chunking="ensemble")
    actions = [runner.act(x_at(0))]
    runner.reset(torch.tensor([1]))  # env 1 starts a new episode after one step
    actions += [runner.act(x_at(t)) for t in range(1, 7)]
    assert [len(w) for w in policy.windows] == [3] * 7  # every world plans every step

    def expected(t: int, first: int, m: float = 0.01) -> float:
        """Env 0's action at step t: chunk s predicts 100 * s + (t - s) for step t, the chunks
        of steps max(first, t - 3)..t are live, weights exp(-m * i) from the oldest."""
        starts = range(max(first, t - 3), t + 1)
        w = [math.exp(-m * i) for i in range(len(starts))]
        return sum(wi * (100 * s + t - s) for wi, s in zip(w, starts, strict=True)) / sum(w)

    env0 = [a[0, 0].item() for a in actions]
    assert env0 == pytest.approx([expected(t, 0) for t in range(7)])
    env1 = [a[1, 0].item() - 1000 for a in actions]  # env 1's observations are 10 + t
    assert env1[0] == 0 and env1[1] == pytest.approx(100)  # the old episode's chunk is gone
    assert env1[2:] == pytest.approx([expected(t, 1) for t in range(2, 7)])
    with pytest.raises(ValueError, match="chunking 'bogus'"):
        ChunkedPolicyRunner(policy, num_envs=1, device="cpu", chunking="bogus")


def test_runner_history_is_padded_with_the_first_observation():
    policy = SpyPolicy(n_obs_steps=2, horizon=1, n_action_steps=1)
    runner = ChunkedPolicyRunner(policy, num_envs=3, device="cpu")
    runner.act(x_at(0))
    runner.act(x_at(1))
    runner.reset(torch.tensor([1]))
    runner.act(x_at(2))
    first, second, third = policy.windows
    assert first.tolist() == [[0, 0], [10, 10], [20, 20]]
    assert second.tolist() == [[0, 1], [10, 11], [20, 21]]
    assert third.tolist() == [[1, 2], [12, 12], [21, 22]]


def test_tally_counts_episodes_that_started_first():
    # 2 worlds, 3 episodes: world 0's episodes are short, world 1's long. The counted episodes
    # are the first three to start, so world 1's long one counts although three short ones
    # finish before it.
    tally = _EpisodeTally(num_envs=2, n=3)

    def finish(world: int, length: int) -> None:
        tally.record(
            {
                "env_ids": torch.tensor([world]),
                "success": torch.tensor([length < 50]),
                "return": torch.tensor([1.0]),
                "length": torch.tensor([length]),
            }
        )

    for _ in range(3):
        finish(0, 10)
    assert not tally.done
    finish(1, 60)
    assert tally.done
    assert sorted(tally.length.tolist()) == [10, 10, 60]
    assert tally.success.sum() == 2


class ExpertPolicy:
    """The scripted ``reach`` expert behind the policy interface: it plans a chunk that repeats
    the expert's action for the newest observation."""

    def __init__(self, env: VecEnv):
        self.cfg = PolicyConfig(n_obs_steps=2, horizon=2, n_action_steps=1)
        self.spec, self.obs_keys = env.spec, env.spec.groups["policy"]
        self.expert = make_expert("reach", env.num_envs, env.device, env.task.cfg.control)

    def predict_action(self, obs):
        action = self.expert({k: v[:, -1] for k, v in obs.items()})
        return action[:, None].expand(-1, self.cfg.horizon, -1)

    def reset(self):
        pass


def test_evaluate_reach_with_expert(tmp_path, caplog):
    env = VecEnv("reach", 6, task_overrides={"terminate_on_success": True})
    video = tmp_path / "eval.mp4"
    with caplog.at_level(logging.WARNING):
        result = evaluate(
            ExpertPolicy(env), env, 10, seed=0, video=video, video_episodes=2, progress=False
        )
    assert result.n_episodes == 10 and len(result.episode_success) == 10
    assert result.success_rate >= 0.9
    assert result.ci95 == wilson_interval(result.successes, 10)
    assert result.ci95[0] < result.success_rate <= result.ci95[1]
    assert 0 < result.mean_length < env.max_episode_length
    assert (result.episode_length < env.max_episode_length).sum() == result.successes

    info = json.loads(result.write_eval_info(tmp_path).read_text())
    assert info["n_episodes"] == 10 and len(info["episode_return"]) == 10
    assert info["ci95"] == list(result.ci95) and info["task"] == "reach"

    if result.video is None:
        assert "video skipped" in caplog.text
    else:
        assert video.stat().st_size > 0 and not list(tmp_path.glob(".*.tmp*"))


def test_evaluate_refuses_a_policy_for_another_spec():
    env = VecEnv("reach", 1)
    with pytest.raises(
        ValueError,
        match="the policy reads observation 'x', which is not in the env's `policy` group",
    ):
        evaluate(SpyPolicy(1, 1, 1), env, 1, progress=False)


def test_evaluate_without_renderer_skips_video_with_a_message(tmp_path, caplog, monkeypatch):
    def no_gl(*args, **kwargs):
        raise RuntimeError("no OpenGL here")

    monkeypatch.setattr(video_module.mujoco, "Renderer", no_gl)
    env = VecEnv("reach", 2, task_overrides={"terminate_on_success": True})
    with caplog.at_level(logging.WARNING):
        result = evaluate(ExpertPolicy(env), env, 2, video=tmp_path / "v.mp4", progress=False)
    assert result.video is None and result.n_episodes == 2
    # Without the encoder package the recorder gives up before it tries to render.
    reason = (
        "no OpenGL backend"
        if importlib.util.find_spec("imageio_ffmpeg")
        else "needs imageio[ffmpeg]"
    )
    assert "video skipped: " in caplog.text and reason in caplog.text
    assert not list(tmp_path.iterdir())
