"""Batched rotation helpers in torch. Quaternions are MuJoCo's (w, x, y, z)."""

from __future__ import annotations

import torch


def quat_to_mat(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) unit quaternions -> (..., 3, 3) rotation matrices."""
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)


def mat_to_quat(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions with w >= 0.

    Shepperd's method: solve from whichever of w, x, y, z is largest. Taking each component's
    sign from the antisymmetric part alone fails near 180° rotations, where that part vanishes;
    a gripper pointing down is such a rotation.
    """
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    s21, s02, s10 = (
        m[..., 2, 1] + m[..., 1, 2],
        m[..., 0, 2] + m[..., 2, 0],
        m[..., 1, 0] + m[..., 0, 1],
    )
    d21, d02, d10 = (
        m[..., 2, 1] - m[..., 1, 2],
        m[..., 0, 2] - m[..., 2, 0],
        m[..., 1, 0] - m[..., 0, 1],
    )
    # Each row is 4 * q_k * q for k = w, x, y, z; its k-th entry is 4 * q_k**2.
    candidates = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, d21, d02, d10], dim=-1),
            torch.stack([d21, 1 + m00 - m11 - m22, s10, s02], dim=-1),
            torch.stack([d02, s10, 1 - m00 + m11 - m22, s21], dim=-1),
            torch.stack([d10, s02, s21, 1 - m00 - m11 + m22], dim=-1),
        ],
        dim=-2,
    )
    best = torch.diagonal(candidates, dim1=-2, dim2=-1).argmax(dim=-1, keepdim=True)
    q = torch.take_along_dim(candidates, best[..., None], dim=-2).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def axis_angle_to_mat(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors (axis * angle) -> (..., 3, 3) via Rodrigues' formula."""
    angle = v.norm(dim=-1, keepdim=True).unsqueeze(-1)
    k = skew(v)
    small = angle < 1e-8
    safe = torch.where(small, torch.ones_like(angle), angle)
    a = torch.where(small, torch.ones_like(angle), torch.sin(safe) / safe)
    b = torch.where(small, 0.5 * torch.ones_like(angle), (1 - torch.cos(safe)) / safe**2)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand(k.shape)
    return eye + a * k + b * (k @ k)


def mat_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) rotation vectors (the log map)."""
    q = mat_to_quat(m)
    return quat_to_axis_angle(q)


def quat_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions -> (..., 3) rotation vectors, angle in [0, pi]."""
    q = torch.where(q[..., :1] < 0, -q, q)
    sin_half = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, q[..., :1])
    scale = torch.where(
        sin_half > 1e-8, angle / sin_half.clamp_min(1e-12), 2.0 * torch.ones_like(angle)
    )
    return q[..., 1:] * scale


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)


def yaw_of_mat(m: torch.Tensor) -> torch.Tensor:
    """Heading of a body's x axis in the world xy-plane, (...)."""
    return torch.atan2(m[..., 1, 0], m[..., 0, 0])


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    """Wrap angles to (-pi, pi]."""
    return torch.atan2(torch.sin(a), torch.cos(a))


def yaw_quat(yaw: torch.Tensor) -> torch.Tensor:
    """(...) yaw angles -> (..., 4) quaternions about world z."""
    half = 0.5 * yaw
    zero = torch.zeros_like(half)
    return torch.stack([torch.cos(half), zero, zero, torch.sin(half)], dim=-1)
