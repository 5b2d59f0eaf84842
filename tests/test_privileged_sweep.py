"""A privileged run's trained policy evaluated at several β: at β = 0 it is the deployed policy
on the plain task, episode for episode; the script reports every level; bad input is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from console import run

from robolearn.checkpoint import load_config, load_policy, resolve_checkpoint
from robolearn.cli import rl as rl_cli
from robolearn.curricula.privileged_sweep import success_by_beta
from robolearn.envs.vec_env import VecEnv
from robolearn.eval.evaluate import evaluate

TINY_LIFT_FLAT = (
    "num_envs=4",
    "rl.critic_hidden_dims=[16]",
    "rl.scratch.hidden_dims=[16]",
    "rl.scratch.reset_samples=16",
    "progress=false",
    "threads=1",
    "task=lift_flat",
    "task.episode_length=10",
    "task.reward_type=dense",  # returns that tell the levels apart
    "rl.num_steps=10",
    "total_env_steps=80",  # 2 iterations
    "eval.num_episodes=0",
)


def train(run_dir: Path, *overrides: str) -> Path:
    assert run(rl_cli, *TINY_LIFT_FLAT, *overrides, f"hydra.run.dir={run_dir}") == 0
    return run_dir


@pytest.fixture(scope="module")
def privileged_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("sweep") / "privileged", "curriculum=privileged")


def test_at_beta_zero_the_trained_policy_is_the_deployed_one(privileged_run):
    results = success_by_beta(privileged_run, [1.0, 0.0], 6, num_envs=3, seed=7)
    task = load_config(resolve_checkpoint(privileged_run))["task"]  # the run's reward and length
    task = {k: v for k, v in task.items() if k != "name"}
    plain = VecEnv("lift_flat", 3, seed=7, task_overrides={**task, "terminate_on_success": True})
    deployed = evaluate(load_policy(privileged_run), plain, 6, seed=7, progress=False)
    at_zero = results[0.0]
    assert at_zero.episode_return.tolist() == deployed.episode_return.tolist()
    assert at_zero.episode_success.tolist() == deployed.episode_success.tolist()
    # At β = 1 the privileged outputs act on the box: the same episodes earn something else.
    assert results[1.0].episode_return.tolist() != deployed.episode_return.tolist()


def test_the_script_reports_each_level(privileged_run, load_script, tmp_path, capsys):
    script = load_script("privilege_sweep")
    out = tmp_path / "sweep.json"
    args = [str(privileged_run), "--betas", "0.5", "0", "--episodes", "3", "--num-envs", "3"]
    script.main([*args, "--out", str(out)])
    summary = json.loads(out.read_text())
    assert [level["beta"] for level in summary["levels"]] == [0.5, 0.0]
    assert all(level["n_episodes"] == 3 for level in summary["levels"])
    rows = capsys.readouterr().out.splitlines()
    assert rows[-2].startswith("| 0.5 | ") and rows[-1].startswith("| 0 | ")


def test_bad_input_is_named(privileged_run, load_script, tmp_path):
    with pytest.raises(ValueError, match=r"levels in \[0, 1\], got \[1.5\]"):
        success_by_beta(privileged_run, [1.5], 2)
    plain_run = train(tmp_path / "plain")
    script = load_script("privilege_sweep")
    with pytest.raises(
        SystemExit, match=r"not a privileged-action run: its curricula are \['none'\]"
    ):
        script.main([str(plain_run), "--episodes", "2"])
