"""Curricula in ``robolearn-rl``, in-process and tiny: privileged action and the ALP-GMM teacher
composed in one run, ADS in another; each one's state survives resume and its scalars are
logged; the privileged run's export loads and evaluates on the plain task; bad input exits 2."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from console import run
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from robolearn.checkpoint import (
    load_config,
    load_policy,
    load_training_state,
    resolve_checkpoint,
)
from robolearn.cli import rl as rl_cli
from robolearn.curricula import PrivilegedActionWrapper
from robolearn.curricula.discount import ADSConfig, ADSCurriculum
from robolearn.curricula.ot_env import OTRewardEnv
from robolearn.curricula.privileged_export import deploy_policy
from robolearn.data.collect import collect
from robolearn.envs.vec_env import VecEnv
from robolearn.eval.evaluate import evaluate
from robolearn.rl.build import scratch_policy
from robolearn.rl.ppo import RLConfig, ScratchPolicyConfig

TINY = (
    "num_envs=8",
    "rl.critic_hidden_dims=[32,32]",
    "rl.scratch.hidden_dims=[32,32]",
    "rl.scratch.reset_samples=64",
    "progress=false",
    "threads=1",
)
#: lift_flat with a short episode; privileged β steps down on any success, ALP-GMM fits early.
COMPOSED = (
    *TINY,
    "task=lift_flat",
    "task.episode_length=20",
    "+task.domain.object_friction=[0.5,1.5]",
    "curriculum=[privileged,alp_gmm]",
    "curriculum.privileged.schedule.window=8",
    "curriculum.privileged.schedule.success_threshold=0.01",
    "curriculum.alp_gmm.teacher.bootstrap_episodes=8",
    "curriculum.alp_gmm.teacher.fit_every=8",
    "curriculum.alp_gmm.teacher.fit_window=8",
    "curriculum.alp_gmm.teacher.max_components=3",
    "rl.num_steps=20",
    "total_env_steps=640",  # 4 iterations of 8 worlds x 20 steps: 32+ episodes
)


def scalar_tags(run_dir: Path) -> set[str]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return set(events.Tags()["scalars"])


def curriculum_state(run_dir: Path) -> dict:
    return load_training_state(resolve_checkpoint(run_dir))["callback_0"]


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_privileged_and_alp_gmm_train_export_log_and_resume(workdir, monkeypatch, capsys):
    run_dir = workdir / "composed"
    args = (*COMPOSED, "eval.num_episodes=4", "eval.num_envs=4", f"hydra.run.dir={run_dir}")
    assert run(rl_cli, *args) == 0
    assert "lift_flat: success" in capsys.readouterr().out  # evaluated on the plain task

    state = curriculum_state(run_dir)
    assert set(state) == {"privileged", "alp_gmm"}
    assert state["privileged"]["beta"] < 1.0  # successes under full privilege lowered β
    teacher = state["alp_gmm"]["teacher"]
    assert len(teacher["returns"]) >= 32
    fits = teacher["fit_episodes"]  # due points (bootstrap 8, every 8), at most one per iteration
    assert fits[0] == 8 and all(m % 8 == 0 for m in fits) and fits == sorted(set(fits))
    assert 2 <= len(fits) <= 4
    assert teacher["mixture"] is not None
    tags = scalar_tags(run_dir)
    want = {
        "curriculum/privileged/beta",
        "curriculum/privileged/success_rate",
        "curriculum/alp_gmm/episodes",
        "curriculum/alp_gmm/components",
        "curriculum/alp_gmm/mean_alp",
        "curriculum/alp_gmm/tau_mean/object_friction",
    }
    assert want <= tags, want - tags

    # The export has the plain task's action: load_policy and evaluation take it unchanged.
    plain = VecEnv("lift_flat", 2, task_overrides={"episode_length": 20})
    policy = load_policy(run_dir)
    assert policy.action_dim == plain.action_dim == 7 and "privileged_action_dim" not in (
        policy.spec.extras
    )
    result = evaluate(policy, plain, 2, progress=False)
    assert result.n_episodes == 2 and result.mean_length > 0

    # Resuming restores the curricula: with no steps left, the state saved again is the same.
    resumed = workdir / "resumed"
    assert run(rl_cli, f"resume={run_dir}", "eval.num_episodes=0", f"hydra.run.dir={resumed}") == 0
    again = curriculum_state(resumed)
    assert again["privileged"] == state["privileged"]
    for key in ("tau", "returns", "alp"):
        assert torch.equal(again["alp_gmm"]["teacher"][key], teacher[key])
    assert again["alp_gmm"]["teacher"]["fit_episodes"] == teacher["fit_episodes"]

    # The β schedule may change on resume (re-selecting the run's own curricula to reach it);
    # other curricula and the privileged action's bounds may not.
    same = ("task=lift_flat", "curriculum=[privileged,alp_gmm]")
    rescheduled = workdir / "rescheduled"
    step = "curriculum.privileged.schedule.beta_step=0.05"
    pinched = "task.lift_paid=pinched"  # and the reward may change (a reward curriculum)
    assert (
        run(rl_cli, f"resume={run_dir}", *same, step, pinched, f"hydra.run.dir={rescheduled}") == 0
    )
    saved = load_config(resolve_checkpoint(rescheduled))
    schedule = saved["curriculum"]["privileged"]["schedule"]
    assert schedule["beta_step"] == 0.05 and schedule["window"] == 8
    assert saved["task"]["lift_paid"] == "pinched" and saved["task"]["episode_length"] == 20
    assert curriculum_state(rescheduled)["privileged"] == state["privileged"]
    capsys.readouterr()
    assert run(rl_cli, f"resume={run_dir}", "curriculum=privileged", step) == 2
    assert "cannot change the curriculum of a resumed run" in capsys.readouterr().err
    assert run(rl_cli, f"resume={run_dir}", "task=lift") == 2
    assert "cannot change the task of a resumed run" in capsys.readouterr().err
    torque = "curriculum.privileged.action.max_torque=0.3"
    assert run(rl_cli, f"resume={run_dir}", *same, torque) == 2
    assert "cannot override 'curriculum.privileged.action.max_torque'" in capsys.readouterr().err

    # A pretrained (A-dim) policy cannot become a privileged (A+P) actor.
    assert run(rl_cli, *COMPOSED, f"init={run_dir}") == 2
    assert "drop init=" in capsys.readouterr().err


def test_deployed_policy_is_the_trained_one_without_the_privileged_outputs():
    env = PrivilegedActionWrapper(VecEnv("lift_flat", 4))
    cfg = RLConfig(scratch=ScratchPolicyConfig(hidden_dims=(16,), reset_samples=8))
    trained = scratch_policy(env, cfg)
    with torch.no_grad():
        trained.net[-1].weight.normal_()  # make every output row matter
    deployed = deploy_policy(trained, env.env.spec)
    assert deployed.action_dim == 7 and trained.action_dim == 10
    obs, _ = env.reset()
    window = {k: obs["policy"][k][:, None] for k in trained.obs_keys}
    with torch.no_grad():
        full, cut = trained(trained.encode(window)), deployed(deployed.encode(window))
    assert torch.equal(cut.mean, full.mean[..., :7])
    assert torch.equal(cut.stddev, full.stddev[..., :7])
    unnormalized = trained.normalizer.unnormalize("action", full.mean)[..., :7]
    assert torch.equal(deployed.normalizer.unnormalize("action", cut.mean), unnormalized)


def test_ot_rewards_go_to_whole_episodes_and_not_to_an_unfinished_one():
    env = VecEnv("reach", 2, task_overrides={"episode_length": 5})
    demos = [{"eef_pos": torch.randn(6, 3), "gripper_qpos": torch.randn(6, 2)} for _ in range(2)]
    ot = OTRewardEnv(env, ADSCurriculum(demos, horizon=5))
    ot.reset()
    for _ in range(7):  # one whole episode per world, then 2 steps of the next
        _, reward, *_ = ot.step(torch.zeros(2, 7))
        assert torch.equal(reward, torch.zeros(2))  # the task's reward is not paid
    rewards, episodes = ot.episode_rewards()
    assert rewards.shape == (7, 2) and len(episodes) == 2
    assert (rewards[:5] < 0).all() and (rewards[5:] == 0).all()
    assert all(e["eef_pos"].shape == (5, 3) for e in episodes)
    assert torch.allclose(rewards[:5, 0].sum(), torch.tensor(-10.0))  # the first episode's scale
    cube_demos = [{"cube_pos": torch.randn(6, 3)} for _ in range(2)]
    needs_cube = ADSCurriculum(cube_demos, 5, ADSConfig(obs_keys=("cube_pos",)))
    with pytest.raises(ValueError, match="task 'reach' has no observation term 'cube_pos'"):
        OTRewardEnv(env, needs_cube)


def test_ads_warns_when_episodes_can_end_early(caplog):
    demos = [{"eef_pos": torch.randn(6, 3), "gripper_qpos": torch.randn(6, 2)} for _ in range(2)]
    for task, overrides, warned in (
        ("reach", {}, None),  # terminate_on_fall is on, but reach has no object to fall
        ("reach", {"terminate_on_success": True}, "terminate_on_success"),
        ("pick_place", {}, "terminate_on_fall"),
        ("pick_place", {"terminate_on_success": True}, "terminate_on_success, terminate_on_fall"),
        ("pick_place", {"terminate_on_fall": False}, None),
    ):
        caplog.clear()
        env = VecEnv(task, 2, task_overrides={"episode_length": 5, **overrides})
        with caplog.at_level(logging.WARNING, logger="robolearn.curricula.ot_env"):
            OTRewardEnv(env, ADSCurriculum(demos, horizon=5))
        messages = [r.getMessage() for r in caplog.records]
        if warned is None:
            assert not messages
        else:
            assert len(messages) == 1 and f"({warned})" in messages[0]


@pytest.fixture(scope="module")
def pick_place_demos(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demos") / "pick_place.hdf5"
    collect("pick_place", 3, path, num_envs=3, progress=False)
    return path


def test_ads_trains_on_ot_rewards_with_its_discount_and_resumes(
    workdir, monkeypatch, pick_place_demos
):
    run_dir = workdir / "ads"
    args = (
        *TINY,
        "task=pick_place",
        "task.episode_length=30",
        "curriculum=ads",
        f"curriculum.ads.dataset={pick_place_demos}",
        "curriculum.ads.obs_keys=[eef_pos,gripper_qpos,cube_pos]",
        "curriculum.ads.sinkhorn_iterations=20",
        "rl.num_steps=30",
        "total_env_steps=720",  # 3 iterations
        "eval.num_episodes=0",
        f"hydra.run.dir={run_dir}",
    )
    assert run(rl_cli, *args) == 0
    saved = load_training_state(resolve_checkpoint(run_dir))
    state = saved["callback_0"]["ads"]
    assert state["progress"] >= 6 and state["scale"] > 0  # p starts at floor(0.2 * 30)
    # GAE ran with ADS's γ(p) = α^(1/p) for an integer p: the runner saved the last one used.
    p = math.log(0.2) / math.log(saved["gamma"])
    assert abs(p - round(p)) < 1e-6 and 6 <= round(p) <= state["progress"]
    tags = scalar_tags(run_dir)
    assert {
        "curriculum/ads/gamma",
        "curriculum/ads/progress",
        "curriculum/ads/score",
        "curriculum/ads/ot_return",
    } <= tags

    resumed = workdir / "ads_resumed"
    assert run(rl_cli, f"resume={run_dir}", f"hydra.run.dir={resumed}") == 0
    assert curriculum_state(resumed)["ads"] == state


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("task=reach", "curriculum=privileged"), "has no object body"),
        (
            ("task=lift", "curriculum=alp_gmm"),
            "every domain parameter range of this task is a point",
        ),
        (("task=pick_place", "curriculum=ads"), "ADS needs expert observations"),
        (
            (
                "task=pick_place",
                "curriculum=ads",
                "curriculum.ads.dataset={demos}",
                "rl.num_steps=7",
            ),
            "multiple of task.episode_length",
        ),
        (("curriculum=[privileged,bogus]",), "Could not load 'curriculum/bogus'"),
    ],
)
def test_a_task_lacking_what_a_curriculum_needs_exits_2(
    workdir, monkeypatch, capsys, pick_place_demos, overrides, message
):
    args = [o.format(demos=pick_place_demos) for o in overrides]
    assert run(rl_cli, *TINY, *args) == 2
    assert message in capsys.readouterr().err


def test_ads_dataset_without_the_observation_key_exits_2(workdir, monkeypatch, capsys):
    demos = workdir / "reach.hdf5"
    collect("reach", 2, demos, num_envs=2, progress=False)
    args = (*TINY, "task=pick_place", "curriculum=ads", f"curriculum.ads.dataset={demos}")
    assert run(rl_cli, *args, "curriculum.ads.obs_keys=[eef_pos,cube_pos]") == 2
    assert "missing observation key 'cube_pos'" in capsys.readouterr().err
