"""Seed: "I make it a point to call if the client is 15 minutes late" (check-in mode only).

The check is on only when [markers] arrived is set; the call is due at start + late_after and
lasts until the end of the appointment, or until the arrival is marked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.practice import local, vevent
from tests.scenarios.conftest import make_practice

APPOINTMENT = local("2026-03-10 10:00")  # Tuesday, 10:00-10:50 CDT


@pytest.fixture
def checkin(tmp_path: Path):
    """A practice in check-in mode with one appointment for c001 at 10:00."""
    p = make_practice(tmp_path / "p", check_in=True)
    p.add("a", vevent("late-1", "Avery Quinn", APPOINTMENT))
    return p


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-03-10T10:10", [("c001", "late", "upcoming", "2026-03-10T10:15:00-05:00")]),
        ("2026-03-10T10:15", [("c001", "late", "due", "2026-03-10T10:15:00-05:00")]),
        ("2026-03-10T10:49", [("c001", "late", "due", "2026-03-10T10:15:00-05:00")]),
        ("2026-03-10T10:50", [("c001", "not_rebooked", "upcoming", "2026-03-17T10:50:00-05:00")]),
    ],
)
def test_late_is_due_fifteen_minutes_after_the_start_until_the_end(checkin, plan, now, expected):
    """A client not marked arrived is late from start + 15m; the call is gone once the appointment ends."""
    assert plan(checkin, now) == expected


def test_late_shows_as_upcoming_only_within_a_day(checkin, plan):
    """Tomorrow's appointment shows an upcoming late call 23.5 hours ahead, not 25 hours ahead."""
    assert plan(checkin, "2026-03-09T09:00") == []
    assert plan(checkin, "2026-03-09T10:30") == [("c001", "late", "upcoming", "2026-03-10T10:15:00-05:00")]


def test_arrived_marker_resolves_the_late_call(tmp_path, plan):
    """Marking the appointment "arrived" (any case, whole word) means no late call."""
    p = make_practice(tmp_path / "p", check_in=True)
    p.add("a", vevent("late-2", "Avery Quinn - Arrived", APPOINTMENT))
    assert plan(p, "2026-03-10T10:20") == []


def test_arrived_in_the_description_resolves_the_late_call(tmp_path, plan):
    """An "arrived" line in the description counts like one in the title."""
    p = make_practice(tmp_path / "p", check_in=True)
    p.add("a", vevent("late-3", "Avery Quinn", APPOINTMENT, description="notes\narrived 10:07"))
    assert plan(p, "2026-03-10T10:20") == []


def test_no_late_call_without_check_in_mode(practice, plan):
    """Without [markers] arrived nobody is ever marked arrived, so lateness is never called."""
    practice.add("a", vevent("late-4", "Avery Quinn", APPOINTMENT))
    assert plan(practice, "2026-03-10T10:20") == []


def test_no_show_marked_during_the_appointment_replaces_the_late_call(tmp_path, plan):
    """Once the therapist marks a no-show there is no late call, only the no-show call at the end."""
    p = make_practice(tmp_path / "p", check_in=True)
    p.add("a", vevent("late-5", "Avery Quinn no-show", APPOINTMENT))
    assert plan(p, "2026-03-10T10:20") == [("c001", "no_show", "upcoming", "2026-03-10T10:50:00-05:00")]


def test_cancelled_appointment_is_never_late(tmp_path, plan):
    """A cancelled appointment gets the cancellation call, never a late call."""
    p = make_practice(tmp_path / "p", check_in=True)
    p.add(
        "a",
        vevent(
            "late-6", "Avery Quinn", APPOINTMENT, status="CANCELLED", last_modified=local("2026-03-10 08:00")
        ),
    )
    assert plan(p, "2026-03-10T10:20") == [
        ("c001", "cancelled_not_rebooked", "upcoming", "2026-03-12T08:00:00-05:00")
    ]


def test_custom_late_after(tmp_path, plan):
    """rules.late_after moves the due time (here 10 minutes)."""
    p = make_practice(tmp_path / "p", check_in=True, rules={"late_after": "10m"})
    p.add("a", vevent("late-7", "Avery Quinn", APPOINTMENT))
    assert plan(p, "2026-03-10T10:12") == [("c001", "late", "due", "2026-03-10T10:10:00-05:00")]


def test_short_appointment_never_gets_a_late_call(tmp_path, plan):
    """An appointment of 15 minutes or less is over by the time the client counts as late."""
    p = make_practice(tmp_path / "p", check_in=True)
    p.add("a", vevent("late-8", "Avery Quinn", APPOINTMENT, minutes=15))
    assert plan(p, "2026-03-10T10:05") == []
