"""Single-cube tasks (``push``, ``lift``, ``pick_place``): observations, rewards, success, reset
distribution, termination, and their Hydra configs."""

import pytest
import torch
import yaml

from robolearn.assets import conf_dir
from robolearn.envs import VecEnv
from robolearn.tasks import TASKS, make_task
from robolearn.utils.rotations import quat_to_mat, yaw_of_mat

N = 16
TASK_NAMES = ("push", "lift", "pick_place")
TARGET_TASKS = ("push", "pick_place")


def make(name: str, **overrides) -> VecEnv:
    return VecEnv(name, N, seed=0, task_overrides=overrides)


def place_cube(env: VecEnv, pos: torch.Tensor) -> None:
    """Put the cube at rest at ``pos`` (N, 3), unrotated, in every world."""
    adr, dof = env.task.obj_qpos["cube"], env.task.obj_dof["cube"]
    env.sim.qpos[:, adr : adr + 3] = pos.to(env.sim.qpos)
    env.sim.qpos[:, adr + 3 : adr + 7] = torch.tensor([1.0, 0, 0, 0]).to(env.sim.qpos)
    env.sim.qvel[:, dof : dof + 6] = 0
    env.sim.forward()


@pytest.mark.parametrize("name", TASK_NAMES)
def test_observations_match_spec(name):
    env = make(name)
    obs, _ = env.reset(seed=1)
    assert set(obs) == {"policy", "critic"}
    for group, terms in obs.items():
        assert tuple(terms) == env.spec.groups[group]
        for key, value in terms.items():
            assert value.shape == (N, *env.spec.terms[key].shape), key
            assert value.dtype == torch.float32, key
            assert torch.isfinite(value).all(), key
    policy, critic = env.spec.groups["policy"], env.spec.groups["critic"]
    for term in ("cube_pos", "cube_quat", "cube_to_eef"):
        assert term in policy
    assert ("target_pos" in policy) == (name in TARGET_TASKS)
    assert set(policy) < set(critic)
    for privileged in ("joint_vel", "pad_contact", "domain_params", "cube_linvel", "cube_angvel"):
        assert privileged in critic
    torch.testing.assert_close(
        obs["policy"]["cube_to_eef"], obs["policy"]["cube_pos"] - obs["policy"]["eef_pos"]
    )


@pytest.mark.parametrize("name", TASK_NAMES)
def test_no_success_at_reset_and_reward_types(name):
    dense = make(name)
    dense.reset(seed=2)
    assert not dense.task.success().any()
    reward = dense.task.reward()
    assert reward.shape == (N,) and torch.isfinite(reward).all()
    assert ((reward >= 0) & (reward <= 1)).all()
    sparse = make(name, reward_type="sparse")
    sparse.reset(seed=2)
    assert torch.equal(sparse.task.reward(), torch.zeros(N))


@pytest.mark.parametrize("name", TARGET_TASKS)
def test_cube_at_target_succeeds_and_pays_most(name):
    env = make(name)
    env.reset(seed=3)
    before = env.task.dense_reward(env.task.success())
    place_cube(env, env.task.target)
    assert env.task.success().all()
    assert (env.task.dense_reward(env.task.success()) > before).all()
    sparse = make(name, reward_type="sparse")
    sparse.reset(seed=3)
    place_cube(sparse, sparse.task.target)
    assert torch.equal(sparse.task.reward(), torch.ones(N))


def test_push_needs_the_cube_on_the_table():
    env = make("push")
    env.reset(seed=4)
    place_cube(env, env.task.target + torch.tensor([0.0, 0.0, 0.05]))
    assert not env.task.success().any()


def test_lift_needs_a_grasp_not_just_height():
    env = make("lift")
    env.reset(seed=5)
    cube = env.task.cube_pos()
    place_cube(env, cube + torch.tensor([0.0, 0.0, 2 * env.task.cfg.lift_height]))
    assert (env.task.cube_height() > env.task.cfg.lift_height).all()
    assert not env.task.success().any()


@pytest.mark.parametrize("name", TASK_NAMES)
def test_reset_is_randomised_within_range(name):
    env = make(name)
    env.reset(seed=6)
    cfg, task = env.task.cfg, env.task
    cube = task.cube_pos()
    low, high = torch.tensor(cfg.cube_xy_low), torch.tensor(cfg.cube_xy_high)
    assert ((cube[:, :2] >= low - 1e-4) & (cube[:, :2] <= high + 1e-4)).all()
    assert (cube[:, :2].std(0) > 0.02).all()
    torch.testing.assert_close(cube[:, 2], torch.full((N,), cfg.cube_half_size), atol=2e-3, rtol=0)
    yaw = yaw_of_mat(quat_to_mat(task.object_quat("cube")))
    assert (yaw.abs() <= cfg.cube_max_yaw + 1e-3).all() and yaw.std() > 0.1
    # A second reset draws new poses.
    env.reset()
    assert not torch.allclose(task.cube_pos(), cube)


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("push", {"min_target_distance": 0.6}, "no target at least min_target_distance=0.6"),
        ("stack", {"min_separation": 0.5}, "no cube_b at least min_separation=0.5"),
    ],
)
def test_rejection_sampling_with_no_room_is_an_error_not_a_hang(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        VecEnv(name, 4, task_overrides=overrides)


@pytest.mark.parametrize("name", TARGET_TASKS)
def test_targets_are_randomised_within_range(name):
    env = VecEnv(name, 64, seed=0)
    env.reset(seed=7)
    cfg, task = env.task.cfg, env.task
    target = task.target
    low, high = torch.tensor(cfg.target_xy_low), torch.tensor(cfg.target_xy_high)
    assert ((target[:, :2] >= low - 1e-6) & (target[:, :2] <= high + 1e-6)).all()
    assert (target[:, :2].std(0) > 0.05).all()
    assert ((task.cube_pos() - target).norm(dim=-1) >= cfg.min_target_distance - 1e-3).all()
    torch.testing.assert_close(env.sim.mocap_pos[:, task.marker_mocap["target"]].float(), target)
    height = target[:, 2] - cfg.cube_half_size
    on_table = height.abs() < 1e-6
    if name == "push":
        assert on_table.all()
    else:  # pick_place: some targets on the table, the rest in the air within range
        assert on_table.any() and not on_table.all()
        lifted = height[~on_table]
        assert ((lifted >= cfg.target_height[0] - 1e-6) & (lifted <= cfg.target_height[1])).all()


@pytest.mark.parametrize("name", TASK_NAMES)
@pytest.mark.parametrize("on_fall", (True, False))
def test_terminated_when_the_cube_falls_off_the_table_unless_told_not_to(name, on_fall):
    env = make(name, terminate_on_fall=on_fall)
    env.reset(seed=8)
    assert not env.task.terminated().any()
    fallen = env.task.cube_pos().clone()
    fallen[: N // 2, 2] = -0.5
    place_cube(env, fallen)
    assert torch.equal(env.task.terminated(), (torch.arange(N) < N // 2) & on_fall)


@pytest.mark.parametrize("name", ("reach", *TASK_NAMES))
def test_hydra_config_matches_task_defaults(name):
    """``conf/task/<name>.yaml`` names the task first and restates its defaults, so that a run
    without overrides is the task as documented in code."""
    with open(conf_dir() / "task" / f"{name}.yaml") as f:
        data = yaml.safe_load(f)
    assert next(iter(data)) == "name" and data.pop("name") == name
    assert make_task(name, data).cfg == TASKS[name].Config()


def test_a_control_period_that_is_not_a_whole_number_of_physics_steps_is_refused():
    make_task("reach", {"control_freq": 25.0})  # 8 steps of 5 ms
    with pytest.raises(ValueError, match="must be a whole number of physics steps"):
        make_task("reach", {"control_freq": 30.0})  # 6.67 steps: it would run at 28.6 Hz
