"""Seed: "didn't schedule appointment at last session" and "cancelled and did not reschedule",
followed, when nothing comes of the call, by a termination letter.

not_rebooked: the latest appointment was attended or missed and nothing is booked after it;
due at its end + rebook_within (7d). cancelled_not_rebooked: the latest appointment (cancelled
ones included) was cancelled; due at the cancel time (LAST-MODIFIED, else the start; for an
appointment that vanished, the pass that noticed) + cancel_grace (2d). termination_letter
takes over termination_after (14d) past either due time. At most one of the three per client.
"""

from __future__ import annotations

import pytest

from tests.practice import local, vevent
from tests.scenarios.conftest import make_practice

SEEN = local("2026-03-10 10:00")  # Tuesday, 10:00-10:50 CDT
BOOKED = local("2026-03-19 10:00")  # Thursday
CANCELLED_ON = local("2026-03-16 09:30")  # LAST-MODIFIED of the cancelled event


def _seen(practice, summary: str = "Avery Quinn") -> None:
    practice.add("seen", vevent("rb-seen", summary, SEEN))


def _cancelled(practice, **kwargs) -> None:
    kwargs.setdefault("status", "CANCELLED")
    kwargs.setdefault("last_modified", CANCELLED_ON)
    summary = kwargs.pop("summary", "Avery Quinn")
    practice.add("cxl", vevent("rb-cxl", summary, BOOKED, **kwargs))


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-03-10T11:00", [("c001", "not_rebooked", "upcoming", "2026-03-17T10:50:00-05:00")]),
        ("2026-03-17T10:49", [("c001", "not_rebooked", "upcoming", "2026-03-17T10:50:00-05:00")]),
        ("2026-03-17T10:50", [("c001", "not_rebooked", "due", "2026-03-17T10:50:00-05:00")]),
        ("2026-03-31T10:49", [("c001", "not_rebooked", "due", "2026-03-17T10:50:00-05:00")]),
        ("2026-03-31T10:50", [("c001", "termination_letter", "due", "2026-03-31T10:50:00-05:00")]),
        ("2026-04-30T10:50", [("c001", "termination_letter", "due", "2026-03-31T10:50:00-05:00")]),
        ("2026-04-30T10:51", [("c001", "termination_letter", "stale", "2026-03-31T10:50:00-05:00")]),
    ],
)
def test_not_rebooked_then_termination_letter(practice, plan, now, expected):
    """Nothing booked after a session: a call a week later, the letter two weeks after that, stale after 30 days."""
    _seen(practice)
    assert plan(practice, now) == expected


def test_a_booking_within_the_week_means_no_call(practice, plan):
    """A client who books before the week is out is never called."""
    _seen(practice)
    practice.add("next", vevent("rb-next", "Avery Quinn", BOOKED))
    assert plan(practice, "2026-03-12T09:00") == []


def test_a_later_booking_resolves_the_termination_letter(practice, plan):
    """Booking again, even after the letter fell due, removes the letter need."""
    _seen(practice)
    practice.add("next", vevent("rb-next", "Avery Quinn", local("2026-04-07 10:00")))
    assert plan(practice, "2026-04-01T09:00") == []


def test_missed_last_session_is_not_rebooked_too(practice, plan):
    """A no-show as the latest appointment gets the no-show call and, a week on, the rebooking call."""
    _seen(practice, "Avery Quinn no-show")
    assert plan(practice, "2026-03-18T09:00") == [
        ("c001", "no_show", "due", "2026-03-10T10:50:00-05:00"),
        ("c001", "not_rebooked", "due", "2026-03-17T10:50:00-05:00"),
    ]


@pytest.mark.parametrize(
    "how",
    [
        {"status": "CANCELLED"},
        {"status": "", "summary": "Avery Quinn - Cancelled"},
        {"status": "", "summary": "CXL Avery Quinn"},
        {"status": "", "summary": "Avery Quinn", "categories": ["canceled"]},
        {"status": "", "attendees": [("avery@example.org", "DECLINED")], "summary": "Session"},
    ],
    ids=["status", "marker-title", "marker-cxl", "marker-category", "client-declined"],
)
def test_cancelled_not_rebooked(practice, plan, how):
    """A cancelled latest appointment (status, marker or the client's decline) is called 2 days after the cancellation."""
    _seen(practice)
    _cancelled(practice, **how)
    assert plan(practice, "2026-03-18T09:29") == [
        ("c001", "cancelled_not_rebooked", "upcoming", "2026-03-18T09:30:00-05:00")
    ]
    assert plan(practice, "2026-03-18T09:30") == [
        ("c001", "cancelled_not_rebooked", "due", "2026-03-18T09:30:00-05:00")
    ]


def test_a_declined_invitation_from_someone_else_is_not_a_cancellation(practice, plan):
    """Only the client's own attendee entry counts: another guest declining changes nothing."""
    practice.add(
        "a",
        vevent(
            "rb-guest",
            "Avery Quinn",
            SEEN,
            attendees=[("avery@example.org", "ACCEPTED"), ("x@example.org", "DECLINED")],
        ),
    )
    assert plan(practice, "2026-03-12T09:00") == [
        ("c001", "not_rebooked", "upcoming", "2026-03-17T10:50:00-05:00")
    ]


def test_cancel_time_is_the_start_without_last_modified(practice, plan):
    """Without LAST-MODIFIED the cancellation counts from the appointment's start."""
    _seen(practice)
    _cancelled(practice, last_modified=None)
    assert plan(practice, "2026-03-19T12:00") == [
        ("c001", "cancelled_not_rebooked", "upcoming", "2026-03-21T10:00:00-05:00")
    ]


def test_late_cancellation_is_still_a_cancellation(practice, plan):
    """Cancelled within late_cancel_within (24h) of the start: the same call, never a no-show call."""
    _seen(practice)
    _cancelled(practice, last_modified=local("2026-03-18 20:15"))
    assert plan(practice, "2026-03-21T09:00") == [
        ("c001", "cancelled_not_rebooked", "due", "2026-03-20T20:15:00-05:00")
    ]


def test_cancelled_then_rebooked_means_no_call(practice, plan):
    """A non-cancelled booking after the cancelled one resolves the call."""
    _seen(practice)
    _cancelled(practice)
    practice.add("again", vevent("rb-again", "Avery Quinn", local("2026-03-26 10:00")))
    assert plan(practice, "2026-03-20T09:00") == []


def test_a_later_cancelled_booking_does_not_count_as_rebooked(practice, plan):
    """Booked and then cancelled again: the latest appointment is the cancelled one."""
    _seen(practice)
    _cancelled(practice)
    practice.add(
        "again",
        vevent(
            "rb-again",
            "Avery Quinn",
            local("2026-03-26 10:00"),
            status="CANCELLED",
            last_modified=local("2026-03-20 08:00"),
        ),
    )
    assert plan(practice, "2026-03-25T09:00") == [
        ("c001", "cancelled_not_rebooked", "due", "2026-03-22T08:00:00-05:00")
    ]


def test_cancelled_future_appointment_is_latest_even_before_its_date(practice, plan):
    """Latest orders by start, cancelled included: a cancelled future booking decides the call before its date."""
    _seen(practice)
    _cancelled(practice)
    assert plan(practice, "2026-03-18T12:00") == [
        ("c001", "cancelled_not_rebooked", "due", "2026-03-18T09:30:00-05:00")
    ]


def test_cancelled_not_rebooked_becomes_a_termination_letter(practice, plan):
    """Two weeks past the cancellation call the letter replaces it (one rebooking need per client)."""
    _seen(practice)
    _cancelled(practice)
    assert plan(practice, "2026-04-01T09:29") == [
        ("c001", "cancelled_not_rebooked", "due", "2026-03-18T09:30:00-05:00")
    ]
    assert plan(practice, "2026-04-01T09:30") == [
        ("c001", "termination_letter", "due", "2026-04-01T09:30:00-05:00")
    ]


def test_vanished_appointment_counts_as_cancelled_when_noticed(practice, plan, run_once):
    """An appointment deleted before its start is a cancellation from the pass that noticed it (needs state)."""
    _seen(practice)
    practice.add("cxl", vevent("rb-gone", "Avery Quinn", BOOKED))
    run_once(practice, "2026-03-12T09:00")
    practice.remove("cxl")
    run_once(practice, "2026-03-16T14:00")
    assert plan(practice, "2026-03-19T09:00") == [
        ("c001", "cancelled_not_rebooked", "due", "2026-03-18T14:00:00-05:00")
    ]


def test_rebook_due_is_elapsed_time_across_dst(practice, plan):
    """Durations are elapsed time: a week after Tue 3 March 10:50 CST is 11:50 CDT, the clocks having gone forward."""
    practice.add("a", vevent("rb-dst", "Avery Quinn", local("2026-03-03 10:00")))
    assert plan(practice, "2026-03-09T09:00") == [
        ("c001", "not_rebooked", "upcoming", "2026-03-10T11:50:00-05:00")
    ]


def test_custom_rebook_and_grace(tmp_path, plan):
    """rules.rebook_within and rules.cancel_grace move the due times."""
    p = make_practice(tmp_path / "p", rules={"rebook_within": "3d", "cancel_grace": "1d"})
    _seen(p)
    p.add("b", vevent("rb-b", "Blake Rowe", BOOKED, status="CANCELLED", last_modified=CANCELLED_ON))
    assert plan(p, "2026-03-17T10:00") == [
        ("c001", "not_rebooked", "due", "2026-03-13T10:50:00-05:00"),
        ("c002", "cancelled_not_rebooked", "due", "2026-03-17T09:30:00-05:00"),
    ]
