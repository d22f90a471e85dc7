"""An in-memory reminder sink that satisfies the Sink protocol, for tests.

It stores items as iCalendar bytes through the same connectors.ical functions the real sinks
use, counts every call, and can be told to fail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

from connectors.base import Capabilities, Receipt
from connectors.ical import build_item, complete_item, read_item, update_item
from worker.errors import ConflictError, RefusedError, TransientError
from worker.identity import file_name, parse_file_name
from worker.model import ItemKind, Managed, Reminder


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
