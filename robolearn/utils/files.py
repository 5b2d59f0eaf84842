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


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a hidden temporary file beside it, flushed to disk and
    then renamed over it: a reader or a crash sees the old content or the new, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
