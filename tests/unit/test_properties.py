"""Invariants of the rules, placement, keys and voicemails over generated caseloads (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from random import Random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import Phase, assume, find, given, settings
from hypothesis import strategies as st

from worker import placement, render, rules
from worker.attendance import appointment_at
from worker.model import (
    Appointment,
    Attendance,
    Busy,
    CallNeed,
    Client,
    ClientId,
    Observation,
    Reason,
    ReminderKey,
    overlaps,
)

TZ = ZoneInfo("America/Chicago")
IDS = [ClientId(f"c{n}") for n in range(5)]
# Two moments just before a DST change, one ordinary: the generated weeks straddle them.
NOWS = [
    datetime(2026, 3, 5, 11, 7, tzinfo=TZ),
    datetime(2026, 10, 29, 16, 40, tzinfo=TZ),
    datetime(2026, 6, 16, 9, 0, tzinfo=TZ),
]
REBOOKING = {Reason.NOT_REBOOKED, Reason.CANCELLED_NOT_REBOOKED, Reason.TERMINATION_LETTER}
HOURS = placement.Hours(tz=TZ, weekdays=frozenset(range(5)), start=time(9), end=time(17))
LENGTH = timedelta(minutes=15)
SETTINGS = settings(deadline=None, max_examples=150)


@st.composite
def rosters(draw: st.DrawFn) -> dict[ClientId, Client]:
    """Five clients, some discharged, some acquainted (one side or both)."""
    statuses = draw(st.lists(st.sampled_from(["active", "active", "discharged"]), min_size=5, max_size=5))
    links = draw(st.sets(st.tuples(st.sampled_from(IDS), st.sampled_from(IDS)), min_size=1, max_size=5))
    friends: dict[ClientId, set[ClientId]] = defaultdict(set)
    for a, b in links:
        if a != b:
            friends[a].add(b)
    return {
        cid: Client(
            id=cid,
            name=f"Client {cid}",
            alias=cid.upper(),
            acquainted_with=frozenset(friends[cid]),
            status=status,  # type: ignore[arg-type]
        )
        for cid, status in zip(IDS, statuses, strict=True)
    }


@st.composite
def caseloads(draw: st.DrawFn) -> tuple[datetime, list[Appointment]]:
    """A `now` and up to 30 appointments on a coarse grid (so ties, overlaps and back-to-backs happen)."""
    now = draw(st.sampled_from(NOWS))
    day0 = now.astimezone(TZ).date()
    count = draw(st.integers(0, 30))
    out: list[Appointment] = []
    for n in range(count):
        client = draw(st.sampled_from([*IDS, ClientId("stranger")]))
        shape = draw(st.integers(0, 5)) if out else 5
        if shape == 0:
            # a twin: same client and start as an earlier one, so sorting ties must be broken
            twin = out[draw(st.integers(0, len(out) - 1))]
            client, start = twin.client_id, twin.start
        elif shape == 1:
            # a follower: right after an earlier one (back to back, or nearly)
            before = out[draw(st.integers(0, len(out) - 1))]
            start = before.end + timedelta(minutes=draw(st.sampled_from([0, 5, 10, 15])))
        else:
            # half the time in the next few days, where conflicts, late calls and bookings meet
            day = day0 + timedelta(days=draw(st.one_of(st.integers(-70, 20), st.integers(0, 3))))
            hour = draw(st.integers(8, 17))
            minute = draw(st.sampled_from([0, 15, 30, 45, 50]))
            start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).astimezone(UTC)
        end = start + timedelta(minutes=draw(st.sampled_from([15, 30, 50, 60, 90])))
        kind = draw(st.sampled_from(["plain", "plain", "plain", "cancelled", "no_show", "arrived"]))
        cancelled = kind == "cancelled"
        cancelled_at = None
        if cancelled and draw(st.booleans()):
            cancelled_at = start - timedelta(hours=draw(st.integers(-3, 96)))
        created = start - timedelta(days=draw(st.integers(1, 60))) if draw(st.booleans()) else None
        uid = f"u{n}"
        rid = draw(st.sampled_from(["", "20260101T000000Z"]))
        obs = Observation(
            id=f"{uid}|{rid}",
            uid=uid,
            recurrence_id=rid,
            client_id=client,
            start=start,
            end=end,
            cancelled=cancelled,
            cancelled_at=cancelled_at or (start if cancelled else None),
            no_show=kind == "no_show",
            arrived=kind == "arrived",
            created=created,
        )
        out.append(appointment_at(obs, now, late_cancel_within=timedelta(hours=24)))
    return now, out


policies = st.builds(
    rules.Policy,
    check_in=st.booleans(),
    lapse_after=st.sampled_from([timedelta(days=10), timedelta(days=30)]),
    termination_after=st.sampled_from([timedelta(days=3), timedelta(days=14)]),
    max_age=st.sampled_from([timedelta(days=5), timedelta(days=30)]),
)


@SETTINGS
@given(rosters(), caseloads(), policies, st.randoms(use_true_random=False))
def test_needs_are_deterministic_in_any_order(clients, caseload, policy, shuffler):
    """The same appointments, in any order and on any run, give exactly the same needs."""
    now, appts = caseload
    first = rules.needs(clients, appts, now=now, policy=policy)
    again = list(appts)
    shuffler.shuffle(again)
    assert rules.needs(clients, again, now=now, policy=policy) == first
    assert rules.needs(clients, appts, now=now, policy=policy) == first


@SETTINGS
@given(rosters(), caseloads(), policies)
def test_discharged_clients_never_get_a_need(clients, caseload, policy):
    """No need is ever raised for a discharged client (nor for anyone outside the roster)."""
    now, appts = caseload
    for need in rules.needs(clients, appts, now=now, policy=policy):
        assert need.client_id in clients
        assert not clients[need.client_id].discharged


@SETTINGS
@given(rosters(), caseloads(), policies)
def test_booked_clients_get_no_rebooking_need(clients, caseload, policy):
    """A client with a non-cancelled future appointment never gets not_rebooked, cancelled_not_rebooked or a letter."""
    now, appts = caseload
    booked = {a.client_id for a in appts if not a.is_cancelled and a.start > now}
    for need in rules.needs(clients, appts, now=now, policy=policy):
        if need.client_id in booked:
            assert need.reason not in REBOOKING


@SETTINGS
@given(rosters(), caseloads(), policies)
def test_at_most_one_rebooking_need_per_client(clients, caseload, policy):
    """At most one of not_rebooked / cancelled_not_rebooked / termination_letter per client."""
    now, appts = caseload
    seen: set[ClientId] = set()
    for need in rules.needs(clients, appts, now=now, policy=policy):
        if need.reason in REBOOKING:
            assert need.client_id not in seen
            seen.add(need.client_id)


@SETTINGS
@given(rosters(), caseloads(), policies)
def test_need_state_follows_due_time(clients, caseload, policy):
    """upcoming iff due > now; stale iff older than max_age (never for late or conflicts); else due; sorted."""
    now, appts = caseload
    got = rules.needs(clients, appts, now=now, policy=policy)
    for need in got:
        if need.due > now:
            assert need.state == "upcoming"
        elif need.due < now - policy.max_age and need.reason not in (
            Reason.LATE,
            Reason.DOUBLE_BOOKED,
            Reason.ACQUAINTED_CONFLICT,
        ):
            assert need.state == "stale"
        else:
            assert need.state == "due"
    order = list(Reason)
    keys = [(n.due, n.client_id, order.index(n.reason)) for n in got]
    assert keys == sorted(keys)


def _anchor(uid: str, rid: str) -> Appointment:
    start = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    return Appointment(
        id=f"{uid}|{rid}",
        uid=uid,
        recurrence_id=rid,
        client_id=ClientId("c0"),
        start=start,
        end=start + timedelta(minutes=50),
        attendance=Attendance.NO_SHOW,
    )


anchors = st.tuples(
    st.from_regex(r"[A-Za-z0-9_.-]{1,6}", fullmatch=True),
    st.sampled_from(list(Reason)),
    st.text(alphabet="ab|%-@", max_size=8),
    st.text(alphabet="0123Z|%T", max_size=6),
)


@SETTINGS
@given(anchors, anchors)
def test_keys_never_collide_across_distinct_anchors(one, two):
    """Distinct (client, reason, uid, recurrence-id) give distinct keys, even with '|' or '%' in the uid."""
    assume(one != two)
    now = datetime(2026, 3, 10, 16, 0, tzinfo=UTC)
    keys = [
        rules._need(ClientId(client), reason, now, _anchor(uid, rid), now, rules.Policy()).key
        for client, reason, uid, rid in (one, two)
    ]
    assert keys[0] != keys[1]
    assert all(len(k) == 26 and k == k.lower() for k in keys)


busy_spans = st.lists(
    st.tuples(st.integers(0, 20 * 24 * 12), st.integers(1, 8 * 12)),  # 5-minute units: start, length
    max_size=25,
)


def _spans_to_busy(origin: datetime, spans: list[tuple[int, int]]) -> list[Busy]:
    return [
        Busy(origin + timedelta(minutes=5 * s), origin + timedelta(minutes=5 * (s + n))) for s, n in spans
    ]


@SETTINGS
@given(
    st.sampled_from(NOWS),
    busy_spans,
    st.lists(
        st.tuples(st.integers(-3 * 24 * 60, 10 * 24 * 60), st.sampled_from(list(Reason)), st.integers(-1, 3)),
        max_size=12,
    ),
    st.lists(st.integers(0, 10 * 24 * 4), max_size=4),
)
def test_placement_stays_in_office_hours_and_off_busy_time(now, spans, wanted, taken_slots):
    """Every call not placed at once lands inside office hours, at or after max(due, now), on free time, unstacked."""
    origin = now - timedelta(days=1)
    busy = _spans_to_busy(origin, spans)
    taken = [(origin + timedelta(minutes=15 * t)) for t in taken_slots]
    needs = []
    for n, (due_minutes, reason, day_shift) in enumerate(wanted):
        appointment = (now + timedelta(days=day_shift)).replace(second=0, microsecond=0)
        needs.append(
            CallNeed(
                key=ReminderKey(f"k{n}"),
                client_id=ClientId("c0"),
                reason=reason,
                due=now + timedelta(minutes=due_minutes),
                state="due",
                anchor_uid=f"u{n}",
                anchor_rid="",
                appointment_start=appointment,
                appointment_end=appointment + timedelta(minutes=50),
            )
        )
    placed = placement.place(needs, now=now, hours=HOURS, busy=busy, taken=taken, length=LENGTH)
    assert set(placed) == {n.key for n in needs}
    earlier: list[datetime] = list(taken)
    for need in needs:
        at = placed[need.key]
        if placement.is_immediate(need, now, TZ):
            assert at == now.replace(second=0, microsecond=0)
        else:
            assert HOURS.contains(at, at + LENGTH)
            assert at >= max(need.due, now)
            assert not any(overlaps(at, at + LENGTH, b.start, b.end) for b in busy)
            assert not any(overlaps(at, at + LENGTH, t, t + LENGTH) for t in earlier)
        earlier.append(at)


# A small stretch (one day in 5-minute units) so intervals touch, nest and overlap often.
near_spans = st.lists(st.tuples(st.integers(0, 24 * 12), st.integers(0, 36)), max_size=25)


@SETTINGS
@given(
    near_spans,
    near_spans,
    st.lists(st.tuples(st.integers(0, 24 * 12), st.integers(0, 24), st.integers(0, 6))),
)
def test_busy_index_agrees_with_brute_force(initial, added, queries):
    """BusyIndex.conflicts (after any adds, with any margin) equals checking every interval one by one."""
    origin = datetime(2026, 3, 1, tzinfo=TZ)
    everything = _spans_to_busy(origin, initial)
    index = placement.BusyIndex(everything)
    for extra in _spans_to_busy(origin, added):
        index.add(extra.start, extra.end)
        everything.append(extra)
    for start, length, margin in queries:
        q_start = origin + timedelta(minutes=5 * start)
        q_end = q_start + timedelta(minutes=5 * length)
        pad = timedelta(minutes=5 * margin)
        expected = any(overlaps(b.start - pad, b.end + pad, q_start, q_end) for b in everything)
        assert index.conflicts(q_start, q_end, pad) is expected


@SETTINGS
@given(
    st.sampled_from(list(Reason)),
    st.text(max_size=40),
    st.from_regex(r"[+0-9 ()-]{0,16}", fullmatch=True),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(TZ)),
    st.booleans(),
)
def test_voicemail_never_names_the_practice(reason, therapist, number, start, consent):
    """No voicemail, for any reason, therapist name, number or time, contains a forbidden word."""
    practice = render.Practice(tz=TZ, therapist_name=therapist, callback_number=number)
    client = Client(
        id=ClientId("c0"), name="Jordan Smith", alias="J.S.", phone="+1 555 0142", consent_to_call=consent
    )
    need = CallNeed(
        key=ReminderKey("k" * 26),
        client_id=client.id,
        reason=reason,
        due=start,
        state="due",
        anchor_uid="u",
        anchor_rid="",
        appointment_start=start,
        appointment_end=start + timedelta(minutes=50),
    )
    text = render.voicemail(need, client, practice).lower()
    assert not [word for word in render.FORBIDDEN_IN_VOICEMAIL if word in text]


def _reasons(
    example: tuple[dict[ClientId, Client], tuple[datetime, list[Appointment]], rules.Policy],
) -> set[Reason]:
    clients, (now, appts), policy = example
    return {n.reason for n in rules.needs(clients, appts, now=now, policy=policy)}


@pytest.mark.parametrize("reason", list(Reason))
def test_generated_caseloads_reach_every_reason(reason):
    """The caseload strategy is rich enough for the properties above: it produces every reason."""
    example = find(
        st.tuples(rosters(), caseloads(), policies),
        lambda x: reason in _reasons(x),
        settings=settings(max_examples=3000, database=None, deadline=None, phases=[Phase.generate]),
        random=Random(2026),
    )
    assert reason in _reasons(example)
