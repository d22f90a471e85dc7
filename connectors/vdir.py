"""A local folder of .ics files, one object per file (vdirsyncer's and khal's format).

As a source it reads only what changed since the last pass (file name + size + mtime), and
re-expands recurring objects only when the window moved. As a sink it writes one file per
reminder, `callsheet-<key>.ics`, atomically (temporary file + rename), 0600. It never writes
the source folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from connectors.base import Receipt
from connectors.ical import build_item, complete_item, parse_calendar, read_item, uid_for, update_item
from worker.errors import ConfigError, ConflictError, ConnectorError, DataError, Problem
from worker.model import ItemKind, Managed, Reminder, SourceBatch, Window

if TYPE_CHECKING:
    from worker.config import ReminderSettings, Settings, SourceSettings

log = structlog.get_logger()

_RECURRING_HINTS = (b"RRULE", b"RDATE", b"RECURRENCE-ID")
_DTSTART_DAY = re.compile(rb"^DTSTART[^:\r\n]*:(\d{8})", re.MULTILINE)
# Time zone definitions carry RRULEs and DTSTARTs of their own: they say nothing about events.
_VTIMEZONE = re.compile(rb"BEGIN:VTIMEZONE.*?END:VTIMEZONE\r?\n?", re.DOTALL)


def _stamp(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns]


def _placement(data: bytes, window: Window) -> str:
    """Where a stored object lies, from a cheap look at its raw text (no parsing).

    "recurring": it has a recurrence (re-expand it whenever the window moves);
    "before" / "after": a one-off whose DTSTART dates all fall before / after the window (with a
    day of slack for time zones): nothing to parse now, and "after" is read again once the
    window reaches it; "inside": parse it.
    """
    events = _VTIMEZONE.sub(b"", data)
    if any(hint in events for hint in _RECURRING_HINTS):
        return "recurring"
    days = _DTSTART_DAY.findall(events)
    if not days:
        return "inside"  # let the parser say what is wrong with it
    low = (window.start - timedelta(days=1)).strftime("%Y%m%d").encode()
    high = (window.end + timedelta(days=1)).strftime("%Y%m%d").encode()
    if all(day < low for day in days):
        return "before"
    if all(day > high for day in days):
        return "after"
    return "inside"


class VdirSource:
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
        previous = cursor or {}
        old_files = previous.get("files", {})
        assert isinstance(old_files, dict)
        # objects to read again when the window moves: recurring ones, and one-offs ahead of it
        old_revisit = set(previous.get("revisit", previous.get("recurring", [])) or [])  # type: ignore[call-overload]
        window_key = [window.start.isoformat(), window.end.isoformat()]
        moved = previous.get("window") != window_key
        batch = SourceBatch()
        files: dict[str, list[int]] = {}
        revisit: set[str] = set()
        for entry in sorted(os.scandir(self.path), key=lambda e: e.name):
            if not entry.name.endswith(".ics") or not entry.is_file():
                continue
            stamp = _stamp(entry.stat())
            files[entry.name] = stamp
            unchanged = old_files.get(entry.name) == stamp
            if unchanged and not (moved and entry.name in old_revisit):
                if entry.name in old_revisit:
                    revisit.add(entry.name)
                continue
            try:
                data = Path(entry.path).read_bytes()
            except OSError as exc:
                log.warning("source.item.unreadable", item=entry.name, error=type(exc).__name__)
                batch.bad += 1
                files.pop(entry.name)
                continue
            where = _placement(data, window)
            if where in ("recurring", "after"):
                revisit.add(entry.name)
            if where in ("before", "after"):
                batch.changed[entry.name] = []
                continue
            try:
                batch.changed[entry.name] = parse_calendar(
                    data,
                    item=entry.name,
                    source=self.name,
                    window=window,
                    tz=self.tz,
                    default_length=self.default_length,
                )
            except DataError as exc:
                log.warning("source.item.skipped", item=entry.name, problem=str(exc))
                batch.bad += 1
                # remember the stamp: a broken file is reported once, not on every pass
        batch.removed = {name for name in old_files if name not in files}
        batch.cursor = {"files": files, "revisit": sorted(revisit), "window": window_key}
        return batch

    def close(self) -> None:
        return None


def _etag(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_mtime_ns}-{stat.st_size}"


def _write_atomic(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write a whole file or nothing; with `exclusive`, fail if it already exists."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".callsheet-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        if exclusive:
            os.link(tmp, path)  # atomic create-if-absent
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class VdirSink:
    """Writes reminders as .ics files: events in events_path, tasks in tasks_path."""

    def __init__(self, settings: Settings, reminders: ReminderSettings) -> None:
        self.name = reminders.name
        self.folders: dict[ItemKind, Path] = {}
        if reminders.events_path is not None:
            self.folders["event"] = reminders.events_path
        if reminders.tasks_path is not None:
            self.folders["task"] = reminders.tasks_path
        source = settings.source
        for folder in self.folders.values():
            if (
                source.kind == "vdir"
                and source.path is not None
                and folder.resolve() == source.path.resolve()
            ):
                raise ConfigError(
                    [Problem(str(settings.path), "[reminders] must not write into the source folder")]
                )

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
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    def managed(self) -> Iterator[Managed]:
        for kind, folder in self.folders.items():
            if not folder.is_dir():
                continue
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if not (entry.name.startswith("callsheet-") and entry.name.endswith(".ics")):
                    continue
                path = Path(entry.path)
                try:
                    item = read_item(path.read_bytes(), ref=str(path), etag=_etag(path))
                except OSError:
                    continue
                if item is not None and item.kind == kind:
                    yield item

    def create(self, reminder: Reminder) -> Receipt:
        path = self._folder(reminder.kind) / f"{uid_for(reminder.key)}.ics"
        data = build_item(reminder, stamp=datetime.now(UTC))
        with contextlib.suppress(FileExistsError):  # an earlier attempt wrote it: adopt it as it is
            _write_atomic(path, data, exclusive=True)
        return Receipt(ref=str(path), etag=_etag(path))

    def update(self, reminder: Reminder, item: Managed) -> Receipt:
        path = Path(item.ref)
        try:
            if item.etag and _etag(path) != item.etag:
                raise ConflictError("the reminder changed since it was read", operation="update")
            data = update_item(path.read_bytes(), reminder, stamp=datetime.now(UTC))
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
            data = complete_item(path.read_bytes(), note=note, stamp=datetime.now(UTC))
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
