"""Seed: "Client didn't show for appointment": a call at the end of a missed appointment.

A no-show is a markers.no_show word or phrase (whole words, any case) in the title, the
categories or a description line, or a configured no-show colour. Only the therapist closes
the call: a later booking does not.
"""

from __future__ import annotations

import pytest

from tests.practice import local, vevent
from tests.scenarios.conftest import make_practice

START = local("2026-03-10 10:00")  # Tuesday, 10:00-10:50 CDT
NO_SHOW = ("c001", "no_show", "due", "2026-03-10T10:50:00-05:00")
REBOOK = ("c001", "not_rebooked", "upcoming", "2026-03-17T10:50:00-05:00")


@pytest.mark.parametrize(
    "marked",
    [
        {"summary": "Avery Quinn - no show"},
        {"summary": "Avery Quinn NO-SHOW"},
        {"summary": "noshow: Avery Quinn"},
        {"summary": "Avery Quinn (DNA)"},
        {"summary": "Avery Quinn dna"},
        {"summary": "Avery Quinn", "categories": ["Clients", "No Show"]},
        {"summary": "Avery Quinn", "description": "Rescheduled twice.\nDNA"},
    ],
    ids=[
        "title-phrase",
        "title-hyphen-upper",
        "title-noshow",
        "title-DNA",
        "title-dna-lower",
        "category",
        "description-line",
    ],
)
def test_no_show_marker_anywhere(practice, plan, marked):
    """A marker in the title, a category or a description line makes a no-show call due at the end."""
    summary = marked.pop("summary")
    practice.add("a", vevent("ns-1", summary, START, **marked))
    assert plan(practice, "2026-03-10T15:00") == [NO_SHOW, REBOOK]


@pytest.mark.parametrize(
    "summary",
    ["Avery Quinn - no shows before", "Avery Quinn DNAs", "Avery Quinn mDNA", "Avery Quinn showed"],
)
def test_marker_must_be_whole_words(practice, plan, summary):
    """A marker inside a longer word is not a marker: the appointment counts as attended."""
    practice.add("a", vevent("ns-2", summary, START))
    assert plan(practice, "2026-03-10T15:00") == [REBOOK]


def test_no_show_colour(tmp_path, plan):
    """With markers.no_show_colors, an event in that colour (COLOR property, any case) is a no-show."""
    p = make_practice(tmp_path / "p", markers={"no_show_colors": ["Red"]})
    p.add("a", vevent("ns-3", "Avery Quinn", START, extra=["COLOR:red"]))
    p.add("b", vevent("ns-4", "Blake Rowe", local("2026-03-10 12:00"), extra=["COLOR:blue"]))
    assert plan(p, "2026-03-10T15:00") == [
        NO_SHOW,
        REBOOK,
        ("c002", "not_rebooked", "upcoming", "2026-03-17T12:50:00-05:00"),
    ]


def test_no_show_is_upcoming_until_the_end(practice, plan):
    """Marked during the appointment, the call becomes due only when the appointment would have ended."""
    practice.add("a", vevent("ns-5", "Avery Quinn no show", START))
    assert plan(practice, "2026-03-10T10:30") == [
        ("c001", "no_show", "upcoming", "2026-03-10T10:50:00-05:00")
    ]


def test_rebooking_does_not_cancel_the_no_show_call(practice, plan):
    """A session booked after the no-show settles the rebooking question, not the no-show call."""
    practice.add("a", vevent("ns-6", "Avery Quinn no show", START))
    practice.add("b", vevent("ns-7", "Avery Quinn", local("2026-03-17 10:00")))
    assert plan(practice, "2026-03-10T15:00") == [NO_SHOW]


def test_cancelled_wins_over_no_show(practice, plan):
    """An event both cancelled and marked no-show is a cancellation: no no-show call."""
    practice.add(
        "a",
        vevent(
            "ns-8", "Avery Quinn no show", START, status="CANCELLED", last_modified=local("2026-03-09 10:00")
        ),
    )
    assert plan(practice, "2026-03-11T12:00") == [
        ("c001", "cancelled_not_rebooked", "due", "2026-03-11T10:00:00-05:00")
    ]


def test_old_no_show_is_stale(practice, plan):
    """A no-show older than rules.max_age (30d) is stale, and by then the termination letter is due."""
    practice.add("a", vevent("ns-9", "Avery Quinn no show", START))
    assert plan(practice, "2026-04-20T12:00") == [
        ("c001", "no_show", "stale", "2026-03-10T10:50:00-05:00"),
        ("c001", "termination_letter", "due", "2026-03-31T10:50:00-05:00"),
    ]


def test_each_missed_appointment_gets_its_own_call(practice, plan):
    """Two no-shows are two calls, each anchored on its own appointment."""
    practice.add("a", vevent("ns-10", "Avery Quinn DNA", local("2026-03-03 10:00")))
    practice.add("b", vevent("ns-11", "Avery Quinn DNA", START))
    practice.add("c", vevent("ns-12", "Avery Quinn", local("2026-03-17 10:00")))
    assert plan(practice, "2026-03-10T15:00") == [
        ("c001", "no_show", "due", "2026-03-03T10:50:00-06:00"),
        NO_SHOW,
    ]
