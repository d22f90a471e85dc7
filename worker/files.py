"""Files that may hold client data or secrets: written whole or not at all, 0600, never over a
file by surprise. The one place every private file is written (state.db is SQLite's own).

- `write_private(path, data)`: replace the file atomically (temporary file next to it, fsync,
  rename), 0600. A crash leaves the old file or the new one, never half of either.
- `create_private(path, data)`: the same, but only when nothing is there yet (FileExistsError
  otherwise): drafts that must never overwrite, and create-if-absent reminder files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _staged(path: Path, data: bytes) -> str:
    """A fsynced 0600 temporary file with `data` in the target's folder; returns its path."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def write_private(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data` in one step, mode 0600."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = _staged(path, raw)
    try:
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def create_private(path: Path, data: bytes | str) -> None:
    """Create `path` (0600) with `data`, atomically; FileExistsError when anything is there."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = _staged(path, raw)
    try:
        os.link(tmp, path)  # atomic create-if-absent: a reader never sees half a file
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
