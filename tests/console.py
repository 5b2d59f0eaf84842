"""Run a console script in-process (Hydra and all) from a test, as its command line would."""

from __future__ import annotations

import sys
from types import ModuleType

import pytest


def run(cli: ModuleType, *overrides: str) -> int:
    """``cli.main()`` with ``argv = [cli.PROG, *overrides]``; its exit status."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [cli.PROG, *overrides])
        try:
            cli.main()
        except SystemExit as e:
            return int(e.code or 0)
    return 0
