"""Cameras: OpenCV (``cv2.VideoCapture``) and Intel RealSense (``pyrealsense2``), extra ``cameras``.

Contract: :meth:`Camera.read` returns the latest colour frame as ``uint8`` RGB ``(H, W, 3)``
(HWC, the layout datasets store) with its capture time on ``time.monotonic``. An arm driver
given cameras puts that time into its observation's ``timestamp`` (the oldest source wins), so
the safety layer's watchdog trips on a frozen camera exactly as on a frozen arm. A frame of the
wrong size, a failed grab or a timeout raises :class:`RobotError`; nothing is resized silently.

* ``opencv``: USB/UVC cameras by index or device path. OpenCV gives no capture time for live
  devices, so the time is taken when the grab returns, and the driver asks for a one-frame
  buffer so that a slow reader does not get frames queued seconds ago.
* ``realsense``: the colour stream of a D400-series camera (optionally by serial number). With
  the device's global/system time domain, the frame's own timestamp (host clock, ms) is moved
  onto ``time.monotonic``; with the hardware clock, the arrival time is used.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from robolearn.real.drivers.vendor import import_vendor
from robolearn.real.robot import Connectable, RobotError


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # uint8 (H, W, 3) RGB
    timestamp: float  # time.monotonic() at capture


class Camera(Connectable):
    """A colour camera giving fixed-size RGB frames."""

    kind = "camera"

    def __init__(self, width: int, height: int, fps: float):
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"{self.kind} camera: width, height and fps must be > 0")
        self.width, self.height, self.fps = int(width), int(height), float(fps)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def disconnect(self) -> None:
        """Release the device. Idempotent."""

    @abstractmethod
    def read(self) -> Frame: ...

    def _checked(self, image: np.ndarray, source: str) -> np.ndarray:
        if image.shape != self.shape or image.dtype != np.uint8:
            raise RobotError(
                f"{self.kind} camera {source}: frame {image.shape} {image.dtype}, expected "
                f"{self.shape} uint8 (does the device support {self.width}x{self.height}?)"
            )
        return np.ascontiguousarray(image)


class OpenCVCamera(Camera):
    kind = "opencv"

    def __init__(
        self, index: int | str = 0, width: int = 640, height: int = 480, fps: float = 30.0
    ):
        super().__init__(width, height, fps)
        self.index = index
        self._cv2: ModuleType = import_vendor("cv2", "cameras", "opencv camera")
        self._cap: Any = None

    def connect(self) -> None:
        if self._cap is not None:
            return
        cv2 = self._cv2
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            raise RobotError(f"opencv camera {self.index!r}: cannot open the device")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def disconnect(self) -> None:
        if self._cap is not None:
            cap, self._cap = self._cap, None
            cap.release()

    def read(self) -> Frame:
        if self._cap is None:
            raise RobotError(f"opencv camera {self.index!r} is not connected")
        ok, bgr = self._cap.read()
        stamp = time.monotonic()
        if not ok or bgr is None:
            raise RobotError(f"opencv camera {self.index!r}: grabbing a frame failed")
        rgb = self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)
        return Frame(self._checked(np.asarray(rgb), repr(self.index)), stamp)


class RealSenseCamera(Camera):
    kind = "realsense"

    def __init__(
        self,
        serial: str | None = None,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        timeout_ms: int = 1000,
    ):
        super().__init__(width, height, fps)
        self.serial, self.timeout_ms = serial, int(timeout_ms)
        self._rs: ModuleType = import_vendor("pyrealsense2", "cameras", "realsense camera")
        self._pipeline: Any = None

    def connect(self) -> None:
        if self._pipeline is not None:
            return
        rs = self._rs
        config = rs.config()
        if self.serial:
            config.enable_device(str(self.serial))
        config.enable_stream(
            rs.stream.color, self.width, self.height, rs.format.rgb8, int(self.fps)
        )
        pipeline = rs.pipeline()
        try:
            pipeline.start(config)
        except RuntimeError as e:
            raise RobotError(f"realsense camera {self.serial or '(any)'}: cannot start: {e}") from e
        self._pipeline = pipeline

    def disconnect(self) -> None:
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            pipeline.stop()

    def read(self) -> Frame:
        if self._pipeline is None:
            raise RobotError(f"realsense camera {self.serial or '(any)'} is not connected")
        try:
            frames = self._pipeline.wait_for_frames(self.timeout_ms)
        except RuntimeError as e:
            raise RobotError(f"realsense camera {self.serial or '(any)'}: {e}") from e
        arrival = time.monotonic()
        color = frames.get_color_frame()
        if not color:
            raise RobotError(f"realsense camera {self.serial or '(any)'}: no colour frame")
        image = self._checked(np.asanyarray(color.get_data()), self.serial or "(any)")
        return Frame(image, self._capture_time(color, arrival))

    def _capture_time(self, color: Any, arrival: float) -> float:
        """The frame's host-clock timestamp moved onto ``time.monotonic`` (never in the future)."""
        domain = self._rs.timestamp_domain
        if color.get_frame_timestamp_domain() not in (domain.global_time, domain.system_time):
            return arrival
        age = max(0.0, time.time() - color.get_timestamp() / 1000.0)
        return arrival - age


CAMERAS: dict[str, type[Camera]] = {"opencv": OpenCVCamera, "realsense": RealSenseCamera}


def make_camera(type: str, **kwargs: Any) -> Camera:
    """A camera from its config: ``{type: opencv|realsense, ...constructor arguments}``."""
    if type not in CAMERAS:
        raise ValueError(f"unknown camera type {type!r}; choose from {sorted(CAMERAS)}")
    return CAMERAS[type](**kwargs)
