"""Seed: "Correct scheduling mistakes": acquaintances booked back to back, and double bookings.

acquainted_conflict: two non-cancelled appointments ahead (within lookahead, 14d) of
acquainted clients less than acquainted_gap (15m) apart; the later one is called, due now,
with free alternative slots. double_booked: two appointments of different clients overlap
(acquainted or not: one call fixes both); the later start is called (ties: later created).
"""

from __future__ import annotations

from tests.practice import local, vevent
from tests.scenarios.conftest import make_practice, written

NOW = "2026-03-10T09:00"  # Tuesday morning
DUE_NOW = "2026-03-10T09:00:00-05:00"
THU = "2026-03-12"


def _at(hhmm: str, day: str = THU):
    return local(f"{day} {hhmm}")


def test_back_to_back_acquaintances(practice, plan_json):
    """Blake (c002) right after Avery (c001), who know each other: Blake, the later one, is called now."""
    practice.add("a", vevent("aq-1", "Avery Quinn", _at("10:00")))
    practice.add("b", vevent("aq-2", "Blake Rowe", _at("10:50")))
    lines = plan_json(practice, NOW)
    assert [(o["client"], o["reason"], o["state"], o["due"], o["anchor"]) for o in lines] == [
        ("c002", "acquainted_conflict", "due", DUE_NOW, "aq-2|")
    ]


def test_the_later_one_is_called_whoever_it_is(practice, plan):
    """With Blake first and Avery after, Avery is the one called."""
    practice.add("b", vevent("aq-3", "Blake Rowe", _at("10:00")))
    practice.add("a", vevent("aq-4", "Avery Quinn", _at("10:55")))
    assert plan(practice, NOW) == [("c001", "acquainted_conflict", "due", DUE_NOW)]


def test_gap_boundary(practice, plan):
    """A 14-minute gap is a conflict; a 15-minute gap (acquainted_gap) is not."""
    practice.add("a", vevent("aq-5", "Avery Quinn", _at("10:00")))
    practice.add("b", vevent("aq-6", "Blake Rowe", _at("11:04")))
    assert plan(practice, NOW) == [("c002", "acquainted_conflict", "due", DUE_NOW)]
    practice.add("b", vevent("aq-6", "Blake Rowe", _at("11:05")))
    assert plan(practice, NOW) == []


def test_strangers_back_to_back_are_fine(practice, plan):
    """Clients who do not know each other may follow each other directly."""
    practice.add("a", vevent("aq-7", "Avery Quinn", _at("10:00")))
    practice.add("c", vevent("aq-8", "Cameron Tate", _at("10:50")))
    assert plan(practice, NOW) == []


def test_overlapping_acquaintances_are_one_double_booking(practice, plan):
    """An overlapping acquainted pair is reported once, as double_booked."""
    practice.add("a", vevent("aq-9", "Avery Quinn", _at("10:00")))
    practice.add("b", vevent("aq-10", "Blake Rowe", _at("10:30")))
    assert plan(practice, NOW) == [("c002", "double_booked", "due", DUE_NOW)]


def test_conflicts_only_within_lookahead(practice, plan):
    """Avery 10:00 and Blake 10:50 on Mon 30 March: the conflict appears once both are within 14 days."""
    practice.add("a", vevent("aq-11", "Avery Quinn", local("2026-03-30 10:00")))
    practice.add("b", vevent("aq-12", "Blake Rowe", local("2026-03-30 10:50")))
    assert plan(practice, "2026-03-16T10:49") == []
    assert plan(practice, "2026-03-16T10:50") == [
        ("c002", "acquainted_conflict", "due", "2026-03-16T10:50:00-05:00")
    ]


def test_cancelled_appointment_conflicts_with_nobody(practice, plan):
    """Once one of the pair is cancelled there is nothing to move (but the cancellation call stands)."""
    practice.add(
        "a",
        vevent(
            "aq-13", "Avery Quinn", _at("10:00"), status="CANCELLED", last_modified=local("2026-03-09 12:00")
        ),
    )
    practice.add("b", vevent("aq-14", "Blake Rowe", _at("10:50")))
    assert plan(practice, NOW) == [
        ("c001", "cancelled_not_rebooked", "upcoming", "2026-03-11T12:00:00-05:00")
    ]


def test_custom_gap_and_lookahead(tmp_path, plan):
    """rules.acquainted_gap and rules.lookahead are honoured."""
    p = make_practice(tmp_path / "p", rules={"acquainted_gap": "30m", "lookahead": "1d"})
    p.add("a", vevent("aq-15", "Avery Quinn", _at("10:00")))
    p.add("b", vevent("aq-16", "Blake Rowe", _at("11:15")))
    assert plan(p, NOW) == []
    assert plan(p, "2026-03-11T12:00") == [
        ("c002", "acquainted_conflict", "due", "2026-03-11T12:00:00-05:00")
    ]


def test_acquainted_reminder_lists_alternatives(practice, run_once):
    """The reminder offers three free times clear of the acquaintance by 15 minutes, spread over days and half-days."""
    practice.add("a", vevent("aq-17", "Avery Quinn", _at("10:00")))
    practice.add("b", vevent("aq-18", "Blake Rowe", _at("10:50")))
    run_once(practice, NOW)
    [event] = written(practice.events_dir)
    assert (event["client"], event["reason"]) == ("c002", "acquainted_conflict")
    assert event["title"] == "Call B.R. — move Thu 12 Mar 10:50 (waiting-room overlap)"
    assert (
        "Free times to offer: Thursday 12 March at 11:15; Friday 13 March at 12:00; Monday 16 March at 09:00."
        in str(event["description"])
    )


def test_double_booking_calls_the_later_start(practice, plan):
    """Two clients overlapping: the one whose appointment starts later is called, due now."""
    practice.add("a", vevent("db-1", "Avery Quinn", _at("10:00")))
    practice.add("c", vevent("db-2", "Cameron Tate", _at("10:30")))
    assert plan(practice, NOW) == [("c003", "double_booked", "due", DUE_NOW)]


def test_double_booking_tie_goes_to_the_later_created(practice, plan):
    """Same start: the appointment created later is the one moved."""
    practice.add("a", vevent("db-3", "Avery Quinn", _at("10:00"), created=local("2026-03-01 12:00")))
    practice.add("c", vevent("db-4", "Cameron Tate", _at("10:00"), created=local("2026-03-02 12:00")))
    assert plan(practice, NOW) == [("c003", "double_booked", "due", DUE_NOW)]
    practice.add("a", vevent("db-3", "Avery Quinn", _at("10:00"), created=local("2026-03-03 12:00")))
    assert plan(practice, NOW) == [("c001", "double_booked", "due", DUE_NOW)]


def test_three_way_overlap(practice, plan):
    """Three overlapping clients: everyone but the earliest is called once."""
    practice.add("a", vevent("db-5", "Avery Quinn", _at("10:00")))
    practice.add("b", vevent("db-6", "Blake Rowe", _at("10:30")))
    practice.add("c", vevent("db-7", "Cameron Tate", _at("10:45")))
    assert plan(practice, NOW) == [
        ("c002", "double_booked", "due", DUE_NOW),
        ("c003", "double_booked", "due", DUE_NOW),
    ]


def test_an_appointment_under_way_still_blocks_the_next(practice, plan):
    """At 10:10 Avery's 10:00 appointment is under way; Cameron's overlapping 10:30 must still be moved."""
    practice.add("a", vevent("db-8", "Avery Quinn", _at("10:00")))
    practice.add("c", vevent("db-9", "Cameron Tate", _at("10:30")))
    assert plan(practice, "2026-03-12T10:10") == [
        ("c003", "double_booked", "due", "2026-03-12T10:10:00-05:00")
    ]


def test_both_under_way_is_too_late_to_call(practice, plan):
    """Once both overlapping appointments have begun there is nothing left to move."""
    practice.add("a", vevent("db-10", "Avery Quinn", _at("10:00")))
    practice.add("c", vevent("db-11", "Cameron Tate", _at("10:30")))
    assert plan(practice, "2026-03-12T10:40") == []


def test_discharged_client_takes_no_part_in_conflicts(practice, plan):
    """A leftover booking of a discharged client (c004) raises no call, whichever starts first."""
    practice.add("d", vevent("db-12", "Devon Ueda", _at("10:00")))
    practice.add("a", vevent("db-13", "Avery Quinn", _at("10:30")))
    practice.add("d2", vevent("db-14", "Devon Ueda", _at("14:30")))
    practice.add("c", vevent("db-15", "Cameron Tate", _at("14:00")))
    assert plan(practice, NOW) == []


def test_same_client_twice_is_not_a_double_booking(practice, plan):
    """Two overlapping entries of one client are a calendar duplicate, not a call."""
    practice.add("a", vevent("db-16", "Avery Quinn", _at("10:00")))
    practice.add("a2", vevent("db-17", "Avery Quinn", _at("10:15")))
    assert plan(practice, NOW) == []


def test_personal_events_do_not_double_book(practice, plan):
    """An event that matches no client is the therapist's own: no call."""
    practice.add("a", vevent("db-18", "Avery Quinn", _at("10:00")))
    practice.add("x", vevent("db-19", "Dentist", _at("10:15")))
    assert plan(practice, NOW) == []


def test_same_day_conflict_reminder_goes_at_once(practice, run_once):
    """A conflict today is placed at now; one on a later day at the first free office slot from now."""
    practice.add("a", vevent("db-20", "Avery Quinn", _at("10:00")))
    practice.add("c", vevent("db-21", "Cameron Tate", _at("10:30")))
    run_once(practice, "2026-03-12T08:03")
    [event] = written(practice.events_dir)
    assert event["start"] == local("2026-03-12 08:03")


def test_later_day_conflict_reminder_goes_at_the_first_free_slot(practice, run_once):
    """Booked for Thursday, noticed Tuesday 08:03: the reminder goes at Tuesday 09:00, the first office slot."""
    practice.add("a", vevent("db-22", "Avery Quinn", _at("10:00")))
    practice.add("c", vevent("db-23", "Cameron Tate", _at("10:30")))
    run_once(practice, "2026-03-10T08:03")
    [event] = written(practice.events_dir)
    assert event["start"] == local("2026-03-10 09:00")
