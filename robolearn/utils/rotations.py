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
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions with w >= 0."""
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Magnitudes from the diagonal, signs from the off-diagonal: robust for every rotation.
    w = 0.5 * torch.sqrt(torch.clamp(1 + m00 + m11 + m22, min=0))
    x = 0.5 * torch.sqrt(torch.clamp(1 + m00 - m11 - m22, min=0))
    y = 0.5 * torch.sqrt(torch.clamp(1 - m00 + m11 - m22, min=0))
    z = 0.5 * torch.sqrt(torch.clamp(1 - m00 - m11 + m22, min=0))
    x = torch.copysign(x, m[..., 2, 1] - m[..., 1, 2])
    y = torch.copysign(y, m[..., 0, 2] - m[..., 2, 0])
    z = torch.copysign(z, m[..., 1, 0] - m[..., 0, 1])
    q = torch.stack([w, x, y, z], dim=-1)
    return q / q.norm(dim=-1, keepdim=True)


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
