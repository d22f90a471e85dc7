"""Writing files that hold client data: 0600, atomically, and never over a file by surprise."""

from __future__ import annotations

from pathlib import Path

from worker.files import create_private, write_private


def write_new(path: Path, text: str) -> None:
    """Create `path` (0600) with `text`; FileExistsError when anything is already there."""
    create_private(path, text)


def replace(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (a temp file renamed over it), mode 0600."""
    write_private(path, text)
