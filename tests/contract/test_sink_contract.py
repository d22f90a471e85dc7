"""The contract every reminder sink keeps, run against vdir and the in-memory fake.

Other connectors (CalDAV, Google) run the same class from their own test modules by
subclassing SinkContract and providing the `sink` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.base import Sink
from connectors.vdir import VdirSink
from tests.fakes.memory import MemorySink
from tests.practice import Practice
from worker.config import load_settings
from worker.errors import ConflictError
from worker.model import ClientId, Managed, Reason, Reminder, reminder_key

START = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def reminder(kind: str = "event", *, text: str = "first", anchor: str = "uid-1") -> Reminder:
    key = reminder_key("c001", "no_show", anchor, "")
    return Reminder(
        key=key,
        kind=kind,  # type: ignore[arg-type]
        client_id=ClientId("c001"),
        reason=Reason.NO_SHOW,
        start=START,
        end=START + timedelta(minutes=15),
        title=f"Call A.Q. — missed Tue 10:00 ({text})",
        description=f"body {text}",
        payload_hash=f"hash-{text}",
    )


class SinkContract:
    """Behaviour the runner relies on from every sink."""

    def test_create_then_list(self, sink: Sink) -> None:
        """A created reminder is listed with its key, kind, start, hash and client."""
        sink.create(reminder())
        (item,) = list(sink.managed())
        assert (item.key, item.kind, item.status) == (reminder().key, "event", "open")
        assert item.start == START and item.payload_hash == "hash-first" and item.client_id == "c001"

    def test_create_twice_adopts(self, sink: Sink) -> None:
        """Creating the same key again leaves one item (a retried write never duplicates)."""
        first = sink.create(reminder())
        second = sink.create(reminder(text="second"))
        assert first.ref == second.ref
        items = list(sink.managed())
        assert len(items) == 1 and items[0].payload_hash == "hash-first"

    def test_update_keeps_time(self, sink: Sink) -> None:
        """An update rewrites the text and keeps the item's time."""
        sink.create(reminder())
        (item,) = list(sink.managed())
        sink.update(reminder(text="second"), item)
        (after,) = list(sink.managed())
        assert after.payload_hash == "hash-second" and after.start == START

    def test_update_with_stale_etag_conflicts(self, sink: Sink) -> None:
        """An update based on an old read raises ConflictError instead of overwriting."""
        sink.create(reminder())
        (item,) = list(sink.managed())
        sink.update(reminder(text="second"), item)
        with pytest.raises(ConflictError):
            sink.update(reminder(text="third"), item)

    def test_task_is_completed_on_withdraw(self, sink: Sink) -> None:
        """Withdrawing a task completes it; it stays listed as completed."""
        sink.create(reminder("task"))
        (item,) = list(sink.managed())
        sink.withdraw(item, note="resolved", delete=False)
        (after,) = list(sink.managed())
        assert after.kind == "task" and after.status == "completed"

    def test_event_is_deleted_on_withdraw(self, sink: Sink) -> None:
        """Withdrawing with delete removes the event (a calendar that remembers deleted ids may
        still list it, as cancelled)."""
        sink.create(reminder())
        (item,) = list(sink.managed())
        sink.withdraw(item, note="resolved", delete=True)
        assert [i for i in sink.managed() if i.status == "open"] == []

    def test_delete_only_the_item(self, sink: Sink) -> None:
        """Purging one item leaves the others."""
        sink.create(reminder(anchor="a"))
        sink.create(reminder(anchor="b"))
        first = next(i for i in sink.managed() if i.key == reminder(anchor="a").key)
        sink.delete(first)
        assert [i.key for i in sink.managed() if i.status == "open"] == [reminder(anchor="b").key]


class TestMemorySink(SinkContract):
    @pytest.fixture
    def sink(self) -> Iterator[Sink]:
        yield MemorySink()


class TestVdirSink(SinkContract):
    @pytest.fixture
    def sink(self, tmp_path: Path) -> Iterator[Sink]:
        practice = Practice(tmp_path)
        settings = load_settings(practice.config)
        sink = VdirSink(settings, settings.reminders)
        yield sink
        sink.close()

    def test_files_are_private(self, sink: Sink, tmp_path: Path) -> None:
        """Reminder files are created 0600: they hold phone numbers."""
        sink.create(reminder())
        (path,) = (tmp_path / "out" / "calls").glob("callsheet-*.ics")
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.name == f"callsheet-{reminder().key}-e1.ics"


class TestVdirSinkFromMemo(TestVdirSink):
    """The vdir sink once more, with every file remembered at once: each listing after the
    first comes from state_dir/vdir-reminders.json, and the contract must still hold."""

    @pytest.fixture
    def sink(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sink]:
        import connectors.vdir

        monkeypatch.setattr(connectors.vdir, "_SETTLED_NS", -1)
        practice = Practice(tmp_path)
        settings = load_settings(practice.config)
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        sink = _Remembering(settings, settings.reminders)
        yield sink
        sink.close()


class _Remembering(VdirSink):
    """Keeps the memo after every listing, as a pass does when it sweeps after its listing."""

    def managed(self) -> Iterator[Managed]:
        items = list(super().managed())
        self.sweep()
        return iter(items)
