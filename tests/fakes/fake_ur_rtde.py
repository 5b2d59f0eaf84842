"""Fake ``rtde_control`` + ``rtde_receive`` (ur-rtde): metres, radians, rotation-vector poses."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Controller:
    """The robot controller both interfaces of one host talk to."""

    tcp_pose: list[float] = field(default_factory=lambda: [0.4, 0.0, 0.3, 3.14159265, 0.0, 0.0])
    q: list[float] = field(default_factory=lambda: [0.0, -1.57, 1.57, -1.57, -1.57, 0.0])
    protective_stop: bool = False
    script_running: bool = True
    calls: list[tuple] = field(default_factory=list)


#: host -> controller; tests create entries to shape what a host answers.
CONTROLLERS: dict[str, Controller] = {}
UNREACHABLE = "10.0.0.254"


def _controller(hostname: str) -> Controller:
    if hostname == UNREACHABLE:
        raise RuntimeError(f"Could not connect to robot at {hostname}: timeout")
    return CONTROLLERS.setdefault(hostname, Controller())


class RTDEReceiveInterface:
    def __init__(self, hostname: str, frequency: float = -1.0, variables: list[str] | None = None):
        self._c = _controller(hostname)
        self._connected = True

    def getActualTCPPose(self) -> list[float]:
        self._check()
        return list(self._c.tcp_pose)

    def getActualQ(self) -> list[float]:
        self._check()
        return list(self._c.q)

    def isConnected(self) -> bool:
        return self._connected

    def disconnect(self) -> None:
        self._connected = False

    def _check(self) -> None:
        if not self._connected:
            raise RuntimeError("RTDE receive interface is not connected")


class RTDEControlInterface:
    def __init__(self, hostname: str, frequency: float = -1.0, flags: int = 0):
        self._c = _controller(hostname)
        self._connected = True

    def servoL(
        self,
        pose: list[float],
        speed: float,
        acceleration: float,
        time: float,
        lookahead_time: float,
        gain: float,
    ) -> bool:
        if not self._connected:
            raise RuntimeError("RTDE control interface is not connected")
        if len(pose) != 6 or not all(isinstance(v, float) for v in pose):
            raise TypeError(f"servoL(): incompatible pose argument {pose!r}")
        self._c.calls.append(
            ("servoL", list(pose), speed, acceleration, time, lookahead_time, gain)
        )
        if self._c.protective_stop or not self._c.script_running:
            return False
        self._c.tcp_pose = list(pose)
        return True

    def servoStop(self, a: float = 10.0) -> bool:
        self._c.calls.append(("servoStop", a))
        return True

    def stopL(self, a: float = 10.0, asynchronous: bool = False) -> None:
        self._c.calls.append(("stopL", a))

    def stopScript(self) -> None:
        self._c.calls.append(("stopScript",))
        self._c.script_running = False

    def isConnected(self) -> bool:
        return self._connected

    def disconnect(self) -> None:
        self._c.calls.append(("disconnect",))
        self._connected = False
