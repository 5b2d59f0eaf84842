"""A scripted key source for teleop: one string of typed keys per control step."""

from __future__ import annotations

#: What ``scripted()`` sources type, step by step; tests set it before running.
SCRIPT: list[str] = []


class ScriptedKeys:
    """Types ``steps[i]`` at the i-th read; once the script is over, types ``q`` (quit), so that
    a loop driven by it always ends."""

    def __init__(self, steps: list[str]):
        self.steps, self.reads, self.opened = list(steps), 0, False

    def open(self) -> None:
        self.opened = True

    def close(self) -> None:
        self.opened = False

    def read(self) -> str:
        i, self.reads = self.reads, self.reads + 1
        return self.steps[i] if i < len(self.steps) else "q"


def scripted() -> ScriptedKeys:
    return ScriptedKeys(SCRIPT)
