"""``stack`` and ``lift_flat``: observations, rewards, success, reset distribution, and that the
flat box really cannot be grasped where it lies."""

import pytest
import torch

from robolearn.envs import VecEnv
from robolearn.experts import make_expert
from robolearn.experts.base import ScriptedExpert
from robolearn.tasks.control import FINGER_OPEN

N = 8
TASKS = ("stack", "lift_flat")


def make(name: str, **overrides) -> VecEnv:
    return VecEnv(name, N, seed=0, task_overrides=overrides)


def place(env: VecEnv, name: str, pos: torch.Tensor) -> None:
    """Put an object at rest at ``pos`` (N, 3), unrotated, in every world."""
    adr = env.task.obj_qpos[name]
    env.sim.qpos[:, adr : adr + 3] = pos.to(env.sim.qpos)
    env.sim.qpos[:, adr + 3 : adr + 7] = torch.tensor([1.0, 0, 0, 0]).to(env.sim.qpos)
    dof = env.task.obj_dof[name]
    env.sim.qvel[:, dof : dof + 6] = 0
    env.sim.forward()


@pytest.mark.parametrize("name", TASKS)
def test_observations_match_spec(name):
    env = make(name)
    obs, _ = env.reset(seed=1)
    spec = env.spec
    assert set(obs) == {"policy", "critic"}
    for group, terms in obs.items():
        assert tuple(terms) == spec.groups[group]
        for key, value in terms.items():
            assert value.shape == (N, *spec.terms[key].shape), key
            assert value.dtype == torch.float32, key
            assert torch.isfinite(value).all(), key
    # The critic sees everything the policy sees plus privileged state.
    assert set(spec.groups["policy"]) < set(spec.groups["critic"])
    for privileged in ("joint_vel", "pad_contact", "domain_params"):
        assert privileged in spec.groups["critic"]


def test_policy_terms_name_the_objects():
    stack = make("stack").spec.groups["policy"]
    for term in ("cube_a_pos", "cube_a_quat", "cube_b_pos", "cube_b_quat", "cube_a_to_eef"):
        assert term in stack
    flat = make("lift_flat").spec.groups["policy"]
    for term in ("box_pos", "box_quat", "box_to_eef", "table_edge_y"):
        assert term in flat


@pytest.mark.parametrize("name", TASKS)
def test_rewards_and_no_success_at_reset(name):
    env = make(name)
    env.reset(seed=2)
    task = env.task
    assert not task.success().any()
    dense = task.dense_reward(task.success())
    assert dense.shape == (N,) and torch.isfinite(dense).all() and (dense >= 0).all()
    sparse = make(name, reward_type="sparse")
    sparse.reset(seed=2)
    assert torch.equal(sparse.task.reward(), torch.zeros(N))


def test_stack_reset_is_randomised_within_range():
    env = make("stack")
    env.reset(seed=3)
    cfg, task = env.task.cfg, env.task
    low, high = torch.tensor(cfg.xy_low), torch.tensor(cfg.xy_high)
    a, b = task.object_pos("cube_a"), task.object_pos("cube_b")
    for pos, half in ((a, cfg.cube_a_half_size), (b, cfg.cube_b_half_size)):
        assert ((pos[:, :2] >= low - 1e-4) & (pos[:, :2] <= high + 1e-4)).all()
        torch.testing.assert_close(pos[:, 2], torch.full((N,), half), atol=2e-3, rtol=0)
        assert (pos[:, :2].std(0) > 0.01).all()
    assert ((a - b)[:, :2].norm(dim=-1) >= cfg.min_separation - 1e-4).all()


def test_stack_success_means_a_resting_on_b():
    env = make("stack", reward_type="dense")
    env.reset(seed=4)
    task, cfg = env.task, env.task.cfg
    at_reset = task.dense_reward(task.success())
    b = task.object_pos("cube_b")
    on_top = b + torch.tensor([0.0, 0.0, cfg.cube_a_half_size + cfg.cube_b_half_size])
    place(env, "cube_a", on_top)
    assert task.success().all()
    stacked = task.dense_reward(task.success())
    assert (stacked == 2.0).all() and (stacked > at_reset).all()
    # Hovering above B, or beside it, is not stacked.
    place(env, "cube_a", on_top + torch.tensor([0.0, 0.0, 0.03]))
    assert not task.success().any()
    place(env, "cube_a", on_top + torch.tensor([cfg.cube_b_half_size + 0.005, 0.0, 0.0]))
    assert not task.success().any()


def test_lift_flat_reset_is_randomised_within_range_and_off_the_edge():
    env = make("lift_flat")
    env.reset(seed=5)
    cfg, box = env.task.cfg, env.task.object_pos("box")
    low, high = torch.tensor(cfg.xy_low), torch.tensor(cfg.xy_high)
    assert ((box[:, :2] >= low - 1e-4) & (box[:, :2] <= high + 1e-4)).all()
    assert (box[:, :2].std(0) > 0.005).all()
    torch.testing.assert_close(box[:, 2], torch.full((N,), cfg.box_half_size[2]), atol=2e-3, rtol=0)
    # Every corner starts on the table: nothing overhangs before the robot pushes.
    reach = (cfg.box_half_size[0] ** 2 + cfg.box_half_size[1] ** 2) ** 0.5
    assert (box[:, 1] - reach > cfg.table_edge_y).all()


def test_lift_flat_box_is_wider_than_the_open_gripper():
    cfg = make("lift_flat").task.cfg
    assert 2 * min(cfg.box_half_size[:2]) > 2 * FINGER_OPEN
    assert 2 * cfg.box_half_size[2] < 2 * FINGER_OPEN  # but thin enough to grasp across


class TopDownGrasp(ScriptedExpert):
    """Open above the box's centre, descend onto it, close, lift: what works for a cube."""

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        box, eef = obs["box_pos"], obs["eef_pos"]
        up = torch.tensor([0.0, 0.0, 1.0])
        grip = box + 0.005 * up  # fingertips just above the table beside a 2 cm thick box
        lifted = torch.cat([eef[:, :2], torch.full_like(eef[:, 2:], 0.2)], dim=-1)
        goal = self.by_phase([box + 0.08 * up, grip, grip, lifted])
        done = self.by_phase(
            [
                (goal - eef).norm(dim=-1) < 0.01,
                self.timer >= 8,
                self.timer >= 5,
                torch.zeros(len(eef), dtype=torch.bool),
            ]
        )
        yaw = torch.zeros(len(eef))
        action = self.action(
            self.translate(eef, goal, gain=0.8, max_speed=0.5),
            self.rotate(obs["eef_quat"], self.down_with_yaw(yaw)),
            torch.tensor([-1.0, -1.0, 1.0, 1.0])[self.phase],
        )
        self.advance(done)
        return action


def run_top_down_grasp(env: VecEnv) -> torch.Tensor:
    """Box heights (N,) after :class:`TopDownGrasp` has closed and lifted for a while."""
    obs, _ = env.reset(seed=6)
    expert = TopDownGrasp(N, env.device)
    for _ in range(40):
        obs, _, terminated, _, _ = env.step(expert(obs["policy"]))
        assert not terminated.any()
    assert (expert.phase == 3).all()  # the script ran to its lift
    return env.task.object_pos("box")[:, 2]


def test_lift_flat_cannot_be_grasped_from_above_where_it_lies():
    # The same script lifts a box narrow enough to fit between the fingers ...
    narrow = make("lift_flat", box_half_size=(0.02, 0.02, 0.01))
    assert (run_top_down_grasp(narrow) > narrow.task.cfg.lift_height).all()
    # ... but its fingers land on top of the default box and close on nothing.
    env = make("lift_flat")
    rest_z = env.task.cfg.box_half_size[2]
    assert (run_top_down_grasp(env) < rest_z + 0.01).all()
    assert not env.task.grasped("box").any()
    assert (env.task.gripper_qpos().sum(-1) < 0.005).all()


def test_lift_flat_success_and_reward_stages():
    env = make("lift_flat", terminate_on_success=False)
    env.reset(seed=7)
    task, cfg = env.task, env.task.cfg
    box = task.object_pos("box")
    at_reset = task.dense_reward(task.success())
    assert (task.lift_progress() == 0).all() and (at_reset <= 1.0).all()  # only the reach term
    # A box in the air that the gripper does not hold (thrown) pays the lift term, and no success.
    place(env, "box", box + torch.tensor([0.0, 0.0, cfg.lift_height + 0.02]))
    assert not task.success().any() and (task.lift_progress() == 1).all()
    assert (task.dense_reward(task.success()) < 3.0).all()
    # The scripted expert's held lift pays lift (2) + success (5) on top of reach.
    expert = make_expert("lift_flat", N, env.device, cfg.control)
    obs, _ = env.reset(seed=7)
    succeeded = torch.zeros(N, dtype=torch.bool)
    for _ in range(cfg.episode_length - 1):
        obs, reward, *_ = env.step(expert(obs["policy"]))
        held = task.success()
        assert (task.pinched("box")[held]).all() and (reward[held] >= 7.0).all()
        succeeded |= held
    assert succeeded.float().mean() >= 0.75


def test_a_box_is_pinched_only_between_the_pads(monkeypatch):
    env = make("lift_flat")
    env.reset(seed=0)
    task = env.task
    monkeypatch.setattr(task, "pad_contact", lambda: torch.ones(N, 2))  # both pads touch
    pads = torch.stack([task.sim.site_xpos[:, s].float() for s in task.pad_sites])
    between = pads.mean(0)
    place(env, "box", between)  # the segment between the pads crosses the box
    assert task.pinched("box").all()
    place(env, "box", between + torch.tensor([0.0, 0.0, 0.04]))  # resting on the fingers
    assert not task.pinched("box").any() and task.grasped("box").all()
    place(env, "box", between + torch.tensor([0.0, 0.0, -0.04]))  # hanging below them
    assert not task.pinched("box").any()
    monkeypatch.setattr(task, "pad_contact", lambda: torch.tensor([[1.0, 0.0]]).repeat(N, 1))
    place(env, "box", between)
    assert not task.pinched("box").any()  # one pad alone holds nothing


@pytest.mark.parametrize(("reach_to", "expected"), [("surface", 0.05), ("center", 0.0860233)])
def test_lift_flat_reach_is_measured_to_the_box_surface_in_its_own_frame(reach_to, expected):
    # A box long in x turned 90 degrees about z: its long side now runs along world y.
    env = make("lift_flat", box_half_size=(0.08, 0.04, 0.01), reach_to=reach_to)
    env.reset(seed=0)
    task = env.task
    place(env, "box", task.eef_pos() - torch.tensor([0.07, 0.0, 0.05]))  # TCP minus box centre
    adr = task.obj_qpos["box"]
    yaw_quat = [2**-0.5, 0.0, 0.0, 2**-0.5]
    env.sim.qpos[:, adr + 3 : adr + 7] = torch.tensor(yaw_quat).to(env.sim.qpos)
    env.sim.forward()
    # Surface: 3 cm beyond the 4 cm half-width, 4 cm above the top. Centre: |(0.07, 0, 0.05)|.
    distance = task.reach_distance()
    torch.testing.assert_close(distance, torch.full((N,), expected), atol=1e-5, rtol=0)


def test_lift_flat_can_pay_the_lift_only_while_the_box_is_pinched(monkeypatch):
    env = make("lift_flat", terminate_on_success=False, lift_paid="pinched")
    env.reset(seed=7)
    task = env.task
    place(env, "box", task.object_pos("box") + torch.tensor([0.0, 0.0, task.cfg.lift_height]))
    assert (task.lift_progress() == 1).all()
    reach_only = task.dense_reward(task.success())
    assert (reach_only <= 1.0).all()  # thrown, not pinched: no lift term
    monkeypatch.setattr(task, "pinched", lambda name: torch.ones(N, dtype=torch.bool))
    torch.testing.assert_close(task.dense_reward(task.success()), reach_only + 2.0 + 5.0)


@pytest.mark.parametrize(("key", "value"), [("reach_to", "middle"), ("lift_paid", "grasped")])
def test_lift_flat_rejects_an_unknown_reward_option(key, value):
    with pytest.raises(ValueError, match=key):
        make("lift_flat", **{key: value})
