"""Privileged-action curriculum (METHODS.md §5): schedule, virtual force, relaxed table."""

import pytest
import torch

from robolearn.curricula.privileged import (
    PrivilegedCurriculum,
    PrivilegeSchedule,
    PrivilegeScheduleConfig,
)
from robolearn.curricula.privileged_env import PrivilegedActionConfig, PrivilegedActionWrapper
from robolearn.envs.vec_env import VecEnv


def make_env(task: str = "lift", n: int = 3, episode_length: int = 8) -> VecEnv:
    return VecEnv(task, n, seed=0, task_overrides={"episode_length": episode_length})


def test_beta_zero_is_bit_identical_to_the_plain_env():
    plain = make_env(episode_length=25)
    wrapped = PrivilegedActionWrapper(make_env(episode_length=25), beta=1.0)
    wrapped.set_privilege(0.0)  # relaxed and then restored: nothing of it may remain
    gen = torch.Generator().manual_seed(0)
    lowest = 1.0
    for _ in range(60):  # over two episodes: autoresets included
        action = torch.rand(3, wrapped.action_dim, generator=gen) * 2 - 1
        action[:, 2] = -1.0  # down into the table, where the relaxed contacts would differ
        out_plain = plain.step(action[:, : plain.action_dim].clone())
        out_wrapped = wrapped.step(action)
        for a, b in zip(out_plain[1:4], out_wrapped[1:4], strict=True):
            assert torch.equal(a, b)
        for group in out_plain[0]:
            for key in out_plain[0][group]:
                assert torch.equal(out_plain[0][group][key], out_wrapped[0][group][key]), key
        assert torch.equal(plain.sim.qpos, wrapped.sim.qpos)
        assert torch.equal(plain.sim.qvel, wrapped.sim.qvel)
        assert torch.equal(out_wrapped[4]["virtual_wrench"], torch.zeros(3, 6, dtype=torch.float64))
        lowest = min(lowest, plain.task.eef_pos()[:, 2].min().item())
    assert torch.equal(plain.sim.xfrc_applied, wrapped.sim.xfrc_applied)
    assert lowest < 0.015  # the fingers did press on the table


def test_virtual_force_is_bounded_by_beta_times_max_force():
    cfg = PrivilegedActionConfig(max_force=4.0, max_torque=0.5)
    env = PrivilegedActionWrapper(make_env(), cfg, beta=0.3)
    assert env.privileged_dim == 6
    gen = torch.Generator().manual_seed(1)
    privileged = torch.randn(1000, 6, generator=gen) * 3  # many beyond the [-1, 1] bounds
    wrench = env.virtual_wrench(privileged)
    limit = torch.tensor([0.3 * 4.0] * 3 + [0.3 * 0.5] * 3, dtype=wrench.dtype)
    assert (wrench.abs() <= limit + 1e-12).all()
    assert torch.allclose(wrench.abs().amax(0), limit)  # saturated actions reach the bound
    env.set_privilege(0.0)
    assert torch.equal(env.virtual_wrench(privileged), torch.zeros(1000, 6, dtype=wrench.dtype))


def test_the_virtual_force_lifts_the_object_and_nothing_at_beta_zero():
    heights = {}
    for beta in (0.0, 1.0):
        env = PrivilegedActionWrapper(make_env("lift_flat", 2, 50), beta=beta)
        start = env.task.object_pos("box")[:, 2].clone()
        action = torch.zeros(2, env.action_dim)
        action[:, -1] = 1.0  # full force up: 5 N against the box's 1.5 N weight
        for _ in range(5):
            env.step(action)
        heights[beta] = env.task.object_pos("box")[:, 2] - start
    assert (heights[0.0].abs() < 1e-3).all()
    assert (heights[1.0] > 0.05).all()


def test_relaxed_table_lets_the_gripper_sink_in_proportion_to_beta():
    lowest = {}
    for beta in (0.0, 0.5, 1.0):
        env = PrivilegedActionWrapper(make_env("lift", 1, 100), beta=beta)
        action = torch.zeros(1, env.action_dim)
        action[:, 2] = -1.0  # push straight down, beside the cube
        lowest[beta] = min(env.step(action)[0]["policy"]["eef_pos"][0, 2].item() for _ in range(40))
    assert lowest[0.0] > 0.0  # the table holds the fingers
    assert lowest[1.0] < lowest[0.5] < lowest[0.0] - 0.02


def test_reward_depends_on_the_state_not_on_beta():
    privileged = PrivilegedActionWrapper(make_env("lift_flat", 2, 50), beta=1.0)
    plain = make_env("lift_flat", 2, 50)
    action = torch.zeros(2, privileged.action_dim)
    action[:, -1] = 1.0
    for _ in range(4):
        _, reward, *_ = privileged.step(action)
    assert (privileged.task.lift_progress() > 0).all()  # the force did change the state
    # The same state in an env without privileges is paid the same.
    plain.sim.qpos[:] = privileged.sim.qpos
    plain.sim.qvel[:] = privileged.sim.qvel
    plain.sim.forward()
    assert torch.equal(plain.task.reward(), reward)


def test_specs_and_bad_input():
    env = PrivilegedActionWrapper(make_env(n=2))
    a = env.deploy_action_dim
    assert env.deploy_spec.action.dim == a and env.spec.action.dim == a + 3 == env.action_dim
    assert env.spec.extras["privileged_action_dim"] == 3
    assert env.num_envs == 2 and env.domain_param_names  # the rest is the env's
    with pytest.raises(ValueError, match=rf"expected \(2, {a + 3}\)"):
        env.step(torch.zeros(2, a))
    with pytest.raises(ValueError, match="no object body"):
        PrivilegedActionWrapper(make_env("reach", 1))
    with pytest.raises(ValueError, match="privilege level must be in"):
        env.set_privilege(1.5)


def test_beta_never_increases_and_stops_at_zero():
    cfg = PrivilegeScheduleConfig(init_beta=1.0, beta_step=0.3, success_threshold=0.7, window=20)
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        schedule = PrivilegeSchedule(cfg)
        rate = torch.rand(1, generator=gen).item()  # some runs succeed often, some rarely
        betas = [schedule.beta]
        for _ in range(100):
            n = int(torch.randint(0, 15, (1,), generator=gen))
            schedule.record(torch.rand(n, generator=gen) < rate)
            schedule.step()
            betas.append(schedule.beta)
        changes = [(a, b) for a, b in zip(betas, betas[1:], strict=False) if a != b]
        assert all(0 <= b <= 1 for b in betas)
        assert all(b < a for a, b in changes)  # never up ...
        assert all(a - b == pytest.approx(0.3) or b == 0 for a, b in changes)  # ... by one step
    schedule = PrivilegeSchedule(cfg)
    for _ in range(10):
        schedule.record([True] * 20)
        schedule.step()
    assert schedule.beta == 0.0  # 1 -> 0.7 -> 0.4 -> 0.1 -> 0, and there it stays
    schedule = PrivilegeSchedule(cfg)
    schedule.record([True] * 19)
    assert not schedule.step()  # the window is not full yet


def test_beta_steps_down_after_max_level_env_steps_without_successes():
    cfg = PrivilegeScheduleConfig(beta_step=0.5, window=4, max_level_env_steps=100)
    schedule = PrivilegeSchedule(cfg)
    schedule.record([False] * 4)
    schedule.count_env_steps(99)
    assert not schedule.step() and schedule.beta == 1.0
    schedule.count_env_steps(1)
    assert schedule.step() and schedule.beta == 0.5 and schedule.level_env_steps == 0
    schedule.record([True] * 4)  # a pass restarts the level's clock too
    schedule.count_env_steps(60)
    assert schedule.step() and schedule.beta == 0.0 and schedule.level_env_steps == 0
    schedule.count_env_steps(1000)
    assert not schedule.step() and schedule.beta == 0.0
    with pytest.raises(ValueError, match="max_level_env_steps must be >= 1"):
        PrivilegeSchedule(PrivilegeScheduleConfig(max_level_env_steps=0))


def test_curriculum_lowers_the_wrapped_env_beta_and_resumes():
    env = PrivilegedActionWrapper(make_env(n=2, episode_length=2), beta=0.0)
    cfg = PrivilegeScheduleConfig(init_beta=0.5, beta_step=0.25, success_threshold=0.5, window=4)
    curriculum = PrivilegedCurriculum(env, cfg)
    assert env.beta == 0.5
    ended = {"episode": {"success": torch.tensor([True, False])}}
    for _ in range(2):  # within one episode length of the start: not counted
        curriculum.observe(ended)
    assert curriculum.update({})["privileged/success_rate"] == 0.0 and env.beta == 0.5
    for _ in range(2):
        curriculum.observe(ended)
    logged = curriculum.update({})
    assert logged == {"privileged/beta": 0.25, "privileged/success_rate": 0.5}
    assert env.beta == 0.25
    for _ in range(2):  # just after the drop: not counted either
        curriculum.observe({"episode": {"success": torch.tensor([True, True])}})
    assert curriculum.update({})["privileged/success_rate"] == 0.0
    curriculum.observe(ended)
    state = curriculum.state_dict()

    other_env = PrivilegedActionWrapper(make_env(n=2, episode_length=2))
    other = PrivilegedCurriculum(other_env, cfg)
    other.load_state_dict(state)
    assert other.beta == other_env.beta == 0.25
    assert other.schedule.level_env_steps == curriculum.schedule.level_env_steps == 3 * 2
    assert other.settling == 0 and other.schedule.success_rate == 0.5
