"""The ``warp`` backend (mujoco_warp on Warp's CPU device, and on CUDA where there is one) tracks
the ``cpu`` backend.

Both backends run the same lift-like scene (Panda, one cube, a mocap marker) in 4 worlds from the
same states under the same controls; warp computes in float32, native MuJoCo in float64.

Measured (0.5 s = 100 physics steps unless noted; largest error over worlds and steps):

* servo-driven arm motion, from joint targets or the IK controller: joint angles <= 1.6e-6 rad,
  TCP <= 5.3e-7 m, body orientations <= 2e-6; a cube dropped onto the table (with per-world mass
  and size) <= 7e-7 m, 3e-6 in qpos at the impact; per-world damping the same; grasp touch
  sensors ~2e-5 N out of ~20 N. That is float32 round-off: ``TIGHT`` = 1e-4 leaves a >30x
  margin and still catches any modelling difference (a wrong damping, mass or keyframe shows up
  at the 1e-2 level). Velocities: <= 3e-5 while in contact, 1.3e-3 m/s at the impact of a
  falling cube (``VEL`` = 1e-2).
* a cube sliding on the table under an external force: the two contact solvers agree to ~0.2%,
  so the position error grows to ~5e-4 m in 50 steps and to mm after ~0.5 s (tipping, impacts);
  ``SLIDE`` = 2e-3 m over 50 steps.
* the whole ``reach`` VecEnv (controller, observations, rewards): ~2e-6 over 30 control steps.

Warp compiles its kernels on first use (~1 min on a 2-core machine, cached under
``~/.cache/warp`` afterwards); the module-scoped fixtures make that happen once per device. Each
test runs on every device Warp offers: ``cpu`` needs Warp's bundled clang, ``cuda`` a GPU; a
device that is missing is skipped, so CI (no GPU) runs the ``cpu`` half and a GPU machine both.
"""

import functools
import math
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco_warp")

from robolearn.envs import VecEnv  # noqa: E402
from robolearn.sim.batched import DERIVED_FIELDS, STATE_FIELDS, make_sim  # noqa: E402
from robolearn.sim.scene import MarkerSpec, ObjectSpec, SceneConfig, build_model  # noqa: E402
from robolearn.tasks.control import ArmController, ControlConfig  # noqa: E402

N = 4
TIGHT = 1e-4  # rad, m: float32 round-off with a >30x margin
SLIDE = 2e-3  # m: sliding contact over 50 steps
VEL = 1e-2  # m/s, rad/s: velocities, which jump at impacts
TOUCHED_FIELDS = ("dof_damping", "geom_friction", "geom_size", "body_mass", "body_inertia")


@pytest.fixture(scope="module")
def model():
    return build_model(SceneConfig(objects=(ObjectSpec("cube"),), markers=(MarkerSpec("target"),)))


@functools.cache
def warp_devices() -> frozenset[str]:
    """Devices this Warp build can run kernels on (no clang: no ``cpu``; no GPU: no ``cuda``)."""
    import warp as wp

    wp.init()
    return frozenset(
        d.alias.split(":")[0] for d in wp.get_devices() if d.is_cuda or wp.is_cpu_available()
    )


@pytest.fixture(scope="module", params=["cpu", "cuda"])
def device(request) -> str:
    if request.param not in warp_devices():
        pytest.skip(f"Warp has no {request.param!r} device on this machine")
    return request.param


@pytest.fixture(scope="module")
def warp_sim(model, device):
    return make_sim(model, N, backend="warp", device=device)


@pytest.fixture
def sims(model, warp_sim):
    """(warp, cpu) at the home keyframe with nominal model fields; fields restored afterwards."""
    cpu = make_sim(model, N, backend="cpu")
    warp_sim.xfrc_applied.zero_()
    warp_sim.reset()
    yield warp_sim, cpu
    for name in TOUCHED_FIELDS:
        nominal = torch.as_tensor(getattr(model, name))
        warp_sim.set_model_field(name, None, nominal.expand(N, *nominal.shape).clone())


def host(x: torch.Tensor) -> torch.Tensor:
    """A warp-side tensor as float64 on the host, to compare with the ``cpu`` backend's."""
    return x.detach().double().cpu()


def max_err(warp, cpu, name, index=None) -> float:
    a, b = getattr(warp, name), getattr(cpu, name)
    if index is not None:
        a, b = a[:, index], b[:, index]
    return float((host(a) - b).abs().max())


def assert_tracks(warp, cpu, model, tol=TIGHT, where=""):
    cube = model.body("cube").id
    tcp = model.site("tcp").id
    errors = {
        "qpos": max_err(warp, cpu, "qpos"),
        "tcp": max_err(warp, cpu, "site_xpos", tcp),
        "cube": max_err(warp, cpu, "xpos", cube),
        "xmat": max_err(warp, cpu, "xmat"),
        "time": float((host(warp.time) - cpu.time).abs().max()),
    }
    bad = {k: v for k, v in errors.items() if v > tol}
    qvel = max_err(warp, cpu, "qvel")
    if qvel > VEL:
        bad["qvel"] = qvel
    assert not bad, f"{where}: warp drifted from cpu beyond {tol} (qvel {VEL}): {bad}"


def both(sims, fn):
    for sim in sims:
        fn(sim)


def test_views_are_zero_copy_float32_with_cpu_shapes(sims, device):
    warp, cpu = sims
    assert warp.dtype == torch.float32 and warp.device.type == device
    for name in STATE_FIELDS + DERIVED_FIELDS:
        view = getattr(warp, name)
        assert view.dtype == torch.float32, name
        assert view.shape == getattr(cpu, name).shape, name
        assert view.data_ptr() == getattr(warp._d, name).ptr, f"{name} is not a view"
    # A write through the view is what the next forward pass sees.
    warp.qpos[0, 0] += 0.3
    warp.forward()
    assert not torch.allclose(warp.xpos[0], warp.xpos[1])
    assert (host(warp.xpos[1:]) - cpu.xpos[1:]).abs().max() < TIGHT  # other worlds untouched


def test_reset_to_home_and_custom_state(sims, model):
    warp, cpu = sims
    assert_tracks(warp, cpu, model, where="home")
    for name in DERIVED_FIELDS:
        assert max_err(warp, cpu, name) < TIGHT, name

    g = torch.Generator().manual_seed(0)
    adr = model.joint("cube_joint").qposadr[0]
    qpos = torch.as_tensor(model.key("home").qpos).repeat(2, 1)
    qpos[:, :7] += 0.1 * (torch.rand(2, 7, generator=g, dtype=torch.float64) - 0.5)
    qpos[:, adr : adr + 3] = torch.tensor([[0.45, 0.1, 0.025], [0.55, -0.1, 0.15]])
    ctrl = torch.as_tensor(model.key("home").ctrl).repeat(2, 1)
    ctrl[:, :7] = qpos[:, :7]
    mocap = torch.tensor([[[0.4, 0.2, 0.3]], [[0.6, -0.2, 0.1]]], dtype=torch.float64)
    ids = torch.tensor([1, 3])
    both(sims, lambda s: s.step(5))
    before = warp.qpos.clone()
    both(sims, lambda s: s.reset(ids, qpos=qpos, ctrl=ctrl, mocap_pos=mocap))
    assert torch.equal(warp.qpos[[0, 2]], before[[0, 2]])  # only the reset worlds changed
    assert torch.allclose(host(warp.xpos[ids, model.body("cube").id]), qpos[:, adr : adr + 3])
    assert torch.allclose(host(warp.mocap_pos[ids]), mocap)
    assert_tracks(warp, cpu, model, where="custom reset")

    for _ in range(10):
        both(sims, lambda s: s.step(10))
    assert_tracks(warp, cpu, model, where="after 100 steps from the custom reset")


def test_joint_targets_track_cpu(sims, model):
    warp, cpu = sims
    scale = torch.linspace(0.5, 1.0, N, dtype=torch.float64)[:, None]
    home_ctrl = torch.as_tensor(model.key("home").ctrl)
    start = cpu.site_xpos[:, model.site("tcp").id].clone()
    for k in range(10):
        ctrl = home_ctrl.repeat(N, 1)
        ctrl[:, :7] += 0.3 * math.sin(0.3 * (k + 1)) * scale
        ctrl[:, 7:9] = 0.04 if k < 5 else 0.0  # fingers open, then close

        def drive(s, ctrl=ctrl):
            s.ctrl[:] = ctrl.to(s.dtype)
            s.step(10)

        both(sims, drive)
        assert_tracks(warp, cpu, model, where=f"control step {k}")
    moved = (cpu.site_xpos[:, model.site("tcp").id] - start).norm(dim=-1)
    assert (moved > 0.05).all(), "the arm should really move in this test"


def test_controller_closed_loop_tracks_cpu(sims, model):
    warp, cpu = sims
    controllers = [ArmController(s, ControlConfig()) for s in sims]
    g = torch.Generator().manual_seed(1)
    for k in range(10):
        action = 2 * torch.rand(N, 7, generator=g) - 1
        for sim, controller in zip(sims, controllers, strict=True):
            controller.apply(action.to(sim.device))
            sim.step(10)
        assert_tracks(warp, cpu, model, where=f"control step {k}")


def test_per_world_damping(sims, model):
    warp, cpu = sims
    factors = torch.tensor([1.0, 10.0, 50.0, 200.0])
    for sim in sims:
        damping = sim.model_field("dof_damping")
        assert damping.shape == (N, model.nv)
        damping[:, :7] *= factors.to(damping)[:, None]
        sim.set_model_field("dof_damping", None, damping)
        sim.reset()
        sim.ctrl[:, 0] += 0.5
    np.testing.assert_allclose(
        host(warp.model_field("dof_damping")).numpy(),
        cpu.model_field("dof_damping").numpy(),
        rtol=1e-6,
    )
    for k in range(5):
        both(sims, lambda s: s.step(10))
        assert_tracks(warp, cpu, model, where=f"control step {k}")
    moved = warp.qpos[:, 0] - float(model.key("home").qpos[0])
    assert (moved[:-1] > moved[1:]).all(), f"more damping should mean slower motion: {moved}"


def test_mass_and_size_with_derived_constants(sims, model):
    warp, cpu = sims
    geom, body = model.geom("cube").id, model.body("cube").id
    size_scale = torch.tensor([0.6, 1.0, 1.4, 1.8])
    mass_scale = torch.tensor([0.5, 1.0, 2.0, 4.0])
    for sim in sims:
        size = sim.model_field("geom_size")
        size[:, geom] *= size_scale.to(size)[:, None]
        sim.set_model_field("geom_size", None, size)
        mass = sim.model_field("body_mass")
        mass[:, body] *= mass_scale.to(mass)
        sim.set_model_field("body_mass", None, mass)
        inertia = sim.model_field("body_inertia")
        inertia[:, body] *= (mass_scale * size_scale**2).to(inertia)[:, None]
        sim.set_model_field("body_inertia", None, inertia)
    # Constants the collision detector and the constraint solver derive from these fields.
    for name in (
        "geom_rbound",
        "geom_aabb",
        "body_subtreemass",
        "body_invweight0",
        "dof_invweight0",
    ):
        np.testing.assert_allclose(
            host(warp.model_field(name)).numpy(),
            cpu.model_field(name).numpy(),
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )
    qpos = torch.as_tensor(model.key("home").qpos).repeat(N, 1)
    adr = model.joint("cube_joint").qposadr[0]
    qpos[:, adr + 2] = 0.1  # drop the cubes from 10 cm
    both(sims, lambda s: s.reset(qpos=qpos))
    for k in range(8):
        both(sims, lambda s: s.step(10))
        assert_tracks(warp, cpu, model, where=f"control step {k}")
    resting_z = host(warp.xpos[:, body, 2])
    half = 0.025 * size_scale.double()
    assert torch.allclose(resting_z, half, atol=1e-3), resting_z


def test_apply_force_and_per_world_friction(sims, model):
    warp, cpu = sims
    geom, body = model.geom("cube").id, model.body("cube").id
    for sim in sims:
        friction = sim.model_field("geom_friction")
        friction[:, geom, 0] = torch.tensor([1.0, 0.3, 0.3, 0.5]).to(friction)
        sim.set_model_field("geom_friction", None, friction)
        sim.reset()
    wrench = torch.tensor(
        [
            [0.0, 0.0, 1.5, 0.0, 0.0, 0.0],  # lifts the 0.1 kg cube (weight 0.98 N)
            [0.6, 0.0, 0.0, 0.0, 0.0, 0.0],  # slides it along x (friction 0.3 -> 0.29 N)
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.02],  # twists it about z
            [0.0, 0.6, 0.0, 0.0, 0.0, 0.0],  # slides it along y (friction 0.5 -> 0.49 N)
        ]
    )
    both(sims, lambda s: s.apply_force("cube", wrench))
    start = cpu.xpos[:, body].clone()
    for k in range(5):
        both(sims, lambda s: s.step(10))
        err = (host(warp.xpos[:, body]) - cpu.xpos[:, body]).norm(dim=-1)
        assert err[[0, 2]].max() < TIGHT, f"step {k}: free flight / twist drifted: {err}"
        assert err.max() < SLIDE, f"step {k}: sliding drifted: {err}"
    moved = host(warp.xpos[:, body]) - start
    assert moved[0, 2] > 0.05 and moved[1, 0] > 0.01 and moved[3, 1] > 0.001, moved
    both(sims, lambda s: s.apply_force("cube", torch.zeros(6)))
    assert warp.xfrc_applied.abs().max() == 0


def test_grasp_touch_sensors(sims, model):
    warp, cpu = sims
    tcp = model.site("tcp").id
    adr = model.joint("cube_joint").qposadr[0]
    qpos = torch.as_tensor(model.key("home").qpos).repeat(N, 1)
    qpos[:, adr : adr + 3] = cpu.site_xpos[:, tcp]  # cube between the open fingers

    def grasp(s):
        s.reset(qpos=qpos)
        s.ctrl[:, 7:9] = 0.0  # close

    both(sims, grasp)
    for k in range(6):
        both(sims, lambda s: s.step(10))
        assert_tracks(warp, cpu, model, where=f"control step {k}")
        assert (cpu.sensordata > 1.0).all(), "both pads should press on the cube"
        np.testing.assert_allclose(
            host(warp.sensordata).numpy(), cpu.sensordata.numpy(), rtol=1e-4, err_msg=f"step {k}"
        )


def test_divergence_is_flagged(sims):
    warp, _ = sims
    warp.qvel[0, 0] = float("nan")
    diverged = warp.step(1)
    assert diverged.tolist() == [True, False, False, False]
    warp.reset(torch.tensor([0]))
    assert torch.isfinite(warp.qpos).all()


def test_reach_vec_env_on_warp_matches_cpu(device):
    envs = [
        VecEnv("reach", N, backend="warp", device=device, seed=3),
        VecEnv("reach", N, backend="cpu", seed=3),
    ]
    assert envs[0].sim.dtype == torch.float32
    for env in envs:
        env.reset(seed=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(15):
        action = 2 * torch.rand(N, envs[0].action_dim, generator=g) - 1
        out = [env.step(action.to(env.device)) for env in envs]
        (obs_w, rew_w, *_), (obs_c, rew_c, *_) = out
        assert set(obs_w) == set(obs_c) == {"policy", "critic"}
        for group in obs_w:
            assert obs_w[group].keys() == obs_c[group].keys()
            for name, value in obs_w[group].items():
                assert value.dtype == torch.float32 and value.shape == obs_c[group][name].shape
                assert torch.isfinite(value).all(), name
                assert torch.allclose(value.cpu(), obs_c[group][name], atol=TIGHT), name
        assert rew_w.dtype == torch.float32 and torch.allclose(rew_w.cpu(), rew_c, atol=TIGHT)


def test_missing_extra_names_it(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco_warp", None)  # as if not installed
    with pytest.raises(ImportError, match=r"robolearn\[warp\]"):
        make_sim(model, 2, backend="warp", device="cpu")
