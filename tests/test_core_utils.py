"""Spec, config parsing, domain parameters and rotation helpers."""

import math
from dataclasses import dataclass, field

import pytest
import torch

from robolearn.spec import ActionSpec, ObsSpec, TermSpec
from robolearn.tasks.domain import DomainConfig, DomainParams
from robolearn.utils.config import from_dict
from robolearn.utils.files import write_text_atomic
from robolearn.utils.rotations import axis_angle_to_mat, mat_to_axis_angle, mat_to_quat, quat_to_mat


def make_spec(**terms) -> ObsSpec:
    terms = terms or {"a": TermSpec((3,)), "b": TermSpec((2,))}
    return ObsSpec(terms=terms, groups={"policy": tuple(terms)}, action=ActionSpec(dim=7))


def test_spec_roundtrip_and_differences():
    spec = make_spec()
    assert ObsSpec.from_dict(spec.to_dict()) == spec
    assert spec.group_dim("policy") == 5
    other = make_spec(a=TermSpec((4,)), c=TermSpec((1,)))
    problems = spec.differences(other)
    assert any("policy/a" in p for p in problems)
    assert any("policy/b: present here, missing there" in p for p in problems)
    assert any("policy/c: missing here" in p for p in problems)
    with pytest.raises(ValueError, match="policy/a"):
        spec.check_compatible(other, "dataset vs env")
    spec.check_compatible(make_spec(), "same")


@dataclass(frozen=True)
class Inner:
    gain: float = 1.0


@dataclass(frozen=True)
class Outer:
    steps: int = 3
    name: str = "x"
    span: tuple[float, float] = (0.0, 1.0)
    inner: Inner = field(default_factory=Inner)
    clip: float | None = None


def test_config_from_dict_coerces_and_names_bad_keys():
    cfg = from_dict(Outer, {"steps": 5, "span": [1, 2], "inner": {"gain": 2}})
    assert cfg == Outer(steps=5, span=(1.0, 2.0), inner=Inner(gain=2.0))
    with pytest.raises(ValueError, match="unknown config key 'task.inner.gian'"):
        from_dict(Outer, {"inner": {"gian": 1}}, path="task.")
    with pytest.raises(ValueError, match="'steps' must be an integer"):
        from_dict(Outer, {"steps": "many"})
    with pytest.raises(ValueError, match="'span' must have 2 entries"):
        from_dict(Outer, {"span": [1, 2, 3]})
    # Optional keys: null, or the type (a boolean is not a number, nor is a string)
    assert from_dict(Outer, {"clip": None}).clip is None
    assert from_dict(Outer, {"clip": 5}).clip == 5.0
    for bad in (True, "5"):
        with pytest.raises(ValueError, match="'clip' must be a number"):
            from_dict(Outer, {"clip": bad})


def test_domain_params_uniform_pending_and_bounds():
    gen = torch.Generator().manual_seed(0)
    cfg = DomainConfig(object_friction=(0.5, 1.5))
    params = DomainParams(cfg, 4, torch.device("cpu"), gen)
    values = params.resample(torch.arange(4))
    f = params.index("object_friction")
    assert torch.all((values[:, f] >= 0.5) & (values[:, f] <= 1.5))
    assert torch.all(values[:, params.index("object_mass_scale")] == 1.0)
    chosen = values[:2].clone()
    chosen[:, f] = torch.tensor([0.6, 1.4])
    params.set_next(torch.tensor([0, 1]), chosen)
    again = params.resample(torch.arange(4))
    assert torch.allclose(again[:2, f], torch.tensor([0.6, 1.4]))
    assert torch.allclose(
        params.resample(torch.tensor([0]))[0], params.values[0]
    )  # pending consumed
    with pytest.raises(ValueError, match="outside bounds"):
        bad = chosen.clone()
        bad[0, f] = 3.0
        params.set_next(torch.tensor([0, 1]), bad)
    with pytest.raises(ValueError, match="low 2.0 > high 1.0"):
        DomainConfig(object_friction=(2.0, 1.0)).bounds()
    with pytest.raises(ValueError, match="object_mass_scale: low 0.0; it must be > 0"):
        DomainConfig(object_mass_scale=(0.0, 1.0)).bounds()
    with pytest.raises(ValueError, match="object_friction: low -0.1; it must be >= 0"):
        DomainConfig(object_friction=(-0.1, 1.0)).bounds()
    DomainConfig(object_friction=(0.0, 1.0)).bounds()  # frictionless is a valid corner


def test_rotation_roundtrips():
    torch.manual_seed(0)
    v = torch.randn(64, 3)
    v = v / v.norm(dim=-1, keepdim=True) * torch.rand(64, 1) * (math.pi - 1e-3)
    m = axis_angle_to_mat(v)
    assert torch.allclose(m @ m.transpose(-1, -2), torch.eye(3).expand(64, 3, 3), atol=1e-5)
    assert torch.allclose(mat_to_axis_angle(m), v, atol=1e-4)
    assert torch.allclose(quat_to_mat(mat_to_quat(m)), m, atol=1e-5)
    assert torch.allclose(axis_angle_to_mat(torch.zeros(1, 3)), torch.eye(3)[None])


def test_mat_to_quat_near_half_turns():
    """A gripper pointing down is a half turn about a horizontal axis, where the quaternion's w
    vanishes; every yaw of it must survive the round trip (the signs of x and y included)."""
    yaw = torch.linspace(-math.pi, math.pi, 73)
    zero = torch.zeros_like(yaw)
    down = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    m = axis_angle_to_mat(torch.stack([zero, zero, yaw], dim=-1)) @ down
    q = mat_to_quat(m)
    assert torch.allclose(quat_to_mat(q), m, atol=1e-5)
    assert (q[:, 0] >= 0).all()


def test_write_text_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    assert write_text_atomic(path, "new") == path
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_write_text_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    import robolearn.utils.files as files

    path = tmp_path / "report.json"
    path.write_text("old")

    def fail(tmp, text):
        tmp.write_text(text[:2])  # a partial temporary, then the failure
        raise OSError("disk full")

    monkeypatch.setattr(files, "write_text_synced", fail)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
