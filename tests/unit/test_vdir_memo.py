"""The vdir sink's memo (state_dir/vdir-reminders.json): what it gives is what the files say."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import connectors.vdir
from connectors.vdir import MEMO_NAME, VdirSink
from tests.practice import Practice
from worker.config import load_settings
from worker.model import ClientId, Managed, Reason, Reminder, reminder_key

START = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def _reminder(kind: str, anchor: str) -> Reminder:
    return Reminder(
        key=reminder_key("c001", "no_show", anchor, ""),
        kind=kind,  # type: ignore[arg-type]
        client_id=ClientId("c001"),
        reason=Reason.NO_SHOW,
        start=START,
        end=START + timedelta(minutes=15),
        title="Call A.Q.",
        description="body",
        payload_hash=f"hash-{anchor}",
    )


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[VdirSink]:
    practice = Practice(tmp_path)
    settings = load_settings(practice.config)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    made = VdirSink(settings, settings.reminders)
    yield made
    made.close()


def _fill(sink: VdirSink, monkeypatch: pytest.MonkeyPatch) -> list[Managed]:
    """Three items (an event, an open task, a completed task), listed once to fill the memo."""
    monkeypatch.setattr(connectors.vdir, "_SETTLED_NS", -1)
    sink.create(_reminder("event", "a"))
    sink.create(_reminder("task", "a"))
    done = sink.create(_reminder("task", "b"))
    task = next(i for i in sink.managed() if i.ref == done.ref)
    sink.withdraw(task, note="resolved", delete=False)
    items = list(sink.managed())
    sink.sweep()  # as a pass does after its listing: the memo is written
    return items


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a remembered file was parsed")

    monkeypatch.setattr(connectors.vdir, "read_item", refuse)


def test_remembered_items_equal_fresh_reads(sink: VdirSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listing from the memo equals a fresh one field by field, time zone object included."""
    fresh = _fill(sink, monkeypatch)
    assert {i.status for i in fresh} == {"open", "completed"} and len(fresh) == 3
    _no_parsing(monkeypatch)
    remembered = list(sink.managed())
    assert remembered == fresh
    assert [i.start.tzinfo if i.start else None for i in remembered] == [
        i.start.tzinfo if i.start else None for i in fresh
    ]
    assert [i.named for i in remembered] == [i.named for i in fresh]


def test_edit_keeping_size_and_mtime_is_read_again(sink: VdirSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """A same-size edit in place with its mtime put back is seen (the ctime moved)."""
    fresh = _fill(sink, monkeypatch)
    target = next(i for i in fresh if i.kind == "event")
    path = Path(target.ref)
    before = path.stat()
    time.sleep(0.05)  # past the file system's clock tick
    data = path.read_bytes().replace(b"hash-a", b"hash-z")
    with path.open("r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    again = {i.ref: i for i in sink.managed()}
    assert again[target.ref].payload_hash == "hash-z"


def test_new_files_are_not_remembered(sink: VdirSink) -> None:
    """A file written within the last seconds is read again next pass, not remembered."""
    sink.create(_reminder("event", "a"))
    assert len(list(sink.managed())) == 1
    sink.sweep()
    memo = sink.memo_path
    assert memo is not None
    assert not memo.exists() or json.loads(memo.read_text())["files"] == {}


def test_listing_alone_writes_no_memo(sink: VdirSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a writing pass (which sweeps) keeps the memo: plan, status and check write nothing."""
    monkeypatch.setattr(connectors.vdir, "_SETTLED_NS", -1)
    sink.create(_reminder("event", "a"))
    assert len(list(sink.managed())) == 1
    assert sink.memo_path is not None and not sink.memo_path.exists()
    sink.sweep()
    assert sink.memo_path.exists()


def test_a_damaged_memo_is_ignored_and_replaced(sink: VdirSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """Garbage, a wrong format or damaged entries in the memo never change what is listed."""
    fresh = _fill(sink, monkeypatch)
    memo = sink.memo_path
    assert memo is not None and memo.stat().st_mode & 0o777 == 0o600
    good = json.loads(memo.read_text())
    for damaged in (
        b"{not json",
        json.dumps({**good, "format": 0}).encode(),
        json.dumps({**good, "version": "0.0.0"}).encode(),
        json.dumps(
            {**good, "files": {k: {**v, "item": {"key": 1}} for k, v in good["files"].items()}}
        ).encode(),
    ):
        memo.write_bytes(damaged)
        assert list(sink.managed()) == fresh
        sink.sweep()
    assert json.loads(memo.read_text()) == good


def test_no_memo_without_a_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sink never creates state_dir for its memo (plan on a new practice writes nothing)."""
    monkeypatch.setattr(connectors.vdir, "_SETTLED_NS", -1)
    practice = Practice(tmp_path)
    settings = load_settings(practice.config)
    sink = VdirSink(settings, settings.reminders)
    sink.create(_reminder("event", "a"))
    assert len(list(sink.managed())) == 1
    sink.sweep()
    assert not settings.state_dir.exists() and not (settings.state_dir / MEMO_NAME).exists()
