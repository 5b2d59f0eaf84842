"""``CartesianArm``: what the UR, Franka and xArm drivers share; each vendor adds only its calls.

The shared part is the robolearn side of the contract, written once:

* **Action** ``ee_delta_pose`` (7): ``a[:3] * max_pos_delta`` metres of TCP translation and
  ``a[3:6] * max_rot_delta`` radians of TCP rotation (a rotation vector), both in the task frame,
  then the gripper (-1 open, +1 closed). The scales default to the training controller's
  (:class:`robolearn.tasks.control.ControlConfig`), so a checkpoint moves the real arm by what it
  learnt in simulation. Actions are clipped to [-1, 1]; ``send_action`` returns the clipped one.
* **Delta -> absolute target.** Each step adds the delta to the previous *target*, not to the
  measured pose, so that servo lag does not shrink every motion (the sim controller does the
  same); the target may lead the measured pose by at most ``max_lead_pos`` / ``max_lead_rot``, so
  that an arm blocked by the table does not wind up a target far below it. Vendors receive
  absolute poses in their base frame, never velocities: a silent client leaves the arm holding
  its last target.
* **Frames.** The task frame is the training scene's world frame (table top at z = 0, the robot
  base at the origin, x away from the robot). ``base_pos`` / ``base_yaw`` place the real robot's
  base frame in it; ``tool_quat`` (w, x, y, z) rotates the vendor's TCP frame onto the sim
  Panda's TCP frame (z along the fingers, fingers opening along y), so that ``eef_quat`` means
  the same thing on every arm.
* **Observation** terms named as the training env's ``policy`` group: ``joint_pos`` (rad, the
  arm's own joint count), ``eef_pos`` (m, task frame), ``eef_quat`` (w, x, y, z, ``w >= 0``),
  ``gripper_qpos`` (2, metres per finger on the sim Panda's scale: 0.04 open, 0 closed; only
  with a gripper). Object terms (``cube_pos``, ...) cannot be measured by an arm: they come
  from ``object_pose_source``, a callable given the arm terms and returning the declared
  ``object_terms`` (a tracker, fiducials, a pose estimator). Without one, the robot's spec lacks
  them and a checkpoint that needs them is refused by name. Camera terms ``<name>_image``
  (uint8 HWC) come from ``cameras``. ``timestamp`` is the *oldest* source's time, so that the
  safety layer's watchdog sees a stale camera frame or a stale pose as a stale observation.
* **Errors.** Vendor exceptions and error codes become :class:`RobotError` naming the robot
  and the call; a missing vendor package is a :class:`MissingExtraError` naming the pip extra.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np

from robolearn.real.drivers.cameras import Camera, make_camera
from robolearn.real.drivers.geometry import mat_to_quat, mat_to_rotvec, quat_to_mat, rotvec_to_mat
from robolearn.real.drivers.vendor import resolve_callable
from robolearn.real.robot import Observation, Robot, RobotError
from robolearn.spec import ActionSpec, ObsSpec, TermSpec

#: Finger travel of the sim Panda (m, each finger; ``robolearn.tasks.control.FINGER_OPEN``).
FINGER_OPEN = 0.04
ACTION_DIM = 7
ObjectPoseSource = Callable[[Observation], Mapping[str, np.ndarray]]


def opening_from_action(gripper: float) -> float:
    """Gripper action (-1 open, +1 closed) -> opening fraction (1 open, 0 closed)."""
    return 0.5 * (1.0 - float(np.clip(gripper, -1.0, 1.0)))


def clamp_norm(v: np.ndarray, limit: float) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v if norm <= limit else v * (limit / norm)


@dataclass(frozen=True)
class ArmState:
    """One reading of the arm in its vendor's base frame, converted to SI units."""

    joint_pos: np.ndarray  # rad
    tcp_pos: np.ndarray  # m
    tcp_rot: np.ndarray  # 3x3
    gripper_opening: float | None  # 1 open .. 0 closed; None without a gripper
    timestamp: float  # time.monotonic() when read


@dataclass(frozen=True)
class TaskFrame:
    """Where the robot's base frame sits in the task frame, and the TCP frame correction."""

    base_pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    base_yaw: float = 0.0
    tool_quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        c, s = np.cos(self.base_yaw), np.sin(self.base_yaw)
        object.__setattr__(self, "_rot", np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]))
        object.__setattr__(self, "_tool", quat_to_mat(np.asarray(self.tool_quat)))

    def to_task(self, pos: np.ndarray, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vendor TCP pose (base frame) -> robolearn TCP pose (task frame)."""
        return self._rot @ pos + np.asarray(self.base_pos), self._rot @ rot @ self._tool

    def to_base(self, pos: np.ndarray, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`to_task`."""
        return self._rot.T @ (pos - np.asarray(self.base_pos)), self._rot.T @ rot @ self._tool.T


class CartesianArm(Robot):
    """A 6/7-axis arm commanded by absolute TCP poses; subclasses implement the ``_vendor`` hooks.

    Args:
        num_joints: joints the arm reports (``joint_pos`` shape).
        has_gripper: whether a gripper is driven and measured (adds ``gripper_qpos``).
        control_freq: the rate (Hz) the caller sends actions at; must equal the checkpoint's.
        max_pos_delta, max_rot_delta: action scale, m and rad per step (the training controller's).
        max_lead_pos, max_lead_rot: how far the target may run ahead of the measured TCP.
        base_pos, base_yaw, tool_quat: see :class:`TaskFrame`.
        object_pose_source: callable (or ``"module:attr"``) mapping the arm terms to object terms;
            a ``"timestamp"`` entry (``time.monotonic()`` of the estimate) lets the safety
            layer's watchdog see a frozen tracker.
        object_terms: name -> shape of the terms ``object_pose_source`` returns.
        cameras: name -> :class:`Camera` (or its config dict) adding ``<name>_image`` terms.
    """

    name = "arm"
    vendor = ""

    def __init__(
        self,
        *,
        num_joints: int,
        has_gripper: bool,
        control_freq: float = 20.0,
        max_pos_delta: float = 0.05,
        max_rot_delta: float = 0.25,
        max_lead_pos: float = 0.1,
        max_lead_rot: float = 0.5,
        base_pos: Sequence[float] = (0.0, 0.0, 0.0),
        base_yaw: float = 0.0,
        tool_quat: Sequence[float] = (1.0, 0.0, 0.0, 0.0),
        object_pose_source: str | ObjectPoseSource | None = None,
        object_terms: Mapping[str, Sequence[int]] | None = None,
        cameras: Mapping[str, Camera | Mapping[str, Any]] | None = None,
    ):
        if control_freq <= 0 or min(max_pos_delta, max_rot_delta, max_lead_pos, max_lead_rot) <= 0:
            raise ValueError(f"{self.name}: control_freq, max_*_delta and max_lead_* must be > 0")
        if len(base_pos) != 3 or len(tool_quat) != 4:
            raise ValueError(
                f"{self.name}: base_pos needs 3 values and tool_quat 4 (w, x, y, z); "
                f"got {len(base_pos)} and {len(tool_quat)}"
            )
        self.num_joints, self.has_gripper = num_joints, has_gripper
        self.control_freq = float(control_freq)
        self.max_pos_delta, self.max_rot_delta = max_pos_delta, max_rot_delta
        self.max_lead_pos, self.max_lead_rot = max_lead_pos, max_lead_rot
        self._box: tuple[np.ndarray, np.ndarray] | None = None  # limit_workspace
        self.frame = TaskFrame(tuple(base_pos), float(base_yaw), tuple(tool_quat))
        self.object_pose_source = resolve_callable(
            object_pose_source, f"{self.name}.object_pose_source"
        )
        self.object_terms = {k: tuple(int(s) for s in v) for k, v in (object_terms or {}).items()}
        if self.object_terms and self.object_pose_source is None:
            raise ValueError(
                f"{self.name}: object_terms {sorted(self.object_terms)} need an object_pose_source"
            )
        self.cameras = {
            k: (c if isinstance(c, Camera) else make_camera(**c))
            for k, c in (cameras or {}).items()
        }
        self._connected = False
        self._target: tuple[np.ndarray, np.ndarray] | None = None  # task frame
        self._spec = self._build_spec()

    # --- what a vendor driver implements (base frame, SI units) -------------------------------
    @abstractmethod
    def _open(self) -> None:
        """Connect and enable the arm (and gripper) for streaming pose targets."""

    @abstractmethod
    def _halt(self) -> None:
        """Stop any motion now."""

    @abstractmethod
    def _close(self) -> None:
        """Release the connection (called after :meth:`_halt`)."""

    @abstractmethod
    def _read(self) -> ArmState:
        """The arm's joints, TCP pose and gripper now."""

    @abstractmethod
    def _command_pose(self, pos: np.ndarray, rot: np.ndarray) -> None:
        """Stream an absolute TCP target (base frame, m, rotation matrix)."""

    @abstractmethod
    def _command_gripper(self, opening: float) -> None:
        """Move the gripper towards an opening fraction (1 open, 0 closed)."""

    # --- Robot --------------------------------------------------------------------------------
    @property
    def observation_spec(self) -> ObsSpec:
        return self._spec

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        if self._connected:
            return
        try:
            with self.vendor_call("connect"):
                self._open()
            for cam in self.cameras.values():
                cam.connect()
        except BaseException:
            with suppress(Exception):  # the connect error says more than a cleanup error
                self._release()
            raise
        self._connected, self._target = True, None

    def disconnect(self) -> None:
        if not self._connected:
            return
        self._connected = False
        self._release()

    def stop(self) -> None:
        """Halt the arm, keeping the connection; the next action starts from the measured pose."""
        self._target = None
        with self.vendor_call("stop"):
            self._halt()

    def get_observation(self) -> Observation:
        self._require_connected()
        with self.vendor_call("read state"):
            state = self._read()
        pos, rot = self.frame.to_task(state.tcp_pos, state.tcp_rot)
        obs: Observation = {
            "joint_pos": np.asarray(state.joint_pos, np.float32),
            "eef_pos": pos.astype(np.float32),
            "eef_quat": mat_to_quat(rot).astype(np.float32),
        }
        if self.has_gripper:
            if state.gripper_opening is None:
                raise RobotError(f"{self.name}: the gripper reported no opening")
            obs["gripper_qpos"] = np.full(2, FINGER_OPEN * state.gripper_opening, np.float32)
        stamps = [state.timestamp]
        # A failing estimator or camera is a driver fault (recorded, the arm stopped), not a crash.
        if self.object_pose_source is not None:
            with self.vendor_call("read the object pose"):
                terms, stamp = self._object_terms(dict(obs))
            obs.update(terms)
            if stamp is not None:  # the estimate's own time: a frozen tracker reads as stale
                stamps.append(stamp)
        for cam_name, cam in self.cameras.items():
            with self.vendor_call(f"read camera {cam_name!r}"):
                frame = cam.read()
            obs[f"{cam_name}_image"] = frame.image
            stamps.append(frame.timestamp)
        self._check_shapes(obs)
        obs["timestamp"] = np.float64(min(stamps))
        return obs

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self._require_connected()
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (ACTION_DIM,):
            raise ValueError(
                f"{self.name}: action shape {a.shape}, expected ({ACTION_DIM},) (ee_delta_pose)"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"{self.name}: non-finite action {a.tolist()}")
        a = np.clip(a, self._spec.action.low, self._spec.action.high)
        with self.vendor_call("read state"):
            state = self._read()
        measured = self.frame.to_task(state.tcp_pos, state.tcp_rot)
        pos, rot = self.next_target(a, measured)
        with self.vendor_call("command pose"):
            self._command_pose(*self.frame.to_base(pos, rot))
        if self.has_gripper:
            with self.vendor_call("command gripper"):
                self._command_gripper(opening_from_action(a[-1]))
        self._target = (pos, rot)
        return a.astype(np.float32)

    # --- shared logic -------------------------------------------------------------------------
    def next_target(
        self, action: np.ndarray, measured: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Absolute task-frame TCP target for a clipped action, given the measured TCP pose."""
        m_pos, m_rot = measured
        t_pos, t_rot = self._target if self._target is not None else measured
        pos = t_pos + action[:3] * self.max_pos_delta
        rot = rotvec_to_mat(action[3:6] * self.max_rot_delta) @ t_rot
        pos = m_pos + clamp_norm(pos - m_pos, self.max_lead_pos)
        if self._box is not None:
            pos = np.clip(pos, *self._box)
        lead = clamp_norm(mat_to_rotvec(rot @ m_rot.T), self.max_lead_rot)
        return pos, rotvec_to_mat(lead) @ m_rot

    def limit_workspace(self, low: tuple[float, ...], high: tuple[float, ...]) -> None:
        self._box = (np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64))

    @contextmanager
    def vendor_call(self, what: str) -> Iterator[None]:
        """Turn any vendor exception into a :class:`RobotError` naming the robot and the call."""
        try:
            yield
        except (RobotError, ValueError):
            raise
        except Exception as e:
            raise RobotError(f"{self.name}: {what} failed: {type(e).__name__}: {e}") from e

    def _release(self) -> None:
        """Halt, close, and stop the cameras, attempting every step; raise the first failure."""
        errors: list[BaseException] = []
        for step in (self._halt, self._close, *(c.disconnect for c in self.cameras.values())):
            try:
                step()
            except Exception as e:
                errors.append(e)
        self._target = None
        if errors:
            e = errors[0]
            raise RobotError(f"{self.name}: disconnect failed: {type(e).__name__}: {e}") from e

    def _require_connected(self) -> None:
        if not self._connected:
            raise RobotError(f"{self.name} is not connected; call connect() first")

    def _object_terms(self, arm_terms: Observation) -> tuple[dict[str, np.ndarray], float | None]:
        """The source's object terms, and its ``timestamp`` (time.monotonic() of the estimate)
        when it gives one."""
        assert self.object_pose_source is not None
        terms = self.object_pose_source(arm_terms)
        missing = sorted(set(self.object_terms) - set(terms))
        if missing:
            raise RobotError(f"{self.name}: object_pose_source returned no {missing}")
        stamp = terms.get("timestamp")
        objects = {k: np.asarray(terms[k], np.float32) for k in self.object_terms}
        return objects, None if stamp is None else float(stamp)

    def _check_shapes(self, obs: Observation) -> None:
        for key, term in self._spec.terms.items():
            if obs[key].shape != term.shape:
                raise RobotError(
                    f"{self.name}: observation {key!r} has shape {obs[key].shape}, "
                    f"expected {term.shape}"
                )

    def _build_spec(self) -> ObsSpec:
        terms = {
            "joint_pos": TermSpec((self.num_joints,)),
            "eef_pos": TermSpec((3,)),
            "eef_quat": TermSpec((4,)),
        }
        if self.has_gripper:
            terms["gripper_qpos"] = TermSpec((2,))
        terms |= {k: TermSpec(shape) for k, shape in self.object_terms.items()}
        terms |= {f"{k}_image": TermSpec(c.shape, "uint8", "rgb") for k, c in self.cameras.items()}
        return ObsSpec(
            terms=terms,
            groups={"policy": tuple(terms)},
            action=ActionSpec(ACTION_DIM, mode="ee_delta_pose", control_freq=self.control_freq),
            extras={"robot": self.name},
        )
