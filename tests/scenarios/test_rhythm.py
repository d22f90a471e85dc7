"""Each client's own rhythm: `rebook_within`, a planned break (`pause_until`), and contact wishes
(`call_after`, `no_calls`). Dates in the roster mean local midnight in the practice's zone.
"""

from __future__ import annotations

import pytest

from tests.practice import DEFAULT_CLIENTS, ClientSpec, local, vevent
from tests.scenarios.conftest import make_practice

SEEN = local("2026-03-10 10:00")  # Tuesday, 10:00-10:50 CDT


def _practice(tmp_path, **raw: str):
    """The default practice where Avery (c001) carries these extra roster keys."""
    avery = ClientSpec("c001", "Avery Quinn", emails=("avery@example.org",), raw=dict(raw))
    return make_practice(tmp_path / "practice", clients=(avery, *DEFAULT_CLIENTS[1:]))


def test_a_monthly_client_is_not_called_after_a_week(tmp_path, plan):
    """rebook_within = 28d: the call falls due four weeks after the session, not one."""
    practice = _practice(tmp_path, rebook_within='"28d"')
    practice.add("seen", vevent("rh-1", "Avery Quinn", SEEN))
    practice.add("other", vevent("rh-2", "Blake Rowe", SEEN.replace(hour=14)))
    assert plan(practice, "2026-03-18T09:00") == [
        ("c002", "not_rebooked", "due", "2026-03-17T14:50:00-05:00"),
        ("c001", "not_rebooked", "upcoming", "2026-04-07T10:50:00-05:00"),
    ]
    assert plan(practice, "2026-04-21T10:50") == [
        ("c002", "termination_letter", "due", "2026-03-31T14:50:00-05:00"),
        ("c001", "termination_letter", "due", "2026-04-21T10:50:00-05:00"),
    ]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-03-18T09:00", []),
        ("2026-04-14T23:59", []),
        ("2026-04-15T00:00", [("c001", "not_rebooked", "due", "2026-04-15T00:00:00-05:00")]),
        ("2026-04-29T00:00", [("c001", "termination_letter", "due", "2026-04-29T00:00:00-05:00")]),
    ],
)
def test_a_planned_break_holds_the_rebooking_call_until_it_ends(tmp_path, plan, now, expected):
    """pause_until: no rebooking call during the break; from its end the normal rules apply."""
    practice = _practice(tmp_path, pause_until="2026-04-15", pause_reason='"summer abroad"')
    practice.add("seen", vevent("rh-3", "Avery Quinn", SEEN))
    assert plan(practice, now) == expected


def test_a_break_that_ended_long_ago_changes_nothing(tmp_path, plan):
    """A pause before the last session does not move its rebooking call."""
    practice = _practice(tmp_path, pause_until="2026-01-05")
    practice.add("seen", vevent("rh-4", "Avery Quinn", SEEN))
    assert plan(practice, "2026-03-18T09:00") == [
        ("c001", "not_rebooked", "due", "2026-03-17T10:50:00-05:00")
    ]


def test_a_break_holds_the_lapsed_call_but_not_the_no_show_call(tmp_path, plan):
    """Keeps missing during the break: the no-show is called, the lapsed call waits for the end."""
    practice = _practice(tmp_path, pause_until="2026-05-01")
    practice.add("seen", vevent("rh-5", "Avery Quinn", local("2026-02-03 10:00")))
    practice.add("miss", vevent("rh-6", "Avery Quinn no-show", local("2026-02-17 10:00")))
    practice.add("ahead", vevent("rh-7", "Avery Quinn", local("2026-05-12 10:00")))
    assert plan(practice, "2026-03-18T09:00") == [("c001", "no_show", "due", "2026-02-17T10:50:00-06:00")]
    assert plan(practice, "2026-05-01T09:00") == [
        ("c001", "no_show", "stale", "2026-02-17T10:50:00-06:00"),
        ("c001", "lapsed", "due", "2026-05-01T00:00:00-05:00"),
    ]


def test_call_after_moves_every_call_to_that_day(tmp_path, plan):
    """call_after: a missed session's calls wait until the day the client named."""
    practice = _practice(tmp_path, call_after="2026-03-25")
    practice.add("seen", vevent("rh-8", "Avery Quinn no-show", SEEN))
    assert plan(practice, "2026-03-18T09:00") == [
        ("c001", "no_show", "upcoming", "2026-03-25T00:00:00-05:00"),
        ("c001", "not_rebooked", "upcoming", "2026-03-25T00:00:00-05:00"),
    ]


def test_no_calls_leaves_only_the_letter(tmp_path, plan):
    """no_calls = true: never a call; the termination letter (not a call) still falls due."""
    practice = _practice(tmp_path, no_calls="true")
    practice.add("seen", vevent("rh-9", "Avery Quinn no-show", SEEN))
    assert plan(practice, "2026-03-18T09:00") == []
    assert plan(practice, "2026-03-31T10:50") == [
        ("c001", "termination_letter", "due", "2026-03-31T10:50:00-05:00")
    ]


def test_a_double_booking_calls_the_client_who_may_be_called(tmp_path, plan):
    """The later-booked client asked for no calls: the other one is called to move instead."""
    practice = _practice(tmp_path, no_calls="true")
    practice.add(
        "a", vevent("rh-10", "Blake Rowe", local("2026-03-20 10:00"), created=local("2026-03-01 09:00"))
    )
    practice.add(
        "b", vevent("rh-11", "Avery Quinn", local("2026-03-20 10:00"), created=local("2026-03-02 09:00"))
    )
    lines = plan(practice, "2026-03-18T09:00")
    assert lines == [("c002", "double_booked", "due", "2026-03-18T09:00:00-05:00")]


def test_status_shows_each_rhythm_and_pause_and_the_coverage(tmp_path, capsys):
    """status: the client's own rhythm and break on the terminal, and how many events matched."""
    from worker.cli import main

    practice = _practice(tmp_path, rebook_within='"28d"', pause_until="2026-04-15", pause_reason='"abroad"')
    practice.add("seen", vevent("rh-12", "Avery Quinn", SEEN))
    practice.add("other", vevent("rh-13", "Supervision", SEEN.replace(hour=14)))
    capsys.readouterr()
    assert main(["--config", str(practice.config), "status", "--now", "2026-03-18T09:00"]) == 0
    out = capsys.readouterr().out
    avery = next(line for line in out.splitlines() if line.startswith("A.Q."))
    assert "28d" in avery and "paused until 2026-04-15 (abroad)" in avery
    blake = next(line for line in out.splitlines() if line.startswith("B.R."))
    assert "7d (default)" in blake
    assert "1 of 2 appointment-like events in the window matched a client; 1 did not" in out
    assert "'Supervision' x1" in out
