"""The Source and Sink protocols every connector satisfies, and the registry of kinds.

A connector converts library objects into worker.model values in one place; library types
never cross this seam. The registry imports connector modules lazily, so the Google libraries
load only when a Google calendar is configured.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from worker.errors import ConfigError, Problem
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
        """Return what changed since `cursor` (everything when None) and the next cursor."""
        ...

    def close(self) -> None: ...


class Sink(Protocol):
    """Where reminders are written. Only items carrying our key are ever touched."""

    name: str

    def kinds(self) -> frozenset[ItemKind]:
        """The item kinds this sink can hold ("event", "task")."""
        ...

    def managed(self) -> Iterable[Managed]:
        """Every item carrying an X-CALLSHEET-KEY (ours), in any status."""
        ...

    def create(self, reminder: Reminder) -> Receipt:
        """Create the item; when one with the same key exists, return it unchanged (adopt).

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
        """Remove one of our items outright (`callsheet purge`)."""
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
    """Build the configured reminder sink."""
    cls = _load(_SINKS, reminders.kind, "reminders")
    built: Sink = cls(settings, reminders)
    return built
