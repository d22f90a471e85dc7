"""The calling policy, one reason at a time, on hand-built appointments (no I/O, no clock)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from worker import rules
from worker.model import Appointment, Attendance, Client, ClientId, Reason, reminder_key

TZ = ZoneInfo("America/Chicago")
POLICY = rules.Policy()
CHECK_IN = rules.Policy(check_in=True)


def at(text: str) -> datetime:
    """'2026-03-10 10:00' in the practice zone."""
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def make_client(
    cid: str, *, friends: tuple[str, ...] = (), status: str = "active", consent: bool = True
) -> Client:
    """A roster entry; the alias is the id in capitals."""
    return Client(
        id=ClientId(cid),
        name=f"Client {cid}",
        alias=cid.upper(),
        phone="+1 555 0199" if consent else "",
        consent_to_call=consent,
        voicemail_ok=consent,
        acquainted_with=frozenset(ClientId(f) for f in friends),
        status=status,  # type: ignore[arg-type]
    )


CLIENTS = {
    ClientId("c001"): make_client("c001", friends=("c002",)),
    ClientId("c002"): make_client("c002", friends=("c001",)),
    ClientId("c003"): make_client("c003"),
    ClientId("c004"): make_client("c004", status="discharged"),
}

_serial = iter(range(10**9))


def make_appointment(
    client: str = "c001",
    start: datetime | str = "2026-03-10 10:00",
    *,
    minutes: int = 50,
    attendance: Attendance = Attendance.ATTENDED,
    uid: str | None = None,
    rid: str = "",
    cancelled_at: datetime | None = None,
    created: datetime | None = None,
) -> Appointment:
    """An appointment as the rules see it (attendance already judged)."""
    begin = at(start) if isinstance(start, str) else start
    uid = uid or f"u{next(_serial)}"
    return Appointment(
        id=f"{uid}|{rid}",
        uid=uid,
        recurrence_id=rid,
        client_id=ClientId(client),
        start=begin,
        end=begin + timedelta(minutes=minutes),
        attendance=attendance,
        cancelled_at=cancelled_at,
        created=created,
    )


def summary(needs: list) -> list[tuple[str, str, str, datetime]]:
    return [(n.client_id, n.reason.value, n.state, n.due) for n in needs]


C1 = CLIENTS[ClientId("c001")]


# -- late -------------------------------------------------------------------------------------


def test_late_needs_check_in_mode():
    """Without check-in mode there is never a late call, whatever the time."""
    a = make_appointment(attendance=Attendance.IN_PROGRESS)
    assert rules.late_needs(C1, [a], at("2026-03-10 10:20"), POLICY) == []


def test_late_due_at_start_plus_late_after():
    """In check-in mode the late call is due at start + 15m, upcoming before that."""
    a = make_appointment(attendance=Attendance.IN_PROGRESS)
    [need] = rules.late_needs(C1, [a], at("2026-03-10 10:10"), CHECK_IN)
    assert (need.reason, need.state, need.due) == (Reason.LATE, "upcoming", at("2026-03-10 10:15"))
    [need] = rules.late_needs(C1, [a], at("2026-03-10 10:15"), CHECK_IN)
    assert need.state == "due"


def test_late_only_within_a_day_ahead():
    """An upcoming late call is listed only for appointments starting within late_upcoming (1 day)."""
    a = make_appointment(start="2026-03-11 10:00", attendance=Attendance.SCHEDULED)
    assert len(rules.late_needs(C1, [a], at("2026-03-10 10:00"), CHECK_IN)) == 1
    assert rules.late_needs(C1, [a], at("2026-03-10 09:59"), CHECK_IN) == []


def test_late_not_for_arrived_cancelled_or_missed():
    """Arrived, cancelled, late-cancelled and no-show appointments are never late."""
    now = at("2026-03-10 10:20")
    for attendance in (Attendance.ARRIVED, Attendance.CANCELLED, Attendance.LATE_CANCEL, Attendance.NO_SHOW):
        assert rules.late_needs(C1, [make_appointment(attendance=attendance)], now, CHECK_IN) == []


def test_late_ends_with_the_appointment():
    """At the end of the appointment the late call is gone; a 15-minute one never has one."""
    a = make_appointment(attendance=Attendance.IN_PROGRESS)
    assert rules.late_needs(C1, [a], at("2026-03-10 10:50"), CHECK_IN) == []
    short = make_appointment(minutes=15, attendance=Attendance.IN_PROGRESS)
    assert rules.late_needs(C1, [short], at("2026-03-10 10:05"), CHECK_IN) == []


def test_late_is_never_stale():
    """A late call is useful only during the appointment, so max_age never makes it stale."""
    policy = rules.Policy(check_in=True, max_age=timedelta(0))
    a = make_appointment(attendance=Attendance.IN_PROGRESS)
    [need] = rules.late_needs(C1, [a], at("2026-03-10 10:40"), policy)
    assert need.state == "due"


# -- no-show ----------------------------------------------------------------------------------


def test_no_show_one_call_per_missed_appointment():
    """Each no-show is a call due at its end; attended ones are not."""
    a = make_appointment(start="2026-03-03 10:00", attendance=Attendance.NO_SHOW)
    b = make_appointment(start="2026-03-10 10:00", attendance=Attendance.ATTENDED)
    c = make_appointment(start="2026-03-10 12:00", attendance=Attendance.NO_SHOW)
    got = rules.no_show_needs(C1, [a, b, c], at("2026-03-10 12:30"), POLICY)
    assert [(n.anchor_uid, n.state, n.due) for n in got] == [
        (a.uid, "due", a.end),
        (c.uid, "upcoming", c.end),
    ]


def test_no_show_stale_after_max_age():
    """A no-show older than max_age is stale (listed, not written)."""
    a = make_appointment(start="2026-01-05 10:00", attendance=Attendance.NO_SHOW)
    [need] = rules.no_show_needs(C1, [a], at("2026-03-10 12:00"), POLICY)
    assert need.state == "stale"


# -- rebooking --------------------------------------------------------------------------------


def test_not_rebooked_due_a_week_after_the_latest():
    """Latest attended, nothing after: not_rebooked at its end + rebook_within, anchored on it."""
    a = make_appointment(start="2026-03-03 10:00")
    b = make_appointment(start="2026-03-10 10:00")
    [need] = rules.rebook_needs(C1, [a, b], at("2026-03-12 12:00"), POLICY)
    assert (need.reason, need.state, need.due, need.anchor_uid) == (
        Reason.NOT_REBOOKED,
        "upcoming",
        b.end + timedelta(days=7),
        b.uid,
    )


def test_not_rebooked_after_no_show_or_arrival():
    """A latest appointment that was missed or checked in also counts for not_rebooked."""
    now = at("2026-03-20 12:00")
    for attendance in (Attendance.NO_SHOW, Attendance.ARRIVED):
        [need] = rules.rebook_needs(C1, [make_appointment(attendance=attendance)], now, POLICY)
        assert need.reason is Reason.NOT_REBOOKED


def test_no_rebooking_call_while_something_is_booked():
    """A non-cancelled appointment still ahead (or under way) means no rebooking need."""
    past = make_appointment(start="2026-03-03 10:00")
    ahead = make_appointment(start="2026-03-17 10:00", attendance=Attendance.SCHEDULED)
    running = make_appointment(start="2026-03-10 10:00", attendance=Attendance.IN_PROGRESS)
    assert rules.rebook_needs(C1, [past, ahead], at("2026-03-12 12:00"), POLICY) == []
    assert rules.rebook_needs(C1, [past, running], at("2026-03-10 10:20"), POLICY) == []


def test_cancelled_not_rebooked_from_cancel_time():
    """A cancelled latest appointment: due at its cancel time + cancel_grace, else from its start."""
    seen = make_appointment(start="2026-03-03 10:00")
    cxl = make_appointment(
        start="2026-03-12 10:00", attendance=Attendance.CANCELLED, cancelled_at=at("2026-03-09 08:00")
    )
    [need] = rules.rebook_needs(C1, [seen, cxl], at("2026-03-12 12:00"), POLICY)
    assert (need.reason, need.due, need.anchor_uid) == (
        Reason.CANCELLED_NOT_REBOOKED,
        at("2026-03-11 08:00"),
        cxl.uid,
    )
    unknown = make_appointment(start="2026-03-12 10:00", attendance=Attendance.LATE_CANCEL)
    [need] = rules.rebook_needs(C1, [seen, unknown], at("2026-03-12 12:00"), POLICY)
    assert need.due == at("2026-03-14 10:00")


def test_latest_is_by_start_not_by_attendance():
    """An earlier cancellation does not matter once a later appointment was attended."""
    cxl = make_appointment(
        start="2026-03-03 10:00", attendance=Attendance.CANCELLED, cancelled_at=at("2026-03-01 10:00")
    )
    seen = make_appointment(start="2026-03-10 10:00")
    [need] = rules.rebook_needs(C1, [cxl, seen], at("2026-03-12 12:00"), POLICY)
    assert need.reason is Reason.NOT_REBOOKED


def test_termination_letter_supersedes_at_its_due_time():
    """termination_after past the rebooking due time, the letter replaces the call (same anchor)."""
    seen = make_appointment(start="2026-03-03 10:00")
    letter_due = seen.end + timedelta(days=7 + 14)
    [need] = rules.rebook_needs(C1, [seen], letter_due - timedelta(seconds=1), POLICY)
    assert need.reason is Reason.NOT_REBOOKED
    [need] = rules.rebook_needs(C1, [seen], letter_due, POLICY)
    assert (need.reason, need.state, need.due, need.anchor_uid) == (
        Reason.TERMINATION_LETTER,
        "due",
        letter_due,
        seen.uid,
    )


# -- lapsed -----------------------------------------------------------------------------------


def _lapsing(*ahead: Appointment) -> list[Appointment]:
    return [
        make_appointment(start="2026-02-03 10:00", uid="last-seen"),
        make_appointment(start="2026-02-10 10:00", attendance=Attendance.CANCELLED),
        make_appointment(start="2026-02-17 10:00", attendance=Attendance.NO_SHOW),
        *ahead,
    ]


def test_lapsed_due_after_lapse_after():
    """Excuses since the last attended and a booking ahead: lapsed at last end + 30d, anchored on it."""
    appts = _lapsing(make_appointment(start="2026-03-17 10:00", attendance=Attendance.SCHEDULED))
    [need] = rules.lapsed_needs(C1, appts, at("2026-03-10 12:00"), POLICY)
    assert (need.reason, need.state, need.due, need.anchor_uid) == (
        Reason.LAPSED,
        "due",
        at("2026-02-03 10:50") + timedelta(days=30),
        "last-seen",
    )


def test_lapsed_needs_excuses_history_and_a_booking():
    """No attended history, no excuses, or nothing booked ahead: no lapsed call."""
    now = at("2026-03-10 12:00")
    ahead = make_appointment(start="2026-03-17 10:00", attendance=Attendance.SCHEDULED)
    never = [make_appointment(start="2026-02-10 10:00", attendance=Attendance.CANCELLED), ahead]
    quiet = [make_appointment(start="2026-02-03 10:00"), ahead]
    assert rules.lapsed_needs(C1, never, now, POLICY) == []
    assert rules.lapsed_needs(C1, quiet, now, POLICY) == []
    assert rules.lapsed_needs(C1, _lapsing(), now, POLICY) == []


def test_lapsed_not_raised_when_an_earlier_booking_settles_it():
    """Before the due time, a booking before it means no call; one after it means an upcoming call."""
    now = at("2026-02-20 12:00")
    soon = make_appointment(start="2026-02-26 10:00", attendance=Attendance.SCHEDULED)
    late = make_appointment(start="2026-03-17 10:00", attendance=Attendance.SCHEDULED)
    assert rules.lapsed_needs(C1, _lapsing(soon), now, POLICY) == []
    [need] = rules.lapsed_needs(C1, _lapsing(late), now, POLICY)
    assert need.state == "upcoming"


def test_lapsed_not_raised_while_the_client_is_here():
    """An appointment under way (in progress or checked in) settles it when it ends: no call now."""
    now = at("2026-03-10 10:20")
    for attendance in (Attendance.IN_PROGRESS, Attendance.ARRIVED):
        here = make_appointment(start="2026-03-10 10:00", attendance=attendance)
        assert rules.lapsed_needs(C1, _lapsing(here), now, POLICY) == []


def test_lapsed_still_raised_when_the_current_one_is_missed():
    """An appointment under way but marked no-show does not settle anything."""
    missed = make_appointment(start="2026-03-10 10:00", attendance=Attendance.NO_SHOW)
    ahead = make_appointment(start="2026-03-17 10:00", attendance=Attendance.SCHEDULED)
    [need] = rules.lapsed_needs(C1, _lapsing(missed, ahead), at("2026-03-10 10:20"), POLICY)
    assert need.reason is Reason.LAPSED


def test_excuses_before_the_last_attended_do_not_count():
    """Cancellations before the last attended appointment are history, not a lapse."""
    appts = [
        make_appointment(start="2026-01-27 10:00", attendance=Attendance.CANCELLED),
        make_appointment(start="2026-02-03 10:00"),
        make_appointment(start="2026-03-17 10:00", attendance=Attendance.SCHEDULED),
    ]
    assert rules.lapsed_needs(C1, appts, at("2026-03-10 12:00"), POLICY) == []


# -- conflicts --------------------------------------------------------------------------------

NOW = at("2026-03-10 09:00")


def test_double_booking_calls_the_later_start():
    """Overlapping clients: the later start is called, due now, with the other recorded."""
    a = make_appointment("c001", "2026-03-12 10:00", attendance=Attendance.SCHEDULED)
    b = make_appointment("c003", "2026-03-12 10:30", attendance=Attendance.SCHEDULED)
    [need] = rules.conflict_needs(CLIENTS, [b, a], NOW, POLICY)
    assert (need.client_id, need.reason, need.state, need.due) == ("c003", Reason.DOUBLE_BOOKED, "due", NOW)
    assert (need.anchor_uid, need.other_client_id, need.other_start) == (b.uid, "c001", a.start)


def test_double_booking_ties_go_to_the_later_created():
    """Same start: the later created is called; unknown creation counts as newest; then the id."""
    created = at("2026-03-01 12:00")
    a = make_appointment(
        "c001", "2026-03-12 10:00", attendance=Attendance.SCHEDULED, created=created, uid="a"
    )
    b = make_appointment(
        "c003",
        "2026-03-12 10:00",
        attendance=Attendance.SCHEDULED,
        created=created + timedelta(hours=1),
        uid="b",
    )
    assert [n.client_id for n in rules.conflict_needs(CLIENTS, [a, b], NOW, POLICY)] == ["c003"]
    c = make_appointment("c003", "2026-03-12 10:00", attendance=Attendance.SCHEDULED, uid="c")
    assert [n.client_id for n in rules.conflict_needs(CLIENTS, [a, c], NOW, POLICY)] == ["c003"]
    d = make_appointment(
        "c003", "2026-03-12 10:00", attendance=Attendance.SCHEDULED, created=created, uid="0"
    )
    assert [n.client_id for n in rules.conflict_needs(CLIENTS, [a, d], NOW, POLICY)] == ["c001"]


def test_acquainted_gap_boundary():
    """Acquaintances less than 15 minutes apart conflict; exactly 15 minutes apart do not."""
    a = make_appointment("c001", "2026-03-12 10:00", attendance=Attendance.SCHEDULED)
    near = make_appointment("c002", "2026-03-12 11:04", attendance=Attendance.SCHEDULED)
    far = make_appointment("c002", "2026-03-12 11:05", attendance=Attendance.SCHEDULED)
    [need] = rules.conflict_needs(CLIENTS, [a, near], NOW, POLICY)
    assert (need.client_id, need.reason) == ("c002", Reason.ACQUAINTED_CONFLICT)
    assert rules.conflict_needs(CLIENTS, [a, far], NOW, POLICY) == []


def test_acquaintance_on_one_side_is_enough():
    """The rules read acquaintance from either client's entry."""
    one_sided = {
        ClientId("c001"): make_client("c001"),
        ClientId("c002"): make_client("c002", friends=("c001",)),
    }
    a = make_appointment("c001", "2026-03-12 10:50", attendance=Attendance.SCHEDULED)
    b = make_appointment("c002", "2026-03-12 10:00", attendance=Attendance.SCHEDULED)
    [need] = rules.conflict_needs(one_sided, [a, b], NOW, POLICY)
    assert (need.client_id, need.reason) == ("c001", Reason.ACQUAINTED_CONFLICT)


def test_overlapping_acquaintances_are_only_double_booked():
    """One call fixes both problems: an overlapping acquainted pair is a double booking only."""
    a = make_appointment("c001", "2026-03-12 10:00", attendance=Attendance.SCHEDULED)
    b = make_appointment("c002", "2026-03-12 10:30", attendance=Attendance.SCHEDULED)
    assert [n.reason for n in rules.conflict_needs(CLIENTS, [a, b], NOW, POLICY)] == [Reason.DOUBLE_BOOKED]


def test_conflicts_within_lookahead_only():
    """Both appointments must start within lookahead (14 days) of now."""
    a = make_appointment("c001", "2026-03-24 08:00", attendance=Attendance.SCHEDULED)
    b = make_appointment("c003", "2026-03-24 08:30", attendance=Attendance.SCHEDULED)
    assert rules.conflict_needs(CLIENTS, [a, b], at("2026-03-10 08:29"), POLICY) == []
    assert len(rules.conflict_needs(CLIENTS, [a, b], at("2026-03-10 08:30"), POLICY)) == 1


def test_conflicts_ignore_past_cancelled_and_missed():
    """Past, cancelled and no-show appointments take no part in conflicts."""
    b = make_appointment("c003", "2026-03-12 10:30", attendance=Attendance.SCHEDULED)
    for attendance in (Attendance.CANCELLED, Attendance.LATE_CANCEL, Attendance.NO_SHOW):
        a = make_appointment("c001", "2026-03-12 10:00", attendance=attendance)
        assert rules.conflict_needs(CLIENTS, [a, b], NOW, POLICY) == []
    past_a = make_appointment("c001", "2026-03-09 10:00")
    past_b = make_appointment("c003", "2026-03-09 10:30")
    assert rules.conflict_needs(CLIENTS, [past_a, past_b], NOW, POLICY) == []


def test_appointment_under_way_blocks_the_next():
    """An appointment in progress still conflicts with one starting later; both started, nothing."""
    a = make_appointment("c001", "2026-03-12 10:00", attendance=Attendance.IN_PROGRESS)
    b = make_appointment("c003", "2026-03-12 10:30", attendance=Attendance.SCHEDULED)
    [need] = rules.conflict_needs(CLIENTS, [a, b], at("2026-03-12 10:10"), POLICY)
    assert need.client_id == "c003"
    b_started = make_appointment("c003", "2026-03-12 10:30", attendance=Attendance.IN_PROGRESS)
    assert rules.conflict_needs(CLIENTS, [a, b_started], at("2026-03-12 10:40"), POLICY) == []


def test_discharged_or_unknown_clients_take_no_part():
    """A pair with a discharged or unknown client raises nothing, whichever starts first."""
    for other in ("c004", "c999"):
        for first, second in ((other, "c001"), ("c001", other)):
            a = make_appointment(first, "2026-03-12 10:00", attendance=Attendance.SCHEDULED)
            b = make_appointment(second, "2026-03-12 10:30", attendance=Attendance.SCHEDULED)
            assert rules.conflict_needs(CLIENTS, [a, b], NOW, POLICY) == []


def test_same_client_overlapping_itself_is_no_conflict():
    """Two entries of one client are a duplicate, not a double booking."""
    a = make_appointment("c001", "2026-03-12 10:00", attendance=Attendance.SCHEDULED)
    b = make_appointment("c001", "2026-03-12 10:15", attendance=Attendance.SCHEDULED)
    assert rules.conflict_needs(CLIENTS, [a, b], NOW, POLICY) == []


def test_one_call_per_called_appointment():
    """An appointment overlapping two earlier ones is called once; the first other is named."""
    a1 = make_appointment("c001", "2026-03-12 10:00", attendance=Attendance.SCHEDULED)
    a2 = make_appointment("c002", "2026-03-12 10:10", attendance=Attendance.SCHEDULED)
    b = make_appointment("c003", "2026-03-12 10:40", attendance=Attendance.SCHEDULED)
    got = rules.conflict_needs(CLIENTS, [b, a2, a1], NOW, POLICY)
    assert sorted((n.client_id, n.other_client_id) for n in got) == [("c002", "c001"), ("c003", "c001")]


# -- needs() ----------------------------------------------------------------------------------


def _week() -> list[Appointment]:
    return [
        make_appointment("c001", "2026-03-09 10:00", attendance=Attendance.NO_SHOW, uid="w1"),
        make_appointment("c002", "2026-03-09 10:00", uid="w2"),
        make_appointment("c003", "2026-03-02 14:00", uid="w3"),
        make_appointment("c003", "2026-03-12 14:00", attendance=Attendance.SCHEDULED, uid="w4"),
        make_appointment("c001", "2026-03-12 14:30", attendance=Attendance.SCHEDULED, uid="w5"),
        make_appointment("c004", "2026-03-09 11:00", attendance=Attendance.NO_SHOW, uid="w6"),
        make_appointment("c999", "2026-03-09 11:00", attendance=Attendance.NO_SHOW, uid="w7"),
    ]


def test_needs_sorted_by_due_client_reason():
    """needs() returns every need sorted by (due, client, reason); discharged and unknown clients get none."""
    got = rules.needs(CLIENTS, _week(), now=NOW, policy=POLICY)
    assert summary(got) == [
        ("c001", "no_show", "due", at("2026-03-09 10:50")),
        ("c001", "double_booked", "due", NOW),
        ("c002", "not_rebooked", "upcoming", at("2026-03-16 10:50")),
    ]


def test_needs_independent_of_input_order():
    """The same appointments in any order give the same needs."""
    week = _week()
    expected = rules.needs(CLIENTS, week, now=NOW, policy=POLICY)
    shuffler = random.Random(7)
    for _ in range(20):
        shuffler.shuffle(week)
        assert rules.needs(CLIENTS, week, now=NOW, policy=POLICY) == expected


def test_needs_at_most_one_rebooking_need_per_client():
    """Not rebooked, cancelled not rebooked and the letter never come together for one client."""
    appts = [
        make_appointment("c001", "2026-01-06 10:00"),
        make_appointment(
            "c001", "2026-01-13 10:00", attendance=Attendance.CANCELLED, cancelled_at=at("2026-01-12 10:00")
        ),
    ]
    got = rules.needs(CLIENTS, appts, now=at("2026-03-10 12:00"), policy=POLICY)
    assert [n.reason for n in got] == [Reason.TERMINATION_LETTER]


def test_needs_accepts_now_in_any_zone():
    """The same instant written in UTC or local time gives the same needs."""
    local_now = at("2026-03-10 09:00")
    assert rules.needs(CLIENTS, _week(), now=local_now, policy=POLICY) == rules.needs(
        CLIENTS, _week(), now=local_now.astimezone(UTC), policy=POLICY
    )


def test_key_is_the_design_formula():
    """An ordinary anchor's key is sha256(client|reason|uid|rid) as docs/design.md "Reminder keys" says."""
    a = make_appointment(attendance=Attendance.NO_SHOW, uid="abc-123@example.org", rid="20260310T150000Z")
    [need] = rules.no_show_needs(C1, [a], at("2026-03-10 12:00"), POLICY)
    assert need.key == reminder_key("c001", "no_show", "abc-123@example.org", "20260310T150000Z")
    assert len(need.key) == 26


def test_keys_do_not_collide_through_the_separator():
    """uid "x|R" (a single event) and uid "x" with recurrence id R are different anchors, so different keys."""
    now = at("2026-03-10 12:00")
    single = make_appointment(attendance=Attendance.NO_SHOW, uid="x|20260310T150000Z", rid="")
    instance = make_appointment(attendance=Attendance.NO_SHOW, uid="x", rid="20260310T150000Z")
    [one] = rules.no_show_needs(C1, [single], now, POLICY)
    [two] = rules.no_show_needs(C1, [instance], now, POLICY)
    assert one.key != two.key
    assert one.anchor == "x|20260310T150000Z|"
