"""Durable writes: what a rename-into-place needs so that a crash leaves the old file or the new
one under the final name, never an empty or truncated one."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory's entries (and those of the directories inside it)."""
    if path.is_dir():
        for child in path.iterdir():
            if child.is_dir():
                fsync_path(child)
    fsync_entry(path)


def fsync_entry(path: Path) -> None:
    """Flush one file, or one directory's own entries (not those of the directories inside it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_synced(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` and flush it to disk (no rename: for files inside a temporary
    directory that is itself renamed into place)."""
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a uniquely named hidden file beside it, flushed, renamed
    over it, and the directory entry flushed: a reader or a crash sees the old content or the new,
    never a part, and concurrent writers never share a temporary."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write_text_synced(tmp, text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_entry(path.parent)  # the rename itself; the directories beside it are not ours
    return path
