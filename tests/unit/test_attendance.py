"""Attendance: markers, status, declines and time -> what happened to an appointment."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from worker.attendance import MarkerRules, appointment_at, attendance_at, has_marker, observe
from worker.model import Attendance, ClientId, Event

TZ = ZoneInfo("America/Chicago")
START = datetime(2026, 3, 10, 10, 0, tzinfo=TZ)
END = START + timedelta(minutes=50)
DAY = timedelta(hours=24)
MARKERS = MarkerRules(
    no_show=("no show", "no-show", "noshow", "DNA"),
    cancelled=("cancelled", "canceled", "cxl"),
    arrived=("arrived", "✓"),
    no_show_colors=("Red", "11"),
    cancelled_colors=("grey",),
)
C1 = ClientId("c001")


def event(summary: str = "Avery Quinn", **kwargs: object) -> Event:
    """A plain confirmed event 10:00-10:50 on Tue 10 March."""
    return Event(uid="u1", recurrence_id="", start=START, end=END, summary=summary, **kwargs)  # type: ignore[arg-type]


def seen(ev: Event, *, declined: bool = False):
    return observe(ev, C1, MARKERS, declined=declined)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Avery - no show", True),
        ("NO-SHOW", True),
        ("noshow", True),
        ("(DNA)", True),
        ("dna.", True),
        ("No  show", False),
        ("no-shows", False),
        ("DNAs", False),
        ("mDNA", False),
        ("snowshow", False),
        ("", False),
    ],
)
def test_no_show_markers_are_whole_words_any_case(text, found):
    """Marker words match whole words in any case, never inside longer words."""
    assert has_marker(MARKERS.no_show, [text]) is found


@pytest.mark.parametrize(
    ("text", "found"), [("A.Q. ✓", True), ("A.Q.✓", True), ("✓ done", True), ("AQ", False)]
)
def test_symbol_marker_needs_no_word_boundary(text, found):
    """A marker made of a symbol (✓) matches even right after a word: only word-character ends are bounded."""
    assert has_marker(MARKERS.arrived, [text]) is found


def test_no_markers_configured_never_match():
    """An empty (or blank) marker list matches nothing."""
    assert has_marker((), ["no show"]) is False
    assert has_marker(("  ",), ["no show"]) is False


def test_markers_in_title_categories_and_description_lines():
    """Title, each category and each description line are searched."""
    assert seen(event("Avery Quinn DNA")).no_show
    assert seen(event(categories=("Client", "No-Show"))).no_show
    assert seen(event(description="first line\nDNA\nlast")).no_show
    assert not seen(event(description="no\nshow")).no_show  # a phrase does not run across lines


def test_cancelled_by_status_marker_colour_or_decline():
    """STATUS:CANCELLED, a cancelled marker, a cancelled colour or the client's decline each cancel."""
    assert seen(event(status="cancelled")).cancelled
    assert seen(event("Avery Quinn CXL")).cancelled
    assert seen(event(color="Grey")).cancelled
    assert seen(event(), declined=True).cancelled
    assert not seen(event(status="tentative")).cancelled


def test_no_show_colour_any_case():
    """A configured no-show colour (CSS name or Google colour id) marks a no-show."""
    assert seen(event(color="red")).no_show
    assert seen(event(color="11")).no_show
    assert not seen(event(color="blue")).no_show


def test_cancelled_wins_over_no_show_and_arrived():
    """A cancelled event is neither a no-show nor an arrival; a no-show is not an arrival."""
    both = seen(event("Avery Quinn no show arrived", status="cancelled"))
    assert (both.cancelled, both.no_show, both.arrived) == (True, False, False)
    missed = seen(event("Avery Quinn no show arrived"))
    assert (missed.cancelled, missed.no_show, missed.arrived) == (False, True, False)


def test_cancel_time_from_last_modified_else_start():
    """cancelled_at is LAST-MODIFIED when present, else the start; None when not cancelled."""
    modified = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert seen(event(status="cancelled", last_modified=modified)).cancelled_at == modified
    assert seen(event(status="cancelled")).cancelled_at == START
    assert seen(event(last_modified=modified)).cancelled_at is None


def test_observation_keeps_facts_not_text():
    """An observation carries ids, times and flags, never the title or description."""
    obs = seen(event("Avery Quinn secret words", description="private", created=START - DAY, item="f.ics"))
    assert (obs.id, obs.uid, obs.client_id, obs.start, obs.end, obs.created, obs.item) == (
        "u1|",
        "u1",
        C1,
        START,
        END,
        START - DAY,
        "f.ics",
    )
    assert "secret" not in repr(obs) and "private" not in repr(obs)


def judge(now: datetime, **flags: object) -> Attendance:
    obs = replace(seen(event()), **flags)  # type: ignore[arg-type]
    return attendance_at(obs, now, late_cancel_within=DAY)


def test_attendance_by_time():
    """Unmarked: scheduled before the start, in progress during, attended from the end on."""
    assert judge(START - timedelta(seconds=1)) is Attendance.SCHEDULED
    assert judge(START) is Attendance.IN_PROGRESS
    assert judge(END - timedelta(seconds=1)) is Attendance.IN_PROGRESS
    assert judge(END) is Attendance.ATTENDED


def test_markers_win_over_time():
    """No-show and arrived hold whatever the time."""
    assert judge(START - DAY, no_show=True) is Attendance.NO_SHOW
    assert judge(END + DAY, arrived=True) is Attendance.ARRIVED


def test_late_cancellation_boundary():
    """Cancelled at or after start - late_cancel_within is late; a second earlier is not."""
    assert judge(END, cancelled=True, cancelled_at=START - DAY) is Attendance.LATE_CANCEL
    assert judge(END, cancelled=True, cancelled_at=START - DAY - timedelta(seconds=1)) is Attendance.CANCELLED
    assert judge(END, cancelled=True, cancelled_at=START + timedelta(hours=1)) is Attendance.LATE_CANCEL
    assert judge(END, cancelled=True, cancelled_at=None) is Attendance.LATE_CANCEL


def test_appointment_at_carries_the_observation():
    """appointment_at copies the facts and adds the attendance judged at now."""
    obs = seen(event(status="cancelled", last_modified=START - 2 * DAY, created=START - 9 * DAY))
    appt = appointment_at(obs, END, late_cancel_within=DAY)
    assert (appt.id, appt.client_id, appt.start, appt.end, appt.cancelled_at, appt.created) == (
        "u1|",
        C1,
        START,
        END,
        START - 2 * DAY,
        START - 9 * DAY,
    )
    assert appt.attendance is Attendance.CANCELLED and appt.is_cancelled
