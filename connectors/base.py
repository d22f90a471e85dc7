"""The Source and Sink protocols every connector satisfies, and the registry of kinds.

A connector converts library objects into worker.model values in one place; library types
never cross this seam. The registry imports connector modules lazily, so the Google libraries
load only when a Google calendar is configured.
"""

from __future__ import annotations

import importlib
import os
import posixpath
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from worker.errors import ConfigError, Problem
from worker.identity import owner_mark
from worker.model import ItemKind, Managed, Reminder, SourceBatch, Window

if TYPE_CHECKING:
    from worker.config import ReminderSettings, Settings, SourceSettings


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the sink did: the item's reference and etag after the write (empty when deleted)."""

    ref: str = ""
    etag: str = ""
    gone: bool = False


class Source(Protocol):
    """A read-only calendar of appointments."""

    name: str

    def read(self, window: Window, cursor: dict[str, object] | None) -> SourceBatch:
        """Return what changed since `cursor` (everything when None) and the next cursor.

        A listing that may be partial (a truncated answer) must not name objects as removed
        and must not set `complete`; the runner's source-loss guard sees every removal.
        """
        ...

    def describe(self) -> list[str]:
        """Lines for `check`: what this connector sees (calendars, component sets); may be empty."""
        ...

    def close(self) -> None: ...


class Capabilities:
    """Defaults for the optional parts of the contract; connectors inherit and override.

    `describe` says what the connector sees (for `check`); `sweep` removes what a killed pass
    left behind (temporary files) and returns how many.
    """

    def describe(self) -> list[str]:
        return []

    def sweep(self) -> int:
        return 0


class Sink(Protocol):
    """Where reminders are written. Only items carrying our key are ever touched."""

    name: str

    def kinds(self) -> frozenset[ItemKind]:
        """The item kinds this sink can hold ("event", "task")."""
        ...

    def managed(self) -> Iterable[Managed]:
        """Every item carrying an X-CALLSHEET-KEY, in any status, with its uid, resource name,
        owner mark and generation filled in. Ownership is judged once, by the runner
        (`worker.identity.foreign_reason`); the sink never acts on items it was not handed.
        Never an item outside the configured collection or folder."""
        ...

    def create(self, reminder: Reminder) -> Receipt:
        """Create the item under `worker.identity`'s UID and resource name for its key, kind and
        generation, with the owner mark and `alarm_minutes`; when our item with that name
        exists (an earlier attempt), return it unchanged (adopt). A name held by anything
        else: RefusedError. A per-item refusal by the server: RefusedError.

        When the key belongs to an item the therapist deleted and the calendar remembers that
        (Google keeps deleted ids), return a Receipt with `gone=True`: the need is handled.
        """
        ...

    def update(self, reminder: Reminder, item: Managed) -> Receipt:
        """Rewrite title and description, keeping the item's time. ConflictError if it moved."""
        ...

    def withdraw(self, item: Managed, *, note: str, delete: bool) -> Receipt:
        """Delete an event (delete=True) or complete a task with `note`."""
        ...

    def delete(self, item: Managed) -> None:
        """Remove one of our items outright (`callsheet purge`); already gone is success."""
        ...

    def describe(self) -> list[str]:
        """Lines for `check`: what this connector sees; may be empty."""
        ...

    def sweep(self) -> int:
        """Remove leftovers of a killed pass (the caller holds the run lock); how many."""
        ...

    def close(self) -> None: ...


_SOURCES = {
    "vdir": "connectors.vdir:VdirSource",
    "caldav": "connectors.caldav:CalDavSource",
    "google": "connectors.google:GoogleSource",
}
_SINKS = {
    "vdir": "connectors.vdir:VdirSink",
    "caldav": "connectors.caldav:CalDavSink",
    "google": "connectors.google:GoogleSink",
}


def _load(table: dict[str, str], kind: str, section: str) -> type:
    target = table.get(kind)
    if target is None:
        raise ConfigError([Problem(f"[{section}] kind", f"unknown kind {kind!r}")])
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    cls: type = getattr(module, attr)
    return cls


def open_source(settings: Settings, source: SourceSettings) -> Source:
    """Build the configured source connector."""
    cls = _load(_SOURCES, source.kind, "source")
    built: Source = cls(settings, source)
    return built


def open_sink(settings: Settings, reminders: ReminderSettings) -> Sink:
    """Build the configured reminder sink, after checking it is no source (`check_locations`).

    Raises:
        ConfigError: the reminders would be written into an appointment calendar.
    """
    check_locations(settings)
    cls = _load(_SINKS, reminders.kind, "reminders")
    built: Sink = cls(settings, reminders)
    return built


# -- identities: which calendar is which, whatever the spelling ------------------------------


def normalise_url(url: str) -> str:
    """A CalDAV collection URL in one spelling: scheme and host lower case, default port made
    explicit, percent-escapes decoded, dot segments and duplicate slashes removed, one
    trailing slash. Used for the owner mark and (with resolved hosts) the never-write check."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    path = unquote(parts.path or "/")
    while "//" in path:
        path = path.replace("//", "/")
    path = posixpath.normpath(path) if path not in ("", "/") else "/"
    path = path.rstrip("/") + "/"
    return f"{scheme}://{host}:{port}{path}"


def _host_addresses(host: str) -> set[str]:
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return {host}
    addresses = {str(info[4][0]) for info in infos}
    # 'localhost' resolves to both loopbacks; treat every loopback address as one host
    return {"loopback" if a.startswith("127.") or a == "::1" else a for a in addresses} or {host}


def url_locations(url: str) -> set[str]:
    """Every spelling-independent name of a collection URL: one per address its host resolves to."""
    normal = normalise_url(url)
    parts = urlsplit(normal)
    host = parts.hostname or ""
    return {f"{parts.scheme}://{addr}:{parts.port}{parts.path}" for addr in _host_addresses(host)}


def folder_locations(path: Path) -> set[str]:
    """A folder's names: device and inode when it exists (bind mounts, links), else its real path."""
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError:
        return {f"path:{real}"}
    return {f"inode:{info.st_dev}:{info.st_ino}", f"path:{real}"}


def source_identities(source: SourceSettings) -> list[str]:
    """The configured source(s) in a normalised spelling (the owner mark is derived from it).

    No I/O beyond resolving a folder path: the mark must not change with DNS or a restart.
    """
    if source.kind == "vdir":
        return [f"vdir:{os.path.realpath(source.path)}"] if source.path is not None else []
    if source.kind == "caldav":
        return [f"caldav:{normalise_url(u)}" for u in source.all_urls]
    return [f"google:{c}" for c in source.all_calendar_ids]


def source_locations(source: SourceSettings) -> set[str]:
    """Where the source lives, by identity (resolved addresses, device and inode)."""
    if source.kind == "vdir":
        return folder_locations(source.path) if source.path is not None else set()
    if source.kind == "caldav":
        return set().union(*(url_locations(u) for u in source.all_urls)) if source.all_urls else set()
    return {f"google:{c}" for c in source.all_calendar_ids}


def sink_locations(reminders: ReminderSettings) -> set[str]:
    """Where the reminders are written, by identity."""
    if reminders.kind == "vdir":
        folders = [p for p in (reminders.events_path, reminders.tasks_path) if p is not None]
        return set().union(*(folder_locations(p) for p in folders)) if folders else set()
    if reminders.kind == "caldav":
        urls = [u for u in (reminders.events_url, reminders.tasks_url) if u]
        return set().union(*(url_locations(u) for u in urls)) if urls else set()
    return {f"google:{reminders.calendar_id}"} if reminders.calendar_id else set()


def owner_of(settings: Settings) -> str:
    """This installation's owner mark (X-CALLSHEET-OWNER), from its configured source(s)."""
    return owner_mark(source_identities(settings.source))


def check_locations(settings: Settings) -> None:
    """Refuse a configuration whose reminders would land in an appointment calendar.

    Compared by identity, not spelling: resolved host addresses, decoded and normalised paths,
    device and inode of folders (a link or a bind mount is the same folder).

    Raises:
        ConfigError: a reminders calendar or folder is (also) a source.
    """
    clash = source_locations(settings.source) & sink_locations(settings.reminders)
    if clash:
        raise ConfigError(
            [
                Problem(
                    f"{settings.path} [reminders]",
                    "the reminders would be written into the appointment calendar ([source]); "
                    "callsheet never writes the source: point [reminders] at a calendar or folder of its own",
                )
            ]
        )


if TYPE_CHECKING:
    # Every connector satisfies the contract: checked statically by `mypy --strict` (never
    # imported at run time, so the heavy libraries still load only when configured).
    from connectors.caldav import CalDavSink, CalDavSource
    from connectors.google import GoogleSink, GoogleSource
    from connectors.vdir import VdirSink, VdirSource

    _SOURCE_CLASSES: tuple[type[Source], ...] = (VdirSource, CalDavSource, GoogleSource)
    _SINK_CLASSES: tuple[type[Sink], ...] = (VdirSink, CalDavSink, GoogleSink)
