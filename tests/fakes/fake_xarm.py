"""Fake ``xarm.wrapper`` (xarm-python-sdk): millimetres and degrees unless ``is_radian``."""

from __future__ import annotations

import math

#: Every XArmAPI created, so tests can inspect them.
ARMS: list[XArmAPI] = []
NOT_READY = 9  # the SDK's "not ready to move" code


class XArmAPI:
    def __init__(self, port=None, is_radian=False, do_not_open=False, **kwargs):
        self.port, self.default_is_radian = port, is_radian
        self.position = [300.0, 0.0, 300.0, 180.0, 0.0, 0.0]  # mm, deg
        self.angles = [0.0, -45.0, 0.0, 30.0, 0.0, 75.0, 0.0]  # deg
        self.gripper_pos = 850.0
        self.mode, self.state, self.enabled = 0, 4, False
        self.error_code, self.warn_code = 0, 0
        self.connected = True
        self.calls: list[tuple] = []
        ARMS.append(self)

    def _radian(self, is_radian):
        return self.default_is_radian if is_radian is None else is_radian

    def motion_enable(self, enable=True, servo_id=None):
        self.enabled = enable
        return 0

    def set_mode(self, mode=0):
        self.mode = mode
        return 0

    def set_state(self, state=0):
        self.state = state
        return 0

    def clean_error(self):
        self.error_code = 0
        return 0

    def clean_warn(self):
        self.warn_code = 0
        return 0

    def get_position(self, is_radian=None):
        pose = list(self.position)
        if self._radian(is_radian):
            pose[3:] = [math.radians(v) for v in pose[3:]]
        return 0, pose

    def get_servo_angle(self, servo_id=None, is_radian=None):
        angles = (
            [math.radians(v) for v in self.angles] if self._radian(is_radian) else list(self.angles)
        )
        return 0, angles

    def set_servo_cartesian(
        self,
        mvpose,
        speed=None,
        mvacc=None,
        mvtime=0,
        is_radian=None,
        is_tool_coord=False,
        **kwargs,
    ):
        self.calls.append(("set_servo_cartesian", list(mvpose), is_radian))
        if self.error_code:
            return 1
        if not (self.enabled and self.mode == 1 and self.state == 0):
            return NOT_READY
        pose = list(mvpose)
        if self._radian(is_radian):
            pose[3:] = [math.degrees(v) for v in pose[3:]]
        self.position = pose
        return 0

    def set_gripper_enable(self, enable, **kwargs):
        return 0

    def set_gripper_mode(self, mode, **kwargs):
        return 0

    def set_gripper_position(
        self, pos, wait=False, speed=None, auto_enable=False, timeout=None, **kwargs
    ):
        self.calls.append(("set_gripper_position", pos, wait, speed))
        self.gripper_pos = float(pos)
        return 0

    def get_gripper_position(self, **kwargs):
        return 0, self.gripper_pos

    def emergency_stop(self):
        self.calls.append(("emergency_stop",))
        self.state = 4

    def disconnect(self):
        self.calls.append(("disconnect",))
        self.connected = False
