"""An in-memory reminder sink and appointment source that satisfy the Sink and Source protocols.

The sink stores items as iCalendar bytes through the same connectors.ical functions the real
sinks use, counts every call, and can be told to fail. The source holds appointment objects as
iCalendar bytes and reads them through `connectors.ical.parse_calendar`, incrementally.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo

import structlog

from connectors.base import Capabilities, Receipt
from connectors.ical import build_item, complete_item, parse_calendar, read_item, update_item
from worker.errors import ConflictError, DataError, RefusedError, TransientError
from worker.identity import file_name, parse_file_name
from worker.model import ItemKind, Managed, Reminder, SourceBatch, Window

log = structlog.get_logger()


class MemorySink(Capabilities):
    """Reminders kept in a dict {ref: bytes}; etags are a counter per ref."""

    name = "memory"

    def __init__(self, kinds: frozenset[ItemKind] = frozenset({"event", "task"})) -> None:
        self._kinds = kinds
        self.items: dict[str, bytes] = {}
        self.etags: dict[str, int] = {}
        self.calls: Counter[str] = Counter()
        self.fail_after: int | None = None
        # refs (or "kind/" prefixes) the "server" refuses to write: tests of per-item failures
        self.refuse: set[str] = set()

    def _tick(self, op: str) -> None:
        self.calls[op] += 1
        if self.fail_after is not None:
            if self.fail_after <= 0:
                raise TransientError("injected failure", operation=op)
            self.fail_after -= 1

    def _store(self, ref: str, data: bytes) -> Receipt:
        self.items[ref] = data
        self.etags[ref] = self.etags.get(ref, 0) + 1
        return Receipt(ref=ref, etag=str(self.etags[ref]))

    def kinds(self) -> frozenset[ItemKind]:
        return self._kinds

    def managed(self) -> Iterator[Managed]:
        self._tick("list")
        for ref, data in sorted(self.items.items()):
            item = read_item(
                data, ref=ref, etag=str(self.etags[ref]), name=parse_file_name(ref.split("/", 1)[1])
            )
            if item is not None:
                yield item

    def create(self, reminder: Reminder) -> Receipt:
        self._tick("create")
        ref = f"{reminder.kind}/{file_name(reminder.key, reminder.kind, reminder.generation)}"
        if ref in self.refuse or f"{reminder.kind}/" in self.refuse:
            raise RefusedError("injected refusal", operation="create")
        if ref in self.items:
            return Receipt(ref=ref, etag=str(self.etags[ref]))
        return self._store(ref, build_item(reminder, stamp=datetime.now(UTC)))

    def update(self, reminder: Reminder, item: Managed) -> Receipt:
        self._tick("update")
        if item.ref not in self.items or str(self.etags[item.ref]) != item.etag:
            raise ConflictError("changed since read", operation="update")
        return self._store(item.ref, update_item(self.items[item.ref], reminder, stamp=datetime.now(UTC)))

    def withdraw(self, item: Managed, *, note: str, delete: bool) -> Receipt:
        self._tick("withdraw")
        if delete:
            self.items.pop(item.ref, None)
            return Receipt(ref=item.ref, gone=True)
        if item.ref not in self.items:
            return Receipt(ref=item.ref, gone=True)
        return self._store(item.ref, complete_item(self.items[item.ref], note=note, stamp=datetime.now(UTC)))

    def delete(self, item: Managed) -> None:
        self._tick("delete")
        self.items.pop(item.ref, None)

    def close(self) -> None:
        return None

    # -- what a therapist does by hand ------------------------------------------------------------

    def ref_of(self, key: str, kind: ItemKind) -> str:
        """The ref of the newest item of this key and kind."""
        refs = sorted(r for r in self.items if r.startswith(f"{kind}/callsheet-{key}"))
        return max(refs, key=lambda r: (len(r), r))

    def therapist_deletes(self, key: str, kind: ItemKind = "event") -> None:
        self.items.pop(self.ref_of(key, kind))

    def therapist_completes(self, key: str) -> None:
        ref = self.ref_of(key, "task")
        self._store(ref, complete_item(self.items[ref], note="done", stamp=datetime.now(UTC)))


class MemorySource(Capabilities):
    """Appointment objects kept in a dict {name: iCalendar bytes}; each write bumps a version.

    A read lists what changed since the cursor (versions per name), every object when the
    window moved (cheap here, and it re-expands the recurring ones), and what disappeared.
    """

    def __init__(
        self,
        name: str = "memory",
        *,
        tz: tzinfo = UTC,
        default_length: timedelta = timedelta(minutes=50),
    ) -> None:
        self.name = name
        self.tz = tz
        self.default_length = default_length
        self.objects: dict[str, bytes] = {}
        self.versions: dict[str, int] = {}
        self._counter = 0

    def put(self, name: str, data: bytes) -> None:
        """Store (or replace) one object."""
        self._counter += 1
        self.objects[name] = data
        self.versions[name] = self._counter

    def remove(self, name: str) -> None:
        self.objects.pop(name, None)
        self.versions.pop(name, None)

    def read(self, window: Window, cursor: dict[str, object] | None) -> SourceBatch:
        """What changed since `cursor` (everything when None, or when the window moved)."""
        previous = cursor or {}
        old = previous.get("versions")
        old_versions = {str(k): v for k, v in old.items()} if isinstance(old, dict) else {}
        window_key = [window.start.isoformat(), window.end.isoformat()]
        moved = previous.get("window") != window_key
        batch = SourceBatch()
        for name, data in sorted(self.objects.items()):
            if not moved and old_versions.get(name) == self.versions[name]:
                continue
            try:
                batch.changed[name] = parse_calendar(
                    data,
                    item=name,
                    source=self.name,
                    window=window,
                    tz=self.tz,
                    default_length=self.default_length,
                )
            except DataError as exc:
                # the name may carry client data: only its hash reaches the log
                log.warning("source.item.skipped", item=_short(name), problem=str(exc))
                batch.bad += 1
        batch.removed = {name for name in old_versions if name not in self.objects}
        batch.cursor = {"versions": dict(self.versions), "window": window_key}
        return batch

    def close(self) -> None:
        return None


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]
