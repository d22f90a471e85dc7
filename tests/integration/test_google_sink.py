"""The Google sink against the fake: idempotent inserts (409 adopt), the therapist deleting or
completing reminders, withdrawals, updates that keep the time, tasks that are never duplicated."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.base import open_sink
from connectors.google.sink import GoogleSink
from tests.fakes.google import SAMPLE_NOW, FakeGoogle, GooglePractice, google_practice
from tests.practice import local
from worker.cli import main
from worker.config import load_settings
from worker.errors import ConflictError, RefusedError
from worker.model import ClientId, ItemKind, Reason, Reminder, SystemReason, reminder_key

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("google_fast_retries")]

SOON = "2026-03-18T12:05:00-05:00"
KEY = reminder_key("c001", "no_show", "series-x", "20260223T160000Z")
EVENT_ID = f"{KEY}e1"  # identity.google_event_id(key, generation 1)


@pytest.fixture
def sink(gp: GooglePractice) -> Iterator[GoogleSink]:
    settings = load_settings(gp.config)
    opened = open_sink(settings, settings.reminders)
    assert isinstance(opened, GoogleSink)
    yield opened
    opened.close()


def _reminder(
    kind: ItemKind = "event",
    *,
    title: str = "Call A.Q. — missed Mon 10:00",
    hash_: str = "h1",
    start: str = "2026-03-18 23:30",
) -> Reminder:
    key = reminder_key("c001", "no_show", "series-x", "20260223T160000Z")
    at = local(start)
    return Reminder(
        key=key,
        kind=kind,
        client_id=ClientId("c001"),
        reason=Reason.NO_SHOW,
        start=at,
        end=at + timedelta(minutes=15),
        title=title,
        description="Phone: +1 555 0199",
        payload_hash=hash_,
    )


def _run(gp: GooglePractice, now: str = SAMPLE_NOW) -> int:
    return main(["--config", str(gp.config), "run", "--once", "--now", now])


def test_create_twice_adopts_the_existing_event_after_a_409(gp: GooglePractice, sink: GoogleSink) -> None:
    """A second insert of the same key answers 409; the live event is fetched and adopted."""
    first = sink.create(_reminder())
    second = sink.create(_reminder())
    assert first.ref == second.ref == EVENT_ID
    assert [c.status for c in gp.fake.calls("calendar.events.insert")] == [200, 409]
    assert len(gp.fake.calls("calendar.events.get")) == 1
    assert len(gp.ours()) == 1


def test_create_of_an_event_the_therapist_deleted_is_gone_and_listed_cancelled(
    gp: GooglePractice, sink: GoogleSink
) -> None:
    """A deleted reminder (cancelled tombstone) is never revived: create says gone, managed() says cancelled."""
    sink.create(_reminder())
    gp.fake.delete_event(gp.calls_calendar, EVENT_ID)
    receipt = sink.create(_reminder())
    assert receipt.gone is True
    assert [c.status for c in gp.fake.calls("calendar.events.insert")][-1] == 409
    held = list(sink.managed())
    assert [(m.key, m.status) for m in held if m.kind == "event"] == [(_reminder().key, "cancelled")]
    listing = [c for c in gp.fake.calls("calendar.events.list") if c.param("privateExtendedProperty")]
    assert listing[-1].param("privateExtendedProperty") == "x-callsheet-app=callsheet"
    assert listing[-1].param("showDeleted") == "true"


def test_update_rewrites_text_and_hash_but_keeps_the_time_the_therapist_chose(
    gp: GooglePractice, sink: GoogleSink
) -> None:
    """update() patches title, description and hash only; a moved reminder stays where it was put."""
    sink.create(_reminder())
    moved = {"dateTime": "2026-03-19T16:00:00-05:00", "timeZone": "America/Chicago"}
    gp.fake.update_event(gp.calls_calendar, EVENT_ID, {"start": moved, "end": moved})
    item = next(m for m in sink.managed() if m.kind == "event")
    sink.update(_reminder(title="Call A.Q. — new text", hash_="h2"), item)
    event = gp.ours()[0]
    assert event["summary"] == "Call A.Q. — new text"
    assert event["start"] == moved
    assert event["extendedProperties"]["private"]["x-callsheet-hash"] == "h2"
    assert next(m for m in sink.managed() if m.kind == "event").payload_hash == "h2"


def test_update_of_an_event_changed_since_it_was_read_is_a_conflict(
    gp: GooglePractice, sink: GoogleSink
) -> None:
    """The patch carries If-Match: an edit in between answers 412, a ConflictError."""
    sink.create(_reminder())
    item = next(m for m in sink.managed() if m.kind == "event")
    gp.fake.update_event(gp.calls_calendar, EVENT_ID, {"colorId": "5"})
    with pytest.raises(ConflictError):
        sink.update(_reminder(hash_="h2"), item)


def test_tasks_carry_the_key_on_the_last_line_and_a_date_in_the_practice_zone(
    gp: GooglePractice, sink: GoogleSink
) -> None:
    """A task's due is the reminder's local date (23:30 Chicago is not the next UTC day); the notes end with a separator and the key line."""
    sink.create(_reminder("task"))
    task = gp.tasks()[0]
    assert task["due"] == "2026-03-18T00:00:00.000Z"
    assert task["title"] == "Call A.Q. — missed Mon 10:00"
    assert task["notes"].splitlines()[-2:] == [
        "-- callsheet --",
        f"callsheet-key: {_reminder().key} uid=callsheet-{_reminder().key}-t1 reason=no_show client=c001 hash=h1",
    ]
    held = [m for m in sink.managed() if m.kind == "task"]
    assert [(m.key, m.status, m.payload_hash, m.client_id) for m in held] == [
        (_reminder().key, "open", "h1", "c001")
    ]
    call = gp.fake.calls("tasks.tasks.list")[-1]
    assert (call.param("showCompleted"), call.param("showHidden"), call.param("showDeleted")) == ("true",) * 3


def test_withdrawing_a_task_completes_it_with_a_note_above_the_key_line(
    gp: GooglePractice, sink: GoogleSink
) -> None:
    """withdraw() completes the task, says why, and keeps the key as the last line."""
    sink.create(_reminder("task"))
    item = next(m for m in sink.managed() if m.kind == "task")
    sink.withdraw(item, note="resolved", delete=False)
    task = gp.tasks()[0]
    assert task["status"] == "completed"
    lines = task["notes"].splitlines()
    assert lines[-1].startswith("callsheet-key: ") and "callsheet: closed (resolved)." in lines
    assert next(m for m in sink.managed() if m.kind == "task").status == "completed"


def test_purge_deletes_only_our_items(gp: GooglePractice, capsys: pytest.CaptureFixture[str]) -> None:
    """`callsheet purge --yes` removes every reminder we wrote and nothing the therapist made."""
    assert _run(gp) == 0
    gp.fake.add_event(
        gp.calls_calendar,
        {
            "summary": "my own note",
            "start": {"dateTime": "2026-03-20T10:00:00Z"},
            "end": {"dateTime": "2026-03-20T10:30:00Z"},
        },
    )
    gp.fake.add_event(
        gp.fake.PRIMARY,
        {
            "summary": "x",
            "start": {"dateTime": "2026-03-20T10:00:00Z"},
            "end": {"dateTime": "2026-03-20T10:30:00Z"},
        },
    )
    assert main(["--config", str(gp.config), "purge", "--yes"]) == 0
    assert "removed 6 items" in capsys.readouterr().out
    assert [e["summary"] for e in gp.ours()] == ["my own note"]
    assert gp.tasks() == []
    assert not [
        c for c in gp.fake.log if c.calendar in (gp.fake.PRIMARY, "primary") and c.http_method != "GET"
    ]


def test_the_therapist_deleting_an_event_or_completing_a_task_is_a_tombstone(
    gp: GooglePractice, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleted events and tasks ticked in Google's app (hidden) mean "handled": never recreated."""
    assert _run(gp) == 0
    events = {e["extendedProperties"]["private"]["x-callsheet-client"]: e for e in gp.ours()}
    tasks = {t["notes"].split("client=")[1].split()[0]: t for t in gp.tasks()}
    gp.fake.delete_event(gp.calls_calendar, events["c001"]["id"])
    gp.fake.complete_task_in_app("Client calls", tasks["c003"]["id"])
    gp.fake.clear_log()
    assert _run(gp, SOON) == 0
    assert len(gp.ours()) == 1  # c001's sibling event stays deleted; c003's event is withdrawn
    assert not gp.fake.calls("calendar.events.insert") and not gp.fake.calls("tasks.tasks.insert")
    open_tasks = [t for t in gp.tasks() if t["status"] != "completed"]
    assert [t["notes"].split("client=")[1].split()[0] for t in open_tasks] == ["c006"]
    gp.fake.clear_log()
    assert _run(gp, SOON) == 0
    assert not [
        c for c in gp.fake.log if c.http_method in ("POST", "PATCH", "DELETE") and c.method != "oauth.token"
    ]


def test_a_timed_out_event_insert_that_went_through_is_adopted_not_duplicated(gp: GooglePractice) -> None:
    """The insert times out after the fake stored it; the retry gets 409 and adopts the event."""
    gp.fake.inject("calendar.events.insert", status=0, delay=1.5, apply=True)
    assert _run(gp) == 0
    assert [c.status for c in gp.fake.calls("calendar.events.insert")][:2] == [200, 409]
    assert len(gp.ours()) == 3


def test_a_timed_out_task_insert_is_found_by_rereading_the_list_before_retrying(gp: GooglePractice) -> None:
    """Tasks are not idempotent: after a timeout the list is re-read and the task found, not re-inserted."""
    gp.fake.inject("tasks.tasks.insert", status=0, delay=1.5, apply=True)
    assert _run(gp) == 0
    inserts = gp.fake.calls("tasks.tasks.insert")
    assert len(inserts) == 3  # one per need, the timed-out one included, none repeated
    methods = [c.method for c in gp.fake.log if c.method.startswith("tasks.tasks")]
    first = methods.index("tasks.tasks.insert")
    assert methods[first + 1] == "tasks.tasks.list"
    assert len(gp.tasks()) == 3


def test_a_failed_task_insert_is_retried_only_after_the_list_shows_it_missing(gp: GooglePractice) -> None:
    """A 503 on a task insert re-reads the list, finds nothing, and inserts once more."""
    gp.fake.inject("tasks.tasks.insert", status=503, reason="backendError")
    assert _run(gp) == 0
    assert [c.status for c in gp.fake.calls("tasks.tasks.insert")].count(503) == 1
    methods = [c.method for c in gp.fake.log if c.method.startswith("tasks.tasks")]
    failed = methods.index("tasks.tasks.insert")
    assert methods[failed + 1] == "tasks.tasks.list"
    assert len(gp.tasks()) == 3


def test_reminders_never_go_into_a_source_calendar(
    fake: FakeGoogle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A calls calendar that is also a [source] calendar is a configuration error (exit 2)."""
    gp = google_practice(fake, tmp_path / "google")
    text = gp.config.read_text(encoding="utf-8").replace(gp.calls_calendar, gp.second_calendar)
    gp.config.write_text(text, encoding="utf-8")
    assert _run(gp) == 2
    assert "would be written into the appointment calendar" in capsys.readouterr().err
    assert not [c for c in fake.log if c.http_method != "GET" and c.method != "oauth.token"]


def test_events_need_a_calls_calendar_id_in_config(
    fake: FakeGoogle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without [reminders] calendar_id the sink refuses (exit 2) and names the setup script."""
    gp = google_practice(fake, tmp_path / "google")
    lines = [
        ln for ln in gp.config.read_text(encoding="utf-8").splitlines() if not ln.startswith("calendar_id =")
    ]
    gp.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert _run(gp) == 2
    assert "authorize_google.py" in capsys.readouterr().err


def test_tasks_only_needs_no_calendar_and_creates_the_task_list_on_first_write(
    fake: FakeGoogle, tmp_path: Path
) -> None:
    """With write = ["task"], only tasks are written, into a task list made on the first write."""
    gp = google_practice(fake, tmp_path / "google", write=("task",))
    assert "Client calls" not in fake.tasklist_titles()
    assert _run(gp) == 0
    assert fake.tasklist_titles().count("Client calls") == 1
    assert len(gp.tasks()) == 3 and gp.ours() == []


# -- Google keeps deleted ids: generations, alerts, tombstones -----------------------------------


def _alert(generation: int) -> Reminder:
    at = local("2026-03-18 13:00")
    return Reminder(
        key=reminder_key("callsheet", SystemReason.ATTENTION.value, "health", ""),
        kind="event",
        client_id=ClientId("callsheet"),
        reason=SystemReason.ATTENTION,
        start=at,
        end=at + timedelta(minutes=15),
        title="callsheet needs attention",
        description="The last passes failed.",
        payload_hash="a",
        generation=generation,
        owner="0123456789abcdef",
    )


def test_an_alert_written_again_after_its_deletion_gets_a_fresh_id_and_is_written(
    gp: GooglePractice, sink: GoogleSink
) -> None:
    """Alert 1 is written and cleared; re-using its id is only `gone`, while incarnation 2 is really written."""
    assert sink.create(_alert(1)).gone is False
    first = next(m for m in sink.managed() if m.reason == "attention")
    sink.delete(first)
    again = sink.create(_alert(1))
    assert again.gone is True  # Google keeps the deleted id: 409, and the event is ours and cancelled
    second = sink.create(_alert(2))
    assert second.gone is False and second.ref == f"{_alert(2).key}e2"
    assert [c.status for c in gp.fake.calls("calendar.events.insert")] == [200, 409, 200]
    live = [e for e in gp.ours() if e["extendedProperties"]["private"]["x-callsheet-reason"] == "attention"]
    assert [e["id"] for e in live] == [f"{_alert(2).key}e2"]
    held = [(m.generation, m.status) for m in sink.managed() if m.reason == "attention"]
    assert held == [(1, "cancelled"), (2, "open")]


def test_a_reminder_that_returns_after_a_withdrawal_is_written_under_its_next_generation(
    gp: GooglePractice, sink: GoogleSink
) -> None:
    """A need withdrawn (event deleted) that comes back as generation 2 is really written, not lost to a 409."""
    sink.create(_reminder())
    sink.withdraw(next(m for m in sink.managed() if m.kind == "event"), note="resolved", delete=True)
    receipt = sink.create(replace(_reminder(), generation=2))
    assert receipt.gone is False and receipt.ref == f"{KEY}e2"
    assert [e["id"] for e in gp.ours()] == [f"{KEY}e2"]


def test_a_deleted_item_is_not_deleted_again(gp: GooglePractice, sink: GoogleSink) -> None:
    """delete() of an event or task listed as deleted sends nothing (no DELETE answered 410 every pass)."""
    sink.create(_alert(1))
    sink.delete(next(m for m in sink.managed() if m.reason == "attention"))
    gp.fake.clear_log()
    tombstone = next(m for m in sink.managed() if m.reason == "attention")
    assert tombstone.status == "cancelled"
    sink.delete(tombstone)
    assert gp.fake.calls("calendar.events.delete") == []


def test_purge_does_not_delete_tombstones_again(
    gp: GooglePractice, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the therapist deleted a reminder, purge deletes the live ones and sends nothing for the tombstone."""
    assert _run(gp) == 0
    gp.fake.delete_event(gp.calls_calendar, gp.ours()[0]["id"])
    gp.fake.clear_log()
    assert main(["--config", str(gp.config), "purge", "--yes"]) == 0
    assert [c.status for c in gp.fake.calls("calendar.events.delete")] == [204, 204]
    assert gp.ours() == []


def test_an_event_not_ours_holding_the_id_is_refused(gp: GooglePractice, sink: GoogleSink) -> None:
    """A 409 whose event carries another installation's owner mark is a RefusedError, never adopted."""
    foreign = replace(_alert(1), owner="fedcba9876543210")
    sink.create(foreign)
    with pytest.raises(RefusedError):
        sink.create(_alert(1))


def test_a_409_then_404_is_refused_once_not_retried_forever(gp: GooglePractice, sink: GoogleSink) -> None:
    """An id Google keeps reserved but cannot show (purged tombstone) is a RefusedError after two requests."""
    sink.create(_alert(1))
    gp.fake.delete_event(gp.calls_calendar, f"{_alert(1).key}e1")
    gp.fake.purge_tombstone(gp.calls_calendar, f"{_alert(1).key}e1")
    gp.fake.clear_log()
    with pytest.raises(RefusedError):
        sink.create(_alert(1))
    assert [(c.method, c.status) for c in gp.fake.log if c.method != "oauth.token"] == [
        ("calendar.events.insert", 409),
        ("calendar.events.get", 404),
    ]


# -- tasks the therapist edits, a list she renames or deletes --------------------------------------


def _client_of(task: dict[str, Any]) -> str:
    return str(task["notes"].split("client=")[1].split()[0])


def test_text_typed_after_the_key_line_keeps_the_task_and_its_event(gp: GooglePractice) -> None:
    """A note added at the end of a task's details changes nothing: the sibling event stays, the task stays open."""
    assert _run(gp) == 0
    events_before = sorted(e["id"] for e in gp.ours())
    task = next(t for t in gp.tasks() if _client_of(t) == "c006")
    gp.fake.tasklists_by_title("Client calls").tasks[task["id"]]["notes"] += "\nleft voicemail Tue"
    assert _run(gp, SOON) == 0
    assert sorted(e["id"] for e in gp.ours()) == events_before
    after = next(t for t in gp.tasks() if t["id"] == task["id"])
    assert after["status"] == "needsAction" and after["notes"].endswith("left voicemail Tue")


def test_update_keeps_what_the_therapist_typed_in_a_task(gp: GooglePractice, sink: GoogleSink) -> None:
    """update() rewrites the text above the separator and keeps the lines typed below the key line."""
    sink.create(_reminder("task"))
    task = gp.tasks()[0]
    gp.fake.tasklists_by_title("Client calls").tasks[task["id"]]["notes"] += "\nleft voicemail Tue"
    item = next(m for m in sink.managed() if m.kind == "task")
    sink.update(_reminder("task", title="new", hash_="h2"), item)
    notes = gp.tasks()[0]["notes"]
    assert "left voicemail Tue" in notes and notes.splitlines()[-1].endswith("hash=h2")


def test_a_renamed_task_list_keeps_working(gp: GooglePractice) -> None:
    """Renaming "Client calls" in Google Tasks withdraws nothing and makes no second list."""
    assert _run(gp) == 0
    gp.fake.rename_tasklist_in_app("Client calls", "Calls to make")
    gp.fake.clear_log()
    assert _run(gp, SOON) == 0
    assert len(gp.ours()) == 3
    assert gp.fake.tasklist_titles().count("Client calls") == 0
    assert len(gp.fake.tasks("Calls to make")) == 3
    assert not [
        c for c in gp.fake.log if c.http_method in ("POST", "PATCH", "DELETE") and c.method != "oauth.token"
    ]


def test_a_deleted_task_list_is_made_anew_and_its_tasks_are_not_read_as_completed(
    gp: GooglePractice, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleting the list: the pass stops with a warning naming it, and nothing is withdrawn or completed."""
    assert _run(gp) == 0
    gp.fake.delete_tasklist_in_app("Client calls")
    gp.fake.clear_log()
    capsys.readouterr()
    assert _run(gp, SOON) == 1
    out = capsys.readouterr()
    assert "sink.tasklist.lost" in out.out + out.err
    assert len(gp.ours()) == 3 and gp.fake.calls("calendar.events.delete") == []
    assert (
        _writes_of(gp) == []
    )  # nothing withdrawn, completed or made: the list comes back with the next task
    # the next pass writes the tasks still due afresh into a new list; no event is withdrawn
    assert _run(gp, SOON) == 0
    assert gp.fake.calls("calendar.events.delete") == []
    open_tasks = [t for t in gp.tasks() if t.get("status") != "completed" and not t.get("deleted")]
    assert open_tasks and len(gp.ours()) == 3


def _writes_of(gp: GooglePractice) -> list[str]:
    return [
        c.method
        for c in gp.fake.log
        if c.http_method in ("POST", "PATCH", "DELETE") and c.method != "oauth.token"
    ]
