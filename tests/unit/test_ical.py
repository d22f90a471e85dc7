"""iCalendar parsing (events, recurrences, times) and our own reminder items."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors import ical
from connectors.ical import build_item, complete_item, parse_calendar, read_item, update_item
from tests.practice import local, vcalendar, vevent
from worker.errors import DataError
from worker.model import ClientId, Event, Reason, Reminder, ReminderKey, Window

TZ = ZoneInfo("America/Chicago")
WINDOW = Window(local("2026-01-01 00:00"), local("2027-01-01 00:00"))
DATA = Path(__file__).resolve().parent.parent / "data"


def parse(*components: str, window: Window = WINDOW, raw: bytes | None = None) -> list[Event]:
    data = raw if raw is not None else vcalendar(*components).encode()
    return parse_calendar(
        data, item="x.ics", source="practice", window=window, tz=TZ, default_length=timedelta(minutes=50)
    )


def test_single_event_fields():
    """A single event keeps its uid, times, texts, categories, status, attendees, colour and stamps."""
    [ev] = parse(
        vevent(
            "one",
            "Avery Quinn",
            local("2026-03-10 10:00"),
            description="line 1\nline 2",
            categories=["Clients", "New"],
            attendees=[("Avery@Example.org", "DECLINED")],
            last_modified=local("2026-03-09 08:00"),
            created=local("2026-03-01 08:00"),
            status="TENTATIVE",
            extra=["COLOR:red", "TRANSP:TRANSPARENT"],
        )
    )
    assert (ev.uid, ev.recurrence_id, ev.start, ev.end) == (
        "one",
        "",
        local("2026-03-10 10:00"),
        local("2026-03-10 10:50"),
    )
    assert (ev.summary, ev.description, ev.categories, ev.status) == (
        "Avery Quinn",
        "line 1\nline 2",
        ("Clients", "New"),
        "tentative",
    )
    assert [(a.email, a.declined) for a in ev.attendees] == [("avery@example.org", True)]
    assert (ev.color, ev.transparent, ev.item, ev.source) == ("red", True, "x.ics", "practice")
    assert (ev.created, ev.last_modified) == (local("2026-03-01 08:00"), local("2026-03-09 08:00"))


def test_series_instances_carry_utc_recurrence_ids():
    """Each instance of a series is identified by its original start in UTC."""
    got = parse(vevent("s", "Avery Quinn", local("2026-03-03 10:00"), rrule="FREQ=WEEKLY;COUNT=2"))
    assert [(e.recurrence_id, e.start) for e in got] == [
        ("20260303T160000Z", local("2026-03-03 10:00")),
        ("20260310T150000Z", local("2026-03-10 10:00")),
    ]


def test_moved_and_cancelled_instances_keep_their_ids():
    """A moved instance keeps its recurrence id at its new time; a cancelled one comes back cancelled."""
    got = parse(
        vevent("s", "Avery Quinn", local("2026-03-03 10:00"), rrule="FREQ=WEEKLY;COUNT=3"),
        vevent("s", "Avery Quinn", local("2026-03-11 15:00"), recurrence_id=local("2026-03-10 10:00")),
        vevent(
            "s",
            "Avery Quinn",
            local("2026-03-17 10:00"),
            recurrence_id=local("2026-03-17 10:00"),
            status="CANCELLED",
        ),
    )
    assert [(e.recurrence_id, e.start, e.status) for e in got] == [
        ("20260303T160000Z", local("2026-03-03 10:00"), "confirmed"),
        ("20260310T150000Z", local("2026-03-11 15:00"), "confirmed"),
        ("20260317T150000Z", local("2026-03-17 10:00"), "cancelled"),
    ]


def test_override_with_utc_recurrence_id_matches_a_tzid_series():
    """An override naming its instance in UTC replaces that instance of a TZID series."""
    master = vevent("s", "Avery Quinn", local("2026-03-03 10:00"), rrule="FREQ=WEEKLY;COUNT=2")
    override = vevent(
        "s", "Moved", local("2026-03-12 10:00"), recurrence_id=local("2026-03-10 10:00"), utc=True
    )
    got = parse(master, override)
    assert [(e.recurrence_id, e.summary) for e in got] == [
        ("20260303T160000Z", "Avery Quinn"),
        ("20260310T150000Z", "Moved"),
    ]


def test_exdate_removes_the_instance():
    """An EXDATE instance is simply absent."""
    got = parse(
        vevent(
            "s",
            "A",
            local("2026-03-03 10:00"),
            rrule="FREQ=WEEKLY;COUNT=3",
            exdates=[local("2026-03-10 10:00")],
        )
    )
    assert [e.start for e in got] == [local("2026-03-03 10:00"), local("2026-03-17 10:00")]


def test_times_floating_utc_and_other_zones():
    """Floating times are read in the practice zone; UTC and other zones keep their instant."""
    floating = "BEGIN:VEVENT\r\nUID:f\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260310T100000\r\nSUMMARY:x\r\nEND:VEVENT"
    [ev] = parse(floating)
    assert ev.start == local("2026-03-10 10:00") and ev.start.tzinfo == TZ
    [ev] = parse(vevent("u", "x", local("2026-03-10 10:00"), utc=True))
    assert ev.start == local("2026-03-10 10:00") and ev.start.utcoffset() == timedelta(0)
    [ev] = parse(raw=(DATA / "other_tzid.ics").read_bytes())
    assert ev.start == local("2026-03-10 10:00")


def test_series_keeps_local_time_across_dst():
    """A TZID series stays at 09:00 local across both 2026 changes."""
    spring = parse(raw=(DATA / "dst_spring_forward.ics").read_bytes())
    fall = parse(raw=(DATA / "dst_fall_back.ics").read_bytes())
    assert {e.start.astimezone(TZ).strftime("%H:%M") for e in spring + fall} == {"09:00"}
    assert [e.start.astimezone(TZ).utcoffset() for e in spring] == [timedelta(hours=h) for h in (-6, -6, -5)]
    assert [e.start.astimezone(TZ).utcoffset() for e in fall] == [timedelta(hours=h) for h in (-5, -5, -6)]


@pytest.mark.parametrize(
    ("extra", "minutes"),
    [(["DURATION:PT30M"], 30), ([], 50), (["DURATION:PT0S"], 50)],
    ids=["duration", "default", "zero-length"],
)
def test_end_without_dtend(extra, minutes):
    """Without DTEND: DURATION, else the default length; an empty event also gets the default length."""
    [ev] = parse(vevent("d", "x", local("2026-03-10 10:00"), minutes=None, extra=extra))
    assert ev.end - ev.start == timedelta(minutes=minutes)


def test_all_day_events_are_dropped():
    """All-day events, single or recurring, are not appointments."""
    assert parse(raw=(DATA / "all_day.ics").read_bytes()) == []


def test_window_bounds_the_expansion():
    """Only instances starting inside the window come back; an endless series is cut at its end."""
    window = Window(local("2026-03-01 00:00"), local("2026-03-15 00:00"))
    got = parse(vevent("s", "x", local("2025-01-07 10:00"), rrule="FREQ=WEEKLY"), window=window)
    assert [e.start for e in got] == [local("2026-03-03 10:00"), local("2026-03-10 10:00")]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not a calendar", "not a readable iCalendar object"),
        (
            vcalendar(
                "BEGIN:VEVENT\r\nDTSTART:20260310T100000Z\r\nSUMMARY:Avery Quinn\r\nEND:VEVENT"
            ).encode(),
            "without UID",
        ),
        (vcalendar("BEGIN:VEVENT\r\nUID:u\r\nSUMMARY:Avery Quinn\r\nEND:VEVENT").encode(), "without DTSTART"),
        (
            vcalendar(vevent("m", "Avery Quinn", local("2026-03-10 10:00"), rrule="FREQ=MINUTELY")).encode(),
            "too dense",
        ),
        (
            vcalendar(vevent("h", "Avery Quinn", local("2026-03-10 10:00"), rrule="FREQ=HOURLY")).encode(),
            "too dense",
        ),
    ],
    ids=["garbage", "no-uid", "no-dtstart", "minutely", "hourly"],
)
def test_unreadable_objects_raise_data_error(data, problem):
    """An object that cannot be read raises DataError naming the item, never its content."""
    with pytest.raises(DataError, match=problem) as err:
        parse(raw=data)
    assert err.value.item == "x.ics"
    assert "Avery" not in str(err.value)


def test_too_many_occurrences_raise_data_error(monkeypatch):
    """More than twice MAX_OCCURRENCES instances in the window: the object is skipped, not expanded forever."""
    monkeypatch.setattr(ical, "MAX_OCCURRENCES", 10)
    with pytest.raises(DataError, match="too many occurrences"):
        parse(vevent("d", "x", local("2026-01-01 09:00"), rrule="FREQ=DAILY"))
    assert len(parse(vevent("d", "x", local("2026-01-01 09:00"), rrule="FREQ=DAILY;COUNT=20"))) == 20


REMINDER = Reminder(
    key=ReminderKey("abcdefghij0123456789abcdef"),
    kind="event",
    client_id=ClientId("c001"),
    reason=Reason.NO_SHOW,
    start=datetime(2026, 3, 10, 16, 0, tzinfo=UTC),
    end=datetime(2026, 3, 10, 16, 15, tzinfo=UTC),
    title="Call A.Q. — missed Tue 10:00",
    description="Phone: +1 555 0199",
    payload_hash="h1",
)
STAMP = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def test_reminder_event_round_trip():
    """Our event is private, transparent, alarmed at its start, and reads back with our key."""
    data = build_item(REMINDER, stamp=STAMP)
    text = data.decode()
    for line in (
        "CLASS:PRIVATE",
        "TRANSP:TRANSPARENT",
        "BEGIN:VALARM",
        "UID:callsheet-abcdefghij0123456789abcdef",
    ):
        assert line in text
    item = read_item(data, ref="r", etag="e")
    assert item is not None
    assert (item.key, item.kind, item.start, item.status, item.payload_hash, item.client_id, item.reason) == (
        REMINDER.key,
        "event",
        REMINDER.start,
        "open",
        "h1",
        "c001",
        "no_show",
    )


def test_reminder_task_update_and_complete():
    """A task carries DUE; an update changes only the text; completing marks it done with a note."""
    task = replace(REMINDER, kind="task")
    data = build_item(task, stamp=STAMP)
    changed = replace(
        task,
        start=task.start + timedelta(days=1),
        title="New title",
        description="New body",
        payload_hash="h2",
    )
    updated = read_item(update_item(data, changed, stamp=STAMP), ref="r")
    assert updated is not None and (updated.kind, updated.start, updated.payload_hash) == (
        "task",
        task.start,
        "h2",
    )
    done = read_item(complete_item(data, note="resolved", stamp=STAMP), ref="r")
    assert done is not None and done.status == "completed"


def test_read_item_ignores_foreign_objects():
    """An object without our key property is not ours."""
    assert (
        read_item(vcalendar(vevent("x", "Avery Quinn", local("2026-03-10 10:00"))).encode(), ref="r") is None
    )
    assert read_item(b"garbage", ref="r") is None
