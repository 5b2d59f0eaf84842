"""BatchedSim (cpu backend): state views, reset, per-world model fields, external wrenches."""

import numpy as np
import pytest
import torch

from robolearn.sim.batched import make_sim
from robolearn.sim.scene import HOME_QPOS, ObjectSpec, SceneConfig, build_model


@pytest.fixture(scope="module")
def model():
    return build_model(SceneConfig(objects=(ObjectSpec("cube", default_pos=(0.5, 0.1, 0.025)),)))


def cube_z(sim, model):
    return sim.xpos[:, model.body("cube").id, 2]


def test_home_keyframe_and_views(model):
    sim = make_sim(model, 3)
    assert sim.qpos.shape == (3, model.nq) and sim.qpos.dtype == torch.float64
    assert sim.xmat.shape == (3, model.nbody, 3, 3)
    np.testing.assert_allclose(sim.qpos[:, :9].numpy(), np.tile(HOME_QPOS, (3, 1)))
    tcp = sim.site_xpos[:, model.site("tcp").id]
    assert torch.all(tcp[:, 2] > 0.1), "home TCP should hover above the table"
    # gripper points down
    assert torch.allclose(
        sim.site_xmat[:, model.site("tcp").id, 2, 2],
        torch.tensor(-1.0, dtype=torch.float64),
        atol=1e-6,
    )


def test_step_holds_home_posture_and_cube_rests(model):
    sim = make_sim(model, 2)
    sim.step(100)
    assert torch.allclose(
        sim.qpos[:, :7], torch.tensor(HOME_QPOS[:7], dtype=torch.float64), atol=2e-3
    )
    assert torch.allclose(cube_z(sim, model), torch.tensor(0.025, dtype=torch.float64), atol=2e-3)


def test_reset_writes_only_selected_worlds(model):
    sim = make_sim(model, 4)
    sim.step(10)
    before = sim.qpos.clone()
    qpos = before[[1, 3]].clone()
    adr = model.joint("cube_joint").qposadr[0]
    qpos[:, adr : adr + 3] = torch.tensor([[0.4, -0.1, 0.2], [0.6, 0.1, 0.3]], dtype=torch.float64)
    sim.reset(torch.tensor([1, 3]), qpos=qpos)
    assert torch.equal(sim.qpos[[0, 2]], before[[0, 2]])
    assert torch.allclose(
        sim.xpos[[1, 3], model.body("cube").id], qpos[:, adr : adr + 3]
    )  # forward ran
    with pytest.raises(ValueError, match="qpos has shape"):
        sim.reset(torch.tensor([0]), qpos=torch.zeros(2, model.nq))


def test_per_world_friction_changes_sliding(model):
    sim = make_sim(model, 2)
    friction = sim.model_field("geom_friction")
    geom = model.geom("cube").id
    friction[0, geom, 0] = 0.05
    friction[1, geom, 0] = 2.0
    sim.set_model_field("geom_friction", None, friction)
    sim.step(20)
    push = torch.zeros(2, 6, dtype=torch.float64)
    push[:, 0] = 0.5  # 0.5 N along x: above the slippery cube's friction, below the sticky one's
    sim.apply_force("cube", push)
    start = sim.xpos[:, model.body("cube").id, 0].clone()
    sim.step(100)
    moved = sim.xpos[:, model.body("cube").id, 0] - start
    assert moved[0] > 0.05 and abs(moved[1]) < 1e-3


def test_apply_force_lifts_only_targeted_world(model):
    sim = make_sim(model, 2)
    mass = model.body("cube").mass[0]
    wrench = torch.tensor([0, 0, 3 * 9.81 * mass, 0, 0, 0], dtype=torch.float64)
    sim.apply_force("cube", wrench, env_ids=torch.tensor([1]))
    sim.step(60)
    z = cube_z(sim, model)
    assert z[0] < 0.03 and z[1] > 0.1
    with pytest.raises(ValueError, match="wrench has shape"):
        sim.apply_force("cube", torch.zeros(3))


def test_mass_change_updates_derived_constants(model):
    sim = make_sim(model, 2)
    body = model.body("cube").id
    mass = sim.model_field("body_mass")
    mass[1, body] *= 10
    sim.set_model_field("body_mass", None, mass)
    # A constant upward force that floats the light cube leaves the heavy one on the table.
    wrench = torch.tensor([0, 0, 2 * 9.81 * model.body_mass[body], 0, 0, 0], dtype=torch.float64)
    sim.apply_force("cube", wrench)
    sim.step(60)
    z = cube_z(sim, model)
    assert z[0] > 0.1 and z[1] < 0.03


def test_geom_size_change_updates_collision(model):
    sim = make_sim(model, 2)
    geom = model.geom("cube").id
    size = sim.model_field("geom_size")
    size[1, geom] *= 2
    sim.set_model_field("geom_size", None, size)
    qpos = sim.qpos.clone()
    adr = model.joint("cube_joint").qposadr[0]
    qpos[:, adr + 2] = 0.1
    sim.reset(None, qpos=qpos)
    sim.step(200)
    z = cube_z(sim, model)
    assert abs(z[0].item() - 0.025) < 2e-3 and abs(z[1].item() - 0.05) < 2e-3


def test_bad_input_errors(model):
    with pytest.raises(ValueError, match="num_worlds must be a positive int"):
        make_sim(model, 0)
    with pytest.raises(ValueError, match="unknown sim backend 'mjx'"):
        make_sim(model, 1, backend="mjx")
    sim = make_sim(model, 1)
    with pytest.raises(KeyError, match="cannot be set per world"):
        sim.set_model_field("geom_rgba", None, torch.zeros(1, model.ngeom, 4))
    with pytest.raises(ValueError, match="expected"):
        sim.set_model_field("geom_friction", None, torch.zeros(2, model.ngeom, 3))


def test_divergence_is_reported(model):
    sim = make_sim(model, 3)
    sim.step(5)
    sim.qvel[1, :7] = 1e12
    diverged = sim.step(5)
    assert diverged.tolist() == [False, True, False]
    assert not sim.step(5).any()
