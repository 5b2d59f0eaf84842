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


@pytest.mark.parametrize("per_world", ["same", "uniform"])
def test_beta_zero_is_bit_identical_to_the_plain_env(per_world):
    plain = make_env(episode_length=25)
    cfg = PrivilegedActionConfig(wrench_per_world=per_world)
    wrapped = PrivilegedActionWrapper(make_env(episode_length=25), cfg, beta=1.0)
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
    assert env.env.spec.action.dim == a and env.spec.action.dim == a + 3 == env.action_dim
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
    assert logged == {
        "privileged/beta": 0.25,
        "privileged/success_rate": 0.5,
        "privileged/table_relaxed": 1.0,  # uniform relaxation: every world at β = 0.5
    }
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
    assert other.schedule.success_rate == 0.5
    # Every episode restarts on resume: the first to end are a biased sample, not counted.
    assert other.settling == other.settle_steps == 2


def test_a_per_world_share_bounds_each_worlds_wrench_and_is_redrawn_at_its_reset():
    cfg = PrivilegedActionConfig(
        max_force=0.0, force_axes="z", max_torque=0.5, wrench_per_world="uniform"
    )
    env = PrivilegedActionWrapper(make_env("lift_flat", 64, episode_length=4), cfg, beta=0.8)
    env.reset(seed=0)
    share = env.wrench_share.clone()
    assert ((share >= 0) & (share <= 1)).all() and share.std() > 0.2  # ~U(0, 1), not one value
    saturated = env.virtual_wrench(torch.full((64, 4), 5.0))
    torch.testing.assert_close(saturated[:, 3], 0.8 * 0.5 * share)
    for _ in range(3):  # within the episode: the shares stay
        env.step(torch.zeros(64, env.action_dim))
        assert torch.equal(env.wrench_share, share)
    env.step(torch.zeros(64, env.action_dim))  # the 4th step ends every episode
    assert (env.wrench_share != share).all()
    env.reset(seed=0)  # a seeded reset repeats the shares
    assert torch.equal(env.wrench_share, share)
    with pytest.raises(ValueError, match="wrench_per_world must be 'same' or 'uniform'"):
        PrivilegedActionConfig(wrench_per_world="gaussian").validate()


def test_a_planar_force_drives_only_the_x_and_y_wrench_columns():
    cfg = PrivilegedActionConfig(max_force=2.0, force_axes="xy")
    env = PrivilegedActionWrapper(make_env(n=2), cfg, beta=0.5)
    assert env.privileged_dim == 2 and env.action_dim == env.deploy_action_dim + 2
    wrench = env.virtual_wrench(torch.tensor([[1.0, -3.0], [0.2, 0.4]]))
    expected = torch.tensor([[1.0, -1.0], [0.2, 0.4]], dtype=wrench.dtype) * 0.5 * 2.0
    assert torch.allclose(wrench[:, :2], expected)
    assert torch.equal(wrench[:, 2:], torch.zeros(2, 4, dtype=wrench.dtype))
    for bad in ("", "xx", "xw"):
        with pytest.raises(ValueError, match="force_axes must be distinct letters"):
            PrivilegedActionConfig(force_axes=bad).validate()


def place_box(env: PrivilegedActionWrapper, world: int, y: float) -> None:
    """Move lift_flat's box in one world to ``y`` (its x and z unchanged)."""
    model = env.env.model
    adr = model.jnt_qposadr[model.body("box").jntadr[0]]
    env.sim.qpos[world, adr + 1] = y
    env.sim.forward()


def test_a_relaxed_region_follows_the_object_towards_the_edge_and_shrinks_with_beta():
    cfg = PrivilegedActionConfig(max_force=0.0, relax_near_edge=0.2)
    env = PrivilegedActionWrapper(make_env("lift_flat", 2, 50), cfg, beta=0.5)
    edge = env.task.cfg.table_edge_y
    table = env.env.model.geom("table").id
    nominal = torch.as_tensor(env.env.model.geom_solref[table], dtype=torch.float64)
    relaxed = env.relaxed_table_solref()
    assert relaxed[0] < nominal[0]  # a direct solref, as soft as at beta = 1 in the uniform mode

    def table_solref() -> torch.Tensor:
        return env.sim.model_field("geom_solref")[:, table]

    place_box(env, 0, edge + 0.05)  # 5 cm from the edge: inside the 0.5 x 20 cm region
    place_box(env, 1, edge + 0.15)  # 15 cm: outside it
    assert torch.allclose(env.edge_distance(), torch.tensor([0.05, 0.15]), atol=1e-6)
    env.step(torch.zeros(2, env.action_dim))
    assert env.table_relaxed.tolist() == [True, False]
    assert torch.equal(table_solref()[0], relaxed) and torch.equal(table_solref()[1], nominal)
    place_box(env, 1, edge + 0.08)  # pushed nearer the edge: relaxed from the next step on
    env.step(torch.zeros(2, env.action_dim))
    assert env.table_relaxed.tolist() == [True, True]
    env.set_privilege(0.3)  # 6 cm: the box 8 cm from the edge is out again
    assert env.table_relaxed.tolist() == [True, False]
    assert torch.equal(table_solref()[1], nominal)
    env.set_privilege(0.0)
    assert env.table_relaxed.tolist() == [False, False]
    assert torch.equal(table_solref(), nominal.expand(2, 2))
    with pytest.raises(ValueError, match="relax_near_edge must be >= 0"):
        PrivilegedActionConfig(relax_near_edge=-0.1).validate()
