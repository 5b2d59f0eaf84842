"""Durable writes: what a rename-into-place needs so that a crash leaves the old file or the new
one under the final name, never an empty or truncated one."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory's entries (and those of the directories inside it)."""
    if path.is_dir():
        for child in path.iterdir():
            if child.is_dir():
                fsync_path(child)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
