"""Rotation conversions in numpy for the vendor drivers (no torch: ``real`` stays light).

One place for every representation a vendor speaks, so that each driver only names its own:
rotation vectors (UR, and robolearn's ``ee_delta_pose`` rotation), quaternions (robolearn's
``eef_quat`` is MuJoCo's ``(w, x, y, z)`` with ``w >= 0``; franky's ``Affine`` takes
``(x, y, z, w)``) and roll/pitch/yaw (xArm: ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``).
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def skew(v: np.ndarray) -> np.ndarray:
    x, y, z = v
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def rotvec_to_mat(v: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, rad) -> 3x3 matrix (Rodrigues)."""
    v = np.asarray(v, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-9:
        return np.eye(3) + skew(v)
    k = skew(v / angle)
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def mat_to_quat(m: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> unit quaternion ``(w, x, y, z)`` with ``w >= 0`` (Shepperd)."""
    m = np.asarray(m, dtype=np.float64)
    m00, m11, m22 = m[0, 0], m[1, 1], m[2, 2]
    d21, d02, d10 = m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]
    s21, s02, s10 = m[2, 1] + m[1, 2], m[0, 2] + m[2, 0], m[1, 0] + m[0, 1]
    # Row k is 4 * q_k * q; solving from the largest q_k stays accurate near 180-degree turns.
    rows = np.array(
        [
            [1 + m00 + m11 + m22, d21, d02, d10],
            [d21, 1 + m00 - m11 - m22, s10, s02],
            [d02, s10, 1 - m00 + m11 - m22, s21],
            [d10, s02, s21, 1 - m00 - m11 + m22],
        ]
    )
    q = rows[int(np.argmax(np.diag(rows)))]
    q = q / np.linalg.norm(q)
    return -q if q[0] < 0 else q


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    """Quaternion ``(w, x, y, z)`` (any norm > 0) -> 3x3 rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / max(float(np.linalg.norm(q)), _EPS)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def mat_to_rotvec(m: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> rotation vector with angle in [0, pi] (the log map)."""
    w, *xyz = mat_to_quat(m)
    xyz = np.asarray(xyz)
    s = float(np.linalg.norm(xyz))
    if s < 1e-12:
        return 2.0 * xyz  # first order: angle ~ 2 * |xyz|
    return (2.0 * np.arctan2(s, w) / s) * xyz


def rpy_to_mat(rpy: np.ndarray) -> np.ndarray:
    """Roll, pitch, yaw (rad) about the fixed x, y, z axes -> ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def mat_to_rpy(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rpy_to_mat`, pitch in [-pi/2, pi/2] (roll taken as 0 at gimbal lock)."""
    sp = -float(np.clip(m[2, 0], -1.0, 1.0))
    pitch = np.arcsin(sp)
    if abs(sp) > 1 - 1e-9:
        return np.array([0.0, pitch, np.arctan2(-m[0, 1], m[1, 1])])
    return np.array([np.arctan2(m[2, 1], m[2, 2]), pitch, np.arctan2(m[1, 0], m[0, 0])])


def wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    return np.asarray(q, dtype=np.float64)[[1, 2, 3, 0]]


def xyzw_to_wxyz(q: np.ndarray) -> np.ndarray:
    return np.asarray(q, dtype=np.float64)[[3, 0, 1, 2]]
