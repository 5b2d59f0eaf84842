"""Action modes: the IK moves the TCP where it is told, joint deltas move joints, gripper maps."""

import pytest
import torch

from robolearn.sim.batched import make_sim
from robolearn.sim.scene import SceneConfig, build_model
from robolearn.tasks.control import ArmController, ControlConfig, action_dim


@pytest.fixture(scope="module")
def model():
    return build_model(SceneConfig())


def run(ctrl: ArmController, action: torch.Tensor, steps: int = 10) -> None:
    for _ in range(steps):
        ctrl.apply(action)
        ctrl.sim.step(10)


def test_jacobian_matches_finite_differences(model):
    sim = make_sim(model, 1)
    ctrl = ArmController(sim, ControlConfig())
    jac = ctrl.jacobian()[0]
    q0 = sim.qpos.clone()
    tcp0 = sim.site_xpos[0, ctrl.tcp].clone()
    eps = 1e-6
    for j in range(7):
        sim.qpos[:] = q0
        sim.qpos[0, ctrl.qpos_idx[j]] += eps
        sim.forward()
        numeric = (sim.site_xpos[0, ctrl.tcp] - tcp0) / eps
        assert torch.allclose(jac[:3, j], numeric, atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_ee_translation_moves_tcp_along_axis(model, axis):
    sim = make_sim(model, 2)
    ctrl = ArmController(sim, ControlConfig())
    start = sim.site_xpos[:, ctrl.tcp].clone()
    action = torch.zeros(2, 7)
    action[0, axis] = 0.5  # +2.5 cm per step
    action[1, axis] = -0.5
    run(ctrl, action, steps=4)
    run(ctrl, torch.zeros(2, 7), steps=5)  # settle
    moved = sim.site_xpos[:, ctrl.tcp] - start
    assert torch.allclose(moved[:, axis], torch.tensor([0.1, -0.1], dtype=moved.dtype), atol=0.01)
    off_axis = [i for i in range(3) if i != axis]
    assert moved[:, off_axis].abs().max() < 0.01


def test_ee_rotation_turns_about_world_z(model):
    sim = make_sim(model, 1)
    ctrl = ArmController(sim, ControlConfig())
    action = torch.zeros(1, 7)
    action[0, 5] = 0.4  # 0.1 rad per step about z
    start = sim.site_xpos[:, ctrl.tcp].clone()
    run(ctrl, action, steps=5)
    run(ctrl, torch.zeros(1, 7), steps=5)  # settle: the servos lag their targets by ~one step
    x_axis = sim.site_xmat[0, ctrl.tcp, :, 0]
    assert abs(torch.atan2(x_axis[1], x_axis[0]).item() - 0.5) < 0.05
    assert (sim.site_xpos[:, ctrl.tcp] - start).norm() < 0.01
    assert sim.site_xmat[0, ctrl.tcp, 2, 2] < -0.99  # still pointing down


def test_zero_rotation_scale_ignores_the_rotation_dims(model):
    """``max_rot_delta=0``: a position-only arm (Meta-World's xyz + gripper). Random actions
    turn the hand only by the IK's drift, a fraction of what they turn it by default."""

    def turned_by_random_actions(max_rot_delta: float) -> torch.Tensor:
        sim = make_sim(model, 8)
        ctrl = ArmController(sim, ControlConfig(max_rot_delta=max_rot_delta))
        start = sim.site_xmat[:, ctrl.tcp].clone()
        gen = torch.Generator().manual_seed(0)
        for _ in range(40):
            run(ctrl, torch.rand(8, 7, generator=gen) * 2 - 1, steps=1)
        relative = start.transpose(1, 2) @ sim.site_xmat[:, ctrl.tcp]
        return torch.arccos(((relative.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1))

    held, free = turned_by_random_actions(0.0), turned_by_random_actions(0.25)
    assert held.max() < 0.25  # rad, over 40 full-scale steps
    assert free.mean() > 3 * held.mean()


def test_joint_delta_and_gripper(model):
    sim = make_sim(model, 1)
    ctrl = ArmController(sim, ControlConfig(action_mode="joint_delta"))
    assert ctrl.dim == 8
    q0 = ctrl.arm_qpos().clone()
    action = torch.zeros(1, 8)
    action[0, 0] = 1.0
    action[0, 7] = 1.0  # close
    run(ctrl, action, steps=3)
    run(ctrl, action * torch.tensor([0, 0, 0, 0, 0, 0, 0, 1.0]), steps=5)  # settle
    assert abs((ctrl.arm_qpos() - q0)[0, 0].item() - 0.3) < 0.01
    assert sim.qpos[0, ctrl.finger_qpos_idx].max() < 0.005
    action[0, 7] = -1.0
    run(ctrl, action * torch.tensor([0, 0, 0, 0, 0, 0, 0, 1.0]), steps=3)
    assert sim.qpos[0, ctrl.finger_qpos_idx].min() > 0.035


def test_targets_respect_joint_limits(model):
    sim = make_sim(model, 1)
    ctrl = ArmController(sim, ControlConfig(action_mode="joint_delta"))
    run(ctrl, torch.ones(1, 8), steps=60)
    q = ctrl.arm_qpos()[0]
    assert torch.all(q <= ctrl.q_high + 0.02) and torch.all(q >= ctrl.q_low - 0.02)


def test_unknown_action_mode():
    with pytest.raises(ValueError, match="unknown action_mode 'torque'"):
        action_dim("torque")
