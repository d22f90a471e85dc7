"""The one-off path of parse_calendar gives exactly what recurring-ical-events gives (hypothesis)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import ical
from worker.errors import DataError
from worker.model import Event, Window

TZ = ZoneInfo("America/Chicago")
WINDOW = Window(datetime(2026, 1, 10, tzinfo=TZ), datetime(2026, 3, 1, tzinfo=TZ))
EDGES = (WINDOW.start, WINDOW.end)


@st.composite
def moments(draw: st.DrawFn) -> datetime:
    """A wall-clock time within a few days of either edge of the window (naive)."""
    edge = draw(st.sampled_from(EDGES)).replace(tzinfo=None)
    return edge + timedelta(minutes=15 * draw(st.integers(-300, 300)))


@st.composite
def stamp(draw: st.DrawFn, name: str, moment: datetime) -> str:
    """`name` at `moment` in one of the forms calendars write: UTC, TZID, floating or a date."""
    form = draw(st.sampled_from(("utc", "tzid", "berlin", "floating", "date")))
    if form == "utc":
        return f"{name}:{moment:%Y%m%dT%H%M%S}Z"
    if form == "tzid":
        return f"{name};TZID=America/Chicago:{moment:%Y%m%dT%H%M%S}"
    if form == "berlin":
        return f"{name};TZID=Europe/Berlin:{moment:%Y%m%dT%H%M%S}"
    if form == "floating":
        return f"{name}:{moment:%Y%m%dT%H%M%S}"
    return f"{name};VALUE=DATE:{moment:%Y%m%d}"


@st.composite
def events(draw: st.DrawFn) -> str:
    start = draw(moments())
    lines = [
        "BEGIN:VEVENT",
        f"UID:{draw(st.sampled_from(('a', 'b', 'c')))}",
        "DTSTAMP:20260101T000000Z",
        draw(stamp("DTSTART", start)),
        f"SUMMARY:{draw(st.sampled_from(('Avery Quinn', 'Dentist', 'Cameron Tate no show')))}",
    ]
    end = draw(st.sampled_from(("none", "dtend", "duration")))
    if end == "dtend":
        lines.append(draw(stamp("DTEND", start + timedelta(minutes=draw(st.integers(-120, 24 * 60))))))
    elif end == "duration":
        lines.append(f"DURATION:{draw(st.sampled_from(('PT50M', 'PT0S', '-PT30M', 'P1D', 'PT2H')))}")
    if draw(st.booleans()):
        lines.append(f"STATUS:{draw(st.sampled_from(('CANCELLED', 'TENTATIVE', 'CONFIRMED')))}")
    if draw(st.booleans()):
        lines.append("TRANSP:TRANSPARENT")
    if draw(st.integers(0, 5)) == 0:
        lines.append(draw(stamp("EXDATE", start)))
    lines.append("END:VEVENT")
    return "\r\n".join(lines)


@st.composite
def objects(draw: st.DrawFn) -> bytes:
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN"]
    if draw(st.integers(0, 5)) == 0:
        head.append("X-WR-TIMEZONE:Europe/Berlin")
    body = draw(st.lists(events(), min_size=1, max_size=3))
    return ("\r\n".join([*head, *body, "END:VCALENDAR"]) + "\r\n").encode()


def _parse(data: bytes) -> list[Event] | str:
    try:
        return ical.parse_calendar(
            data, item="x.ics", source="practice", window=WINDOW, tz=TZ, default_length=timedelta(minutes=50)
        )
    except DataError as exc:
        return f"DataError: {exc}"


@settings(max_examples=300, deadline=None)
@given(objects())
def test_one_off_path_equals_the_expander(data: bytes) -> None:
    """Any object without recurrences parses to the same events with and without the expander."""
    fast = _parse(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ical, "_one_off_spans", lambda *_: None)
        expanded = _parse(data)
    assert fast == expanded
    if not isinstance(fast, str):
        assert [(e.start.tzinfo, e.end.tzinfo) for e in fast] == [
            (e.start.tzinfo, e.end.tzinfo)
            for e in expanded  # type: ignore[union-attr]
        ]


def test_plain_sessions_take_the_one_off_path() -> None:
    """A single timed session is read without the expander; a series still goes through it."""
    one = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:a\r\n"
        b"DTSTAMP:20260101T000000Z\r\nDTSTART;TZID=America/Chicago:20260203T100000\r\n"
        b"DTEND;TZID=America/Chicago:20260203T105000\r\nSUMMARY:Avery Quinn\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    series = one.replace(b"SUMMARY:", b"RRULE:FREQ=WEEKLY;COUNT=3\r\nSUMMARY:")
    from icalendar import Calendar

    spans = ical._one_off_spans(Calendar.from_ical(one), one, WINDOW)
    assert spans is not None and len(spans) == 1
    assert ical._one_off_spans(Calendar.from_ical(series), series, WINDOW) is None
    assert len(_parse(series)) == 3
