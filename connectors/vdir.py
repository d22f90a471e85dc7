"""A local folder of .ics files, one object per file (vdirsyncer's and khal's format).

As a source it reads only what changed since the last pass (file name + size + mtime; the
cursor and the state keep `worker.object_ids.object_id` of the name, never the name), and
re-expands recurring objects only when the window moved. As a sink it writes one file per
reminder, named by `worker.identity.file_name` (`callsheet-<key>-e<generation>.ics`),
atomically (temporary file + rename), 0600. Both sides open regular files only (no FIFOs,
devices or links), up to `MAX_FILE_BYTES`. The runner checks that no sink folder is the source
folder (by device and inode) before anything is written.

The sink remembers what it read from each reminder file in `state_dir/vdir-reminders.json`
(0600), under the file's size, mtime, ctime and inode: a pass in which no reminder file changed
neither parses one nor imports icalendar (start-up, docs/design.md). The files stay the truth:
any change to one of the four, or a file newer than `_SETTLED_NS`, is read again. The memo is
written by `sweep()`, which only a writing pass calls, under the run lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog

from connectors.base import Capabilities, Receipt
from connectors.ical import build_item, complete_item, parse_calendar, placement, read_item, update_item
from worker import __version__
from worker.errors import ConflictError, ConnectorError, DataError, RefusedError
from worker.files import create_private, write_private
from worker.identity import file_name, parse_file_name
from worker.model import ItemKind, Managed, Reminder, SourceBatch, Window
from worker.object_ids import VDIR_CURSOR, object_id, pack_stamps, unpack_stamps, upgrade_cursor

if TYPE_CHECKING:
    from worker.config import ReminderSettings, Settings, SourceSettings

log = structlog.get_logger()


# A calendar object is a few kilobytes; a file this large is a mistake or an attack.
MAX_FILE_BYTES = 4 * 1024 * 1024


class NotRegularError(OSError):
    """The path is a FIFO, a device, a link or a folder, or larger than MAX_FILE_BYTES."""


def read_regular(path: Path | str, limit: int = MAX_FILE_BYTES) -> bytes:
    """Read a regular file without following a link, blocking on a FIFO or reading past `limit`.

    Raises:
        NotRegularError: anything but a regular file of at most `limit` bytes.
        OSError: the file could not be read.
    """
    name = os.path.basename(path)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularError(f"{name}: not a regular file")
        if info.st_size > limit:
            raise NotRegularError(f"{name}: larger than {limit} bytes")
        chunks = []
        size = 0
        ask = info.st_size + 1  # one read, when the file is as long as fstat says
        while chunk := os.read(fd, ask):
            size += len(chunk)
            if size > limit:
                raise NotRegularError(f"{name}: larger than {limit} bytes")
            chunks.append(chunk)
            if size == info.st_size:
                break  # all of it: a file that had grown would have given more than asked
            ask = 65536
        return b"".join(chunks)
    finally:
        os.close(fd)


def _stamp(info: os.stat_result) -> str:
    return f"{info.st_size}/{info.st_mtime_ns}"


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
        old_files = unpack_stamps(previous.get("files"))
        # objects to read again when the window moves: recurring ones, and one-offs ahead of it
        old_revisit = set(previous.get("revisit") or [])
        window_key = [window.start.isoformat(), window.end.isoformat()]
        moved = previous.get("window") != window_key
        batch = SourceBatch()
        files: dict[str, str] = {}
        revisit: set[str] = set()
        to_read: list[tuple[os.DirEntry[str], str]] = []
        for entry in os.scandir(self.path):
            name = entry.name
            if not name.endswith(".ics") or not entry.is_file(follow_symlinks=False):
                continue
            stamp = _stamp(entry.stat())
            item = object_id(name)
            files[item] = stamp
            if old_files.get(item) == stamp and not (moved and item in old_revisit):
                if item in old_revisit:
                    revisit.add(item)
                continue
            to_read.append((entry, item))
        for entry, item in sorted(to_read, key=lambda pair: pair[0].name):
            try:
                data = read_regular(entry.path)
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
        batch.cursor = {
            "v": VDIR_CURSOR,
            "files": pack_stamps(files),
            "revisit": sorted(revisit),
            "window": window_key,
        }
        return batch

    def close(self) -> None:
        return None


def _hash(text: str) -> str:
    """A short stable hash for logs: file names can carry client data."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _etag(path: Path) -> str:
    info = os.lstat(path)
    return f"{info.st_mtime_ns}-{info.st_size}"


# What the sink read from its files, kept between passes (see the module's docstring).
MEMO_NAME = "vdir-reminders.json"
MEMO_FORMAT = 1
# A file changed this recently may change again within the file system's clock tick without
# its stamp moving: it is read again next pass rather than remembered.
_SETTLED_NS = 2_000_000_000
_UTC = ZoneInfo("UTC")  # what icalendar gives for a ...Z time, the only kind the memo keeps


def _file_stamp(info: os.stat_result) -> list[int]:
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _memo_entry(item: Managed | None) -> dict[str, Any] | bool | None:
    """The item's fields read from the file, as JSON; False when it cannot be kept exactly."""
    if item is None:
        return None  # a callsheet-* file without our key
    if item.start is not None and item.start.tzinfo is not _UTC:
        return False  # a time zone other than UTC: read it again each pass
    return {
        "key": item.key,
        "kind": item.kind,
        "start": item.start.replace(tzinfo=None).isoformat() if item.start is not None else None,
        "status": item.status,
        "payload_hash": item.payload_hash,
        "client_id": item.client_id,
        "reason": item.reason,
        "uid": item.uid,
        "owner": item.owner,
        "generation": item.generation,
    }


def _from_memo(entry: dict[str, Any], *, ref: str, etag: str, name: str) -> Managed:
    start = entry["start"]
    return Managed(
        key=entry["key"],
        kind=entry["kind"],
        ref=ref,
        etag=etag,
        start=datetime.fromisoformat(start).replace(tzinfo=_UTC) if start is not None else None,
        status=entry["status"],
        payload_hash=entry["payload_hash"],
        client_id=entry["client_id"],
        reason=entry["reason"],
        uid=entry["uid"],
        named=parse_file_name(name),
        owner=entry["owner"],
        generation=entry["generation"],
    )


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
        self.memo_path: Path | None = settings.state_dir / MEMO_NAME
        self._learnt: dict[str, Any] | None = None  # what the last listing read, until sweep() keeps it

    def kinds(self) -> frozenset[ItemKind]:
        return frozenset(self.folders)

    def sweep(self) -> int:
        """Remove temporary files a killed pass left behind, and keep what the listing read in
        the memo (the caller holds the run lock: only a pass that writes calls this, never
        `plan`, `status` or `check`, which write nothing)."""
        removed = 0
        for folder in self.folders.values():
            if folder.is_dir():
                for leftover in folder.glob(".callsheet-*.tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        leftover.unlink()
                        removed += 1
        if self._learnt is not None:
            self._save_memo(self._learnt)
            self._learnt = None
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

    def _load_memo(self) -> dict[str, Any]:
        if self.memo_path is None:
            return {}
        try:
            memo = json.loads(self.memo_path.read_bytes())
        except (OSError, ValueError):
            return {}
        if (
            not isinstance(memo, dict)
            or memo.get("format") != MEMO_FORMAT
            or memo.get("version") != __version__
        ):
            return {}
        files = memo.get("files")
        return files if isinstance(files, dict) else {}

    def _save_memo(self, files: dict[str, Any]) -> None:
        if self.memo_path is None or not self.memo_path.parent.is_dir():
            return
        data = json.dumps({"format": MEMO_FORMAT, "version": __version__, "files": files}, sort_keys=True)
        with contextlib.suppress(OSError):  # a memo that cannot be written is read again next pass
            write_private(self.memo_path, data)

    def managed(self) -> Iterator[Managed]:
        """Every item with our key in the folders (one folder may hold events and tasks)."""
        self.skipped = 0
        seen: set[str] = set()
        memo = self._load_memo()
        kept: dict[str, Any] = {}
        for folder in self.folders.values():
            if not folder.is_dir() or str(folder.resolve()) in seen:
                continue
            seen.add(str(folder.resolve()))
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if not (entry.name.startswith("callsheet-") and entry.name.endswith(".ics")):
                    continue
                item = self._item(entry, memo, kept)
                if item is not None and item.kind in self.folders:
                    yield item
        self._learnt = kept if kept != memo else None

    def _item(self, entry: os.DirEntry[str], memo: dict[str, Any], kept: dict[str, Any]) -> Managed | None:
        """The item in one file: from the memo when its stamp is unchanged, else read and parsed."""
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            return None
        stamp = _file_stamp(info)
        etag = f"{info.st_mtime_ns}-{info.st_size}"  # what _etag() says of the same stat
        known = memo.get(entry.path)
        if stat.S_ISREG(info.st_mode) and isinstance(known, dict) and known.get("stamp") == stamp:
            kept[entry.path] = known
            found = known.get("item")
            try:
                return (
                    None if found is None else _from_memo(found, ref=entry.path, etag=etag, name=entry.name)
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                kept.pop(entry.path)  # a damaged entry: read the file
        try:
            data = read_regular(entry.path)
        except NotRegularError:
            self.skipped += 1
            log.warning("sink.item.special", item=_hash(entry.name))
            return None
        except OSError:
            return None
        item = read_item(data, ref=entry.path, etag=etag, name=parse_file_name(entry.name))
        remembered = _memo_entry(item)
        if remembered is not False and time.time_ns() - info.st_ctime_ns > _SETTLED_NS:
            kept[entry.path] = {"stamp": stamp, "item": remembered}
        return item

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
