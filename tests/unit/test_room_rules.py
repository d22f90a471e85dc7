"""rules.room_needs: acquaintances booked near each other with two clinicians who share a waiting
room; the pure rule agrees with the one-calendar rule on who is called, from either side."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_rules import at, make_appointment, make_client
from worker import rules
from worker.model import Attendance, ClientId, Reason

POLICY = rules.Policy()
NOW = at("2026-03-09 09:00")
CLIENTS = {ClientId("c001"): make_client("c001", friends=("c002",)), ClientId("c002"): make_client("c002")}


def test_the_later_appointment_is_called_by_its_own_clinician() -> None:
    """c001 with one clinician at 10:00, c002 with another at 10:55: only the second clinician's view calls c002."""
    first = make_appointment("c001", "2026-03-10 10:00", attendance=Attendance.SCHEDULED, uid="r1")
    second = make_appointment("c002", "2026-03-10 10:55", attendance=Attendance.SCHEDULED, uid="o1")
    assert rules.room_needs(CLIENTS, [first], [second], NOW, POLICY) == []
    [need] = rules.room_needs(CLIENTS, [second], [first], NOW, POLICY)
    assert (need.client_id, need.reason, need.anchor_uid, need.other_client_id) == (
        "c002",
        Reason.ACQUAINTED_CONFLICT,
        "o1",
        "c001",
    )
    # the same need, by key, as one calendar holding both would raise
    together = rules.conflict_needs(CLIENTS, [first, second], NOW, POLICY)
    assert [n.key for n in together] == [need.key]


def test_single_calendar_needs_are_unchanged_without_other_clinicians() -> None:
    """needs() with no room and no elsewhere gives exactly what it gave before the group practice."""
    appts = [
        make_appointment("c001", "2026-03-02 10:00", uid="a"),
        make_appointment("c002", "2026-03-10 10:55", attendance=Attendance.SCHEDULED, uid="b"),
        make_appointment("c001", "2026-03-10 10:00", attendance=Attendance.SCHEDULED, uid="c"),
    ]
    assert rules.needs(CLIENTS, appts, now=NOW, policy=POLICY) == rules.needs(
        CLIENTS, appts, now=NOW, policy=POLICY, room=(), elsewhere=()
    )


def test_a_booking_elsewhere_settles_the_rebooking_call() -> None:
    """Seen here, booked with another clinician: no not_rebooked here, and nothing anchored on theirs."""
    seen = make_appointment("c001", "2026-02-27 10:00", uid="here")
    there = make_appointment("c001", "2026-03-12 10:00", attendance=Attendance.SCHEDULED, uid="there")
    alone = rules.needs(CLIENTS, [seen], now=NOW, policy=POLICY)
    assert [n.reason for n in alone] == [Reason.NOT_REBOOKED]
    assert rules.needs(CLIENTS, [seen], now=NOW, policy=POLICY, elsewhere=[there]) == []
    missed = make_appointment("c001", "2026-03-05 10:00", attendance=Attendance.NO_SHOW, uid="missed-there")
    assert rules.needs(CLIENTS, [seen], now=NOW, policy=POLICY, elsewhere=[there, missed]) == []


@settings(max_examples=200, deadline=None)
@given(
    a_start=st.integers(min_value=0, max_value=8 * 12),
    b_start=st.integers(min_value=0, max_value=8 * 12),
    a_len=st.integers(min_value=2, max_value=12),
    b_len=st.integers(min_value=2, max_value=12),
    a_here=st.booleans(),
)
def test_exactly_one_clinician_calls_and_it_is_the_one_calendar_choice(
    a_start: int, b_start: int, a_len: int, b_len: int, a_here: bool
) -> None:
    """For any two acquaintances' appointments (5-minute grid) with two clinicians, the two
    clinicians' views together raise the acquainted_conflict one calendar would raise (or a
    double booking's call when they overlap), once, at the clinician holding the called one."""
    day = at("2026-03-10 08:00")
    a = make_appointment(
        "c001",
        day + timedelta(minutes=5 * a_start),
        minutes=5 * a_len,
        attendance=Attendance.SCHEDULED,
        uid="A",
    )
    b = make_appointment(
        "c002",
        day + timedelta(minutes=5 * b_start),
        minutes=5 * b_len,
        attendance=Attendance.SCHEDULED,
        uid="B",
    )
    mine, theirs = ([a], [b]) if a_here else ([b], [a])
    split = rules.room_needs(CLIENTS, mine, theirs, NOW, POLICY) + rules.room_needs(
        CLIENTS, theirs, mine, NOW, POLICY
    )
    one = rules.conflict_needs(CLIENTS, [a, b], NOW, POLICY)
    assert len(split) == len(one) <= 1
    for got, want in zip(split, one, strict=True):
        assert (got.client_id, got.anchor_uid) == (want.client_id, want.anchor_uid)
        assert got.reason is Reason.ACQUAINTED_CONFLICT
