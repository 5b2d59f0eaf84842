"""``robolearn-rl`` end to end, in-process and tiny: fine-tune a BC checkpoint, evaluate the result
with ``robolearn-eval``, resume; bad input (spec mismatch, NaN from the env, a diverging run)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from console import run
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from robolearn.checkpoint import load_policy, load_training_state, resolve_checkpoint
from robolearn.cli import eval as eval_cli
from robolearn.cli import rl as rl_cli
from robolearn.cli import train as train_cli
from robolearn.data.collect import collect

FAST = (
    "task=reach",
    "num_envs=16",
    "rl.num_steps=8",
    "rl.critic_hidden_dims=[32,32]",
    "rl.critic_warmup_iters=1",
    "progress=false",
    "threads=1",
    "eval.num_episodes=4",
    "eval.num_envs=4",
)


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def bc_checkpoint(tmp_path_factory) -> Path:
    """A tiny gaussian-head BC policy on a few scripted ``reach`` demos (a few seconds)."""
    root = tmp_path_factory.mktemp("bc")
    data = root / "reach.hdf5"
    collect("reach", 6, data, num_envs=6, progress=False)
    status = run(
        train_cli,
        "task=reach",
        "policy=bc",
        "policy.hidden_dims=[32,32]",
        "policy.head=gaussian",
        "policy.horizon=1",
        "policy.n_action_steps=1",
        "policy.n_obs_steps=1",
        "train.steps=100",
        "train.batch_size=32",
        "train.progress=false",
        "logger=none",
        f"dataset={data}",
        f"hydra.run.dir={root / 'run'}",
    )
    assert status == 0
    return root / "run"


def test_finetune_eval_and_resume(workdir, monkeypatch, bc_checkpoint, capsys):
    run_dir = workdir / "rl"
    args = (*FAST, f"init={bc_checkpoint}", "rl.checkpoint_every=2", f"hydra.run.dir={run_dir}")
    assert run(rl_cli, *args, "total_env_steps=2000") == 0
    out = capsys.readouterr().out
    assert "reach: success" in out and "95% CI" in out
    ckpt = resolve_checkpoint(run_dir)
    state = load_training_state(ckpt)
    iters = state["step"]
    assert iters == 16 and state["env_steps"] == 16 * 8 * 16  # ceil(2000 / 128) iterations
    assert {"actor", "critic", "reference", "optimizer"} <= set(state)
    assert (run_dir / "eval_info.json").is_file()
    policy = load_policy(run_dir)
    assert policy.name == "bc" and policy.cfg.n_action_steps == 1
    bc = load_policy(bc_checkpoint)
    changed = any(
        not torch.equal(a, b) for a, b in zip(policy.parameters(), bc.parameters(), strict=True)
    )
    assert changed

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    want = {
        "rollout/success_rate",
        "rollout/return",
        "rollout/episode_length",
        "train/kl_to_bc",
        "train/approx_kl",
        "train/entropy",
        "train/value_loss",
        "train/surrogate_loss",
        "train/lr",
        "perf/env_steps_per_s",
    }
    assert want <= tags, want - tags

    eval_dir = workdir / "eval"
    status = run(
        eval_cli,
        f"checkpoint={run_dir}",
        "num_episodes=4",
        "num_envs=4",
        "progress=false",
        f"hydra.run.dir={eval_dir}",
    )
    assert status == 0
    assert json.loads((eval_dir / "eval_info.json").read_text())["task"] == "reach"

    # resume: continues at the saved iteration, env steps and λ
    resumed = workdir / "rl2"
    status = run(
        rl_cli,
        f"resume={run_dir}",
        "total_env_steps=3000",
        "eval.num_episodes=0",
        "progress=false",
        f"hydra.run.dir={resumed}",
    )
    assert status == 0
    state2 = load_training_state(resumed)
    assert state2["step"] == 24 and state2["env_steps"] == 24 * 128
    assert state2["demo_reg_coef"] < state["demo_reg_coef"]
    names = sorted(p.name for p in (resumed / "checkpoints").iterdir())
    assert names[0] == "iter_000018"  # the first new checkpoint follows the resumed iteration
    # a resumed run refuses changes to what defines it
    status = run(rl_cli, f"resume={run_dir}", "rl.gamma=0.5", f"hydra.run.dir={workdir / 'x'}")
    assert status == 2
    assert "cannot override 'rl.gamma'" in capsys.readouterr().err


def test_init_with_mismatched_spec_names_the_key(workdir, monkeypatch, bc_checkpoint, capsys):
    args = (*FAST, "task=lift", f"init={bc_checkpoint}", f"hydra.run.dir={workdir / 'r'}")
    assert run(rl_cli, *args) == 2
    err = capsys.readouterr().err
    assert "robolearn-rl: error:" in err and "target_pos" in err
    assert not (workdir / "r" / "checkpoints").exists()


def test_nan_reward_stops_with_env_ids_and_a_loadable_checkpoint(
    workdir, monkeypatch, bc_checkpoint, capsys
):
    from robolearn.tasks.reach import Reach

    calls = {"n": 0}
    real = Reach.reward  # sparse or dense, whichever the run uses

    def poisoned(self, success=None):
        r = real(self, success)
        calls["n"] += 1
        if calls["n"] > 16:  # one call per env step: after two iterations of 8 steps
            r = r.clone()
            r[[3, 11]] = float("nan")
        return r

    monkeypatch.setattr(Reach, "reward", poisoned)
    run_dir = workdir / "rl"
    args = (*FAST, f"init={bc_checkpoint}", "total_env_steps=10000", f"hydra.run.dir={run_dir}")
    assert run(rl_cli, *args) == 3
    err = capsys.readouterr().err
    assert "non-finite" in err and "reward" in err and "[3, 11]" in err
    state = load_training_state(run_dir)
    assert state["step"] == 2  # the two iterations before the poisoned rollout
    policy = load_policy(run_dir)
    assert all(torch.isfinite(p).all() for p in policy.parameters())


def test_kl_blowup_stops_cleanly(workdir, monkeypatch, bc_checkpoint, capsys):
    run_dir = workdir / "rl"
    args = (
        *FAST,
        f"init={bc_checkpoint}",
        "rl.critic_warmup_iters=0",
        "rl.kl_stop=1e-12",
        "rl.kl_stop_patience=2",
        "total_env_steps=10000",
        f"hydra.run.dir={run_dir}",
    )
    assert run(rl_cli, *args) == 3
    err = capsys.readouterr().err
    assert "diverging update" in err and "kl_stop" in err
    assert load_training_state(run_dir)["step"] == 2
    load_policy(run_dir)


def test_demo_bc_loss_runs(workdir, monkeypatch, bc_checkpoint):
    data = bc_checkpoint.parent / "reach.hdf5"
    args = (
        *FAST,
        f"init={bc_checkpoint}",
        "total_env_steps=500",
        "eval.num_episodes=0",
        f"rl.demo_dataset={data}",
        "rl.demo_bc_coef=0.5",
        "rl.demo_batch_size=8",
        "rl.critic_warmup_iters=0",
        "logger=tensorboard",
        f"hydra.run.dir={workdir / 'r'}",
    )
    assert run(rl_cli, *args) == 0
    events = EventAccumulator(str(workdir / "r" / "tensorboard"))
    events.Reload()
    assert "train/demo_bc_loss" in events.Tags()["scalars"]


def test_from_scratch_default_run_dir(workdir, monkeypatch):
    args = (
        *FAST,
        "total_env_steps=300",
        "eval.num_episodes=0",
        "rl.scratch.hidden_dims=[16]",
        "rl.scratch.reset_samples=32",
        "logger=none",
    )
    assert run(rl_cli, *args) == 0
    [run_dir] = workdir.glob("outputs/*/*_ppo_reach")
    policy = load_policy(run_dir)
    assert policy.name == "bc" and policy.cfg.head == "gaussian"


def test_bad_config_is_rejected(workdir, monkeypatch, capsys):
    assert run(rl_cli, *FAST, "rl.schedule=cosine") == 2
    assert "rl.schedule" in capsys.readouterr().err
    assert run(rl_cli, *FAST, "init=/nonexistent/ckpt") == 2
    assert "does not exist" in capsys.readouterr().err
    # Settings that would fail, or silently do nothing, only once training is under way:
    for override, message in [
        ("rl.value_clip=0", "rl.value_clip must be positive"),
        ("rl.max_grad_norm=0", "rl.max_grad_norm must be positive"),
        ("rl.warm_start_lr=0", "rl.warm_start_lr must be positive or null"),
        ("rl.lr_min=0.1", "rl.lr_min (0.1) > rl.lr_max"),
        ("rl.demo_reg_min=0.5", "rl.demo_reg_min (0.5) > rl.demo_reg_coef"),
        ("rl.num_minibatches=1000", "samples per rollout"),
    ]:
        assert run(rl_cli, *FAST, override) == 2, override
        assert message in capsys.readouterr().err, override


def test_rl_trains_on_sparse_success_that_ends_episodes(workdir):
    from hydra import compose, initialize_config_dir

    from robolearn.assets import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        default = rl_cli.parse_config(rl_cli.plain_config(compose("rl", overrides=list(FAST))))
        dense = rl_cli.parse_config(
            rl_cli.plain_config(compose("rl", overrides=[*FAST, "task.reward_type=dense"]))
        )
    assert default.task_overrides["reward_type"] == "sparse"
    assert default.task_overrides["terminate_on_success"] is True
    assert dense.task_overrides["reward_type"] == "dense"


def test_a_dense_reward_in_episodes_that_end_at_success_is_warned_about(workdir, caplog):
    from hydra import compose, initialize_config_dir

    from robolearn.assets import conf_dir

    for overrides, warned in (
        ([], False),  # sparse success that ends episodes: the default
        (["task.reward_type=dense"], True),
        (["task.reward_type=dense", "task.terminate_on_success=false"], False),
    ):
        caplog.clear()
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            config = rl_cli.plain_config(compose("rl", overrides=[*FAST, *overrides]))
        with caplog.at_level(logging.WARNING, logger="robolearn.cli.rl"):
            rl_cli.parse_config(config)
        messages = [r.getMessage() for r in caplog.records if "forfeits" in r.getMessage()]
        assert len(messages) == int(warned), (overrides, messages)


def test_a_resumed_run_is_named_after_the_run_it_continues(workdir):
    """Hydra names the run dir before the resumed config is read: not after the default task."""
    from hydra import compose, initialize_config_dir

    from robolearn.assets import conf_dir

    run = "/runs/2026-12-04/08-00-00_ppo_stack"
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        names = [
            compose("rl", overrides=overrides, return_hydra_config=True)
            for overrides in (
                [],
                ["task=stack"],
                [f"resume={run}"],
                [f"resume={run}/checkpoints/iter_000010/"],
            )
        ]
        dirs = [OmegaConf.to_container(c.hydra.run, resolve=True)["dir"] for c in names]
    assert [c.name for c in names] == [
        "ppo_lift",
        "ppo_stack",
        "resume_08-00-00_ppo_stack",
        "resume_08-00-00_ppo_stack",
    ]
    assert dirs[2].endswith("_resume_08-00-00_ppo_stack")
