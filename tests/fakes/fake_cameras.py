"""Fake ``cv2`` (VideoCapture, BGR frames) and ``pyrealsense2`` (pipeline, RGB frames)."""

from __future__ import annotations

import time
import types

import numpy as np

# --- cv2 -------------------------------------------------------------------------------------
cv2 = types.ModuleType("cv2")
cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS = 3, 4, 5
cv2.CAP_PROP_BUFFERSIZE = 38
cv2.COLOR_BGR2RGB = 4


def _bgr(height: int, width: int) -> np.ndarray:
    """A frame whose channels are B=10, G=20, R=30, so a missing BGR->RGB swap shows."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[...] = (10, 20, 30)
    return frame


class VideoCapture:
    DEVICES = {0: (480, 640)}  # index -> native (height, width); the fake ignores size requests

    def __init__(self, index=0):
        self.index, self.props, self.released = index, {}, False

    def isOpened(self) -> bool:
        return self.index in self.DEVICES and not self.released

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def read(self):
        if not self.isOpened():
            return False, None
        return True, _bgr(*self.DEVICES[self.index])

    def release(self) -> None:
        self.released = True


def cvtColor(src: np.ndarray, code: int) -> np.ndarray:
    assert code == cv2.COLOR_BGR2RGB
    return src[..., ::-1].copy()


cv2.VideoCapture, cv2.cvtColor = VideoCapture, cvtColor

# --- pyrealsense2 ------------------------------------------------------------------------------
rs = types.ModuleType("pyrealsense2")
rs.stream = types.SimpleNamespace(color="color", depth="depth")
rs.format = types.SimpleNamespace(rgb8="rgb8", bgr8="bgr8")
rs.timestamp_domain = types.SimpleNamespace(
    hardware_clock="hardware_clock", system_time="system_time", global_time="global_time"
)


class _VideoFrame:
    def __init__(self, image, stamp_ms, domain):
        self._image, self._stamp, self._domain = image, stamp_ms, domain

    def __bool__(self) -> bool:
        return True

    def get_data(self):
        return self._image

    def get_timestamp(self) -> float:
        return self._stamp

    def get_frame_timestamp_domain(self):
        return self._domain


class _Frames:
    def __init__(self, color):
        self._color = color

    def get_color_frame(self):
        return self._color


class config:
    def __init__(self):
        self.streams, self.device = [], None

    def enable_device(self, serial: str) -> None:
        self.device = serial

    def enable_stream(self, stream, width, height, format, framerate) -> None:
        self.streams.append((stream, width, height, format, framerate))


class pipeline:
    #: Age (s) of the frames the fake delivers, and their timestamp domain.
    frame_age = 0.0
    domain = "global_time"

    def __init__(self):
        self.started, self.config = False, None

    def start(self, cfg):
        if not cfg.streams:
            raise RuntimeError("No device connected")
        self.started, self.config = True, cfg

    def wait_for_frames(self, timeout_ms: int = 5000):
        if not self.started:
            raise RuntimeError("wait_for_frames cannot be called before start()")
        _, width, height, _, _ = self.config.streams[0]
        image = np.zeros((height, width, 3), np.uint8)
        stamp_ms = (time.time() - self.frame_age) * 1000.0
        return _Frames(_VideoFrame(image, stamp_ms, self.domain))

    def stop(self) -> None:
        self.started = False


rs.config, rs.pipeline = config, pipeline
