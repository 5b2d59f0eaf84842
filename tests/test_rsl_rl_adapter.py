"""rsl_rl adapter: the VecEnv contract, and rsl_rl's own OnPolicyRunner (PPO) training on reach."""

import importlib
import math
import sys

import pytest
import torch

pytest.importorskip("rsl_rl")

from rsl_rl.runners import OnPolicyRunner  # noqa: E402

from robolearn.envs import VecEnv  # noqa: E402
from robolearn.envs.rsl_rl_adapter import RslRlVecEnv  # noqa: E402

NUM_ENVS, STEPS_PER_ENV = 16, 12


def train_cfg() -> dict:
    """A small PPO setup in rsl-rl-lib 5.x's config layout (what Isaac Lab's RslRlOnPolicyRunnerCfg
    resolves to): models and algorithm by ``class_name``, ``obs_groups`` mapping rsl_rl's
    observation sets to our groups so that the critic sees privileged state."""
    return {
        "num_steps_per_env": STEPS_PER_ENV,
        "save_interval": 1,
        "obs_groups": {"actor": ["policy"], "critic": ["critic"]},
        "algorithm": {
            "class_name": "PPO",
            "num_learning_epochs": 2,
            "num_mini_batches": 2,
            "learning_rate": 1e-3,
            "schedule": "adaptive",
            "desired_kl": 0.01,
            "gamma": 0.98,
            "lam": 0.95,
            "entropy_coef": 0.005,
            "clip_param": 0.2,
            "value_loss_coef": 1.0,
            "max_grad_norm": 1.0,
            "use_clipped_value_loss": True,
        },
        "actor": {
            "class_name": "MLPModel",
            "hidden_dims": [32, 32],
            "activation": "elu",
            "obs_normalization": True,
            "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 0.5},
        },
        "critic": {
            "class_name": "MLPModel",
            "hidden_dims": [32, 32],
            "activation": "elu",
            "obs_normalization": True,
        },
    }


def make(episode_length: int = 10) -> RslRlVecEnv:
    return RslRlVecEnv(VecEnv("reach", NUM_ENVS, task_overrides={"episode_length": episode_length}))


def test_vec_env_contract():
    env = make(episode_length=3)
    spec = env.env.spec
    obs = env.get_observations()
    assert set(obs.keys()) == {"policy", "critic"} and obs.batch_size == torch.Size([NUM_ENVS])
    for group in ("policy", "critic"):
        assert obs[group].shape == (NUM_ENVS, spec.group_dim(group))
        assert obs[group].dtype == torch.float32
    assert (env.num_actions, env.max_episode_length) == (7, 3)
    assert env.cfg["episode_length"] == 3

    env.episode_length_buf = torch.tensor(
        [2] * 4 + [0] * (NUM_ENVS - 4)
    )  # as init_at_random_ep_len
    obs, reward, dones, extras = env.step(torch.zeros(NUM_ENVS, 7))
    assert obs is env.get_observations() and reward.shape == (NUM_ENVS,)
    assert dones.dtype == torch.long and dones.tolist() == [1] * 4 + [0] * (NUM_ENVS - 4)
    assert torch.equal(extras["time_outs"], dones.bool())  # reach only ends by time-out here
    assert extras["log"]["Episode/success"].shape == (4,)
    assert env.episode_length_buf.tolist() == [0] * 4 + [1] * (NUM_ENVS - 4)

    _, _, dones, extras = env.step(torch.zeros(NUM_ENVS, 7))
    assert not dones.any() and "log" not in extras
    with pytest.raises(ValueError, match="unknown observation group 'privileged'"):
        RslRlVecEnv(env.env, groups=("policy", "privileged"))


def test_terminations_are_not_time_outs():
    # Success everywhere ends every episode on its first step, which is also its time limit.
    overrides = {"episode_length": 1, "terminate_on_success": True, "success_radius": 10.0}
    env = RslRlVecEnv(VecEnv("reach", 2, task_overrides=overrides))
    _, _, dones, extras = env.step(torch.zeros(2, 7))
    assert dones.tolist() == [1, 1] and not extras["time_outs"].any()
    assert extras["log"]["Episode/success"].tolist() == [1.0, 1.0]


def test_on_policy_runner_trains_saves_and_loads(tmp_path):
    env = make()
    runner = OnPolicyRunner(env, train_cfg(), log_dir=str(tmp_path), device="cpu")
    runner.learn(num_learning_iterations=3, init_at_random_ep_len=True)

    returns = list(runner.logger.rewbuffer)
    assert returns and all(math.isfinite(r) for r in returns)
    assert {p.name for p in tmp_path.glob("model_*.pt")} == {
        "model_0.pt",
        "model_1.pt",
        "model_2.pt",
    }

    obs = env.get_observations()
    actions = runner.get_inference_policy()(obs)
    assert actions.shape == (NUM_ENVS, 7) and torch.isfinite(actions).all()

    restored = OnPolicyRunner(make(), train_cfg(), log_dir=None, device="cpu")
    restored.load(str(tmp_path / "model_2.pt"))
    assert restored.current_learning_iteration == 2
    torch.testing.assert_close(restored.get_inference_policy()(obs), actions)


def test_missing_rsl_rl_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "rsl_rl.env", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "robolearn.envs.rsl_rl_adapter")
    with pytest.raises(ImportError, match=r"needs rsl-rl-lib>=3: pip install 'robolearn\[rsl\]'"):
        importlib.import_module("robolearn.envs.rsl_rl_adapter")
