"""A local folder of .ics files, one object per file (vdirsyncer's and khal's format).

As a source it reads only what changed since the last pass (file name + size + mtime; the
cursor and the state keep `worker.object_ids.object_id` of the name, never the name), and
re-expands recurring objects only when the window moved. As a sink it writes one file per
reminder, named by `worker.identity.file_name` (`callsheet-<key>-e<generation>.ics`),
atomically (temporary file + rename), 0600. Both sides open regular files only (no FIFOs,
devices or links), up to `MAX_FILE_BYTES`. The runner checks that no sink folder is the source
folder (by device and inode) before anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from connectors.base import Capabilities, Receipt
from connectors.ical import build_item, complete_item, parse_calendar, placement, read_item, update_item
from worker.errors import ConflictError, ConnectorError, DataError, RefusedError
from worker.files import create_private, write_private
from worker.identity import file_name, parse_file_name
from worker.model import ItemKind, Managed, Reminder, SourceBatch, Window
from worker.object_ids import VDIR_CURSOR, object_id, upgrade_cursor

if TYPE_CHECKING:
    from worker.config import ReminderSettings, Settings, SourceSettings

log = structlog.get_logger()


# A calendar object is a few kilobytes; a file this large is a mistake or an attack.
MAX_FILE_BYTES = 4 * 1024 * 1024


class NotRegularError(OSError):
    """The path is a FIFO, a device, a link or a folder, or larger than MAX_FILE_BYTES."""


def read_regular(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """Read a regular file without following a link, blocking on a FIFO or reading past `limit`.

    Raises:
        NotRegularError: anything but a regular file of at most `limit` bytes.
        OSError: the file could not be read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularError(f"{path.name}: not a regular file")
        if info.st_size > limit:
            raise NotRegularError(f"{path.name}: larger than {limit} bytes")
        chunks = []
        size = 0
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > limit:
                raise NotRegularError(f"{path.name}: larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _stamp(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns]


class VdirSource(Capabilities):
    """Reads appointments from a folder of .ics files."""

    def __init__(self, settings: Settings, source: SourceSettings) -> None:
        assert source.path is not None
        self.name = source.name
        self.path = source.path
        self.tz = settings.practice.tz
        self.default_length = settings.rules.default_length

    def read(self, window: Window, cursor: dict[str, object] | None) -> SourceBatch:
        """Parse the files that changed, and the recurring ones when the window moved."""
        if not self.path.is_dir():
            # not a config error: a folder on a network share may come back by the next pass
            raise ConnectorError(
                f"the source folder {self.path} does not exist", source=self.name, operation="list"
            )
        # the cursor holds object ids (worker.object_ids), never the file names
        previous = upgrade_cursor(cursor or {})
        if not isinstance(previous, dict) or previous.get("v") != VDIR_CURSOR:
            previous = {}
        old_files = previous.get("files", {})
        assert isinstance(old_files, dict)
        # objects to read again when the window moves: recurring ones, and one-offs ahead of it
        old_revisit = set(previous.get("revisit") or [])
        window_key = [window.start.isoformat(), window.end.isoformat()]
        moved = previous.get("window") != window_key
        batch = SourceBatch()
        files: dict[str, list[int]] = {}
        revisit: set[str] = set()
        for entry in sorted(os.scandir(self.path), key=lambda e: e.name):
            if not entry.name.endswith(".ics") or not entry.is_file(follow_symlinks=False):
                continue
            stamp = _stamp(entry.stat())
            item = object_id(entry.name)
            files[item] = stamp
            unchanged = old_files.get(item) == stamp
            if unchanged and not (moved and item in old_revisit):
                if item in old_revisit:
                    revisit.add(item)
                continue
            try:
                data = read_regular(Path(entry.path))
            except OSError as exc:
                log.warning("source.item.unreadable", item=entry.name, error=type(exc).__name__)
                batch.bad += 1
                files.pop(item)
                continue
            where = placement(data, window)
            if where in ("recurring", "after"):
                revisit.add(item)
            if where in ("before", "after"):
                batch.changed[item] = []
                continue
            try:
                batch.changed[item] = parse_calendar(
                    data,
                    item=item,
                    source=self.name,
                    window=window,
                    tz=self.tz,
                    default_length=self.default_length,
                )
            except DataError as exc:
                log.warning("source.item.skipped", item=entry.name, problem=str(exc))
                batch.bad += 1
                # remember the stamp: a broken file is reported once, not on every pass
        batch.removed = {item for item in old_files if item not in files}
        batch.cursor = {"v": VDIR_CURSOR, "files": files, "revisit": sorted(revisit), "window": window_key}
        return batch

    def close(self) -> None:
        return None


def _hash(text: str) -> str:
    """A short stable hash for logs: file names can carry client data."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _etag(path: Path) -> str:
    info = os.lstat(path)
    return f"{info.st_mtime_ns}-{info.st_size}"


def _write_atomic(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write a whole file or nothing (0600); with `exclusive`, fail if it already exists."""
    if exclusive:
        create_private(path, data)  # atomic create-if-absent
    else:
        write_private(path, data)


class VdirSink(Capabilities):
    """Writes reminders as .ics files: events in events_path, tasks in tasks_path."""

    def __init__(self, settings: Settings, reminders: ReminderSettings) -> None:
        self.name = reminders.name
        self.alarm_minutes = reminders.alarm_minutes
        self.folders: dict[ItemKind, Path] = {}
        if reminders.events_path is not None:
            self.folders["event"] = reminders.events_path
        if reminders.tasks_path is not None:
            self.folders["task"] = reminders.tasks_path
        self.skipped = 0  # special or oversized files passed over by managed()

    def kinds(self) -> frozenset[ItemKind]:
        return frozenset(self.folders)

    def sweep(self) -> int:
        """Remove temporary files a killed pass left behind (the caller holds the run lock)."""
        removed = 0
        for folder in self.folders.values():
            if folder.is_dir():
                for leftover in folder.glob(".callsheet-*.tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        leftover.unlink()
                        removed += 1
        return removed

    def _folder(self, kind: ItemKind) -> Path:
        folder = self.folders[kind]
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise RefusedError(
                f"the reminders folder {folder} cannot be made ({exc.strerror or type(exc).__name__})",
                source=self.name,
                operation="create",
            ) from exc
        return folder

    def managed(self) -> Iterator[Managed]:
        """Every item with our key in the folders (one folder may hold events and tasks)."""
        self.skipped = 0
        seen: set[str] = set()
        for folder in self.folders.values():
            if not folder.is_dir() or str(folder.resolve()) in seen:
                continue
            seen.add(str(folder.resolve()))
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if not (entry.name.startswith("callsheet-") and entry.name.endswith(".ics")):
                    continue
                path = Path(entry.path)
                try:
                    data = read_regular(path)
                except NotRegularError:
                    self.skipped += 1
                    log.warning("sink.item.special", item=_hash(entry.name))
                    continue
                except OSError:
                    continue
                item = read_item(data, ref=str(path), etag=_etag(path), name=parse_file_name(entry.name))
                if item is not None and item.kind in self.folders:
                    yield item

    def create(self, reminder: Reminder) -> Receipt:
        """Write the item under its own name; an earlier attempt's file with our key is adopted."""
        path = self._folder(reminder.kind) / file_name(reminder.key, reminder.kind, reminder.generation)
        data = build_item(reminder, stamp=datetime.now(UTC), alarm_minutes=self.alarm_minutes)
        try:
            _write_atomic(path, data, exclusive=True)
        except FileExistsError:
            try:
                found = read_item(
                    read_regular(path), ref=str(path), etag=_etag(path), name=parse_file_name(path.name)
                )
            except OSError as exc:
                raise RefusedError("a special file has the reminder's name", operation="create") from exc
            if found is None or found.key != reminder.key or found.owner != reminder.owner:
                raise RefusedError(
                    "a file that is not ours has the reminder's name", operation="create"
                ) from None
        return Receipt(ref=str(path), etag=_etag(path))

    def update(self, reminder: Reminder, item: Managed) -> Receipt:
        path = Path(item.ref)
        try:
            if item.etag and _etag(path) != item.etag:
                raise ConflictError("the reminder changed since it was read", operation="update")
            data = update_item(read_regular(path), reminder, stamp=datetime.now(UTC))
        except FileNotFoundError as exc:
            raise ConflictError("the reminder is gone", operation="update") from exc
        _write_atomic(path, data, exclusive=False)
        return Receipt(ref=str(path), etag=_etag(path))

    def withdraw(self, item: Managed, *, note: str, delete: bool) -> Receipt:
        path = Path(item.ref)
        if delete:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return Receipt(ref=str(path), gone=True)
        try:
            data = complete_item(read_regular(path), note=note, stamp=datetime.now(UTC))
        except FileNotFoundError:
            return Receipt(ref=str(path), gone=True)
        _write_atomic(path, data, exclusive=False)
        return Receipt(ref=str(path), etag=_etag(path))

    def delete(self, item: Managed) -> None:
        """Remove an item outright (purge)."""
        with contextlib.suppress(FileNotFoundError):
            Path(item.ref).unlink()

    def close(self) -> None:
        return None
