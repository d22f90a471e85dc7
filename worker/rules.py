"""The calling policy: a client's appointments and `now` -> the calls that are needed.

One function per reason, each pure: the clock is the `now` argument, never read here. The
policy, rule by rule, is docs/policy.md "The reasons".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from operator import attrgetter

from worker.model import (
    Appointment,
    Attendance,
    CallNeed,
    Client,
    ClientId,
    NeedState,
    Reason,
    gap_between,
    overlaps,
    reminder_key,
)


@dataclass(frozen=True, slots=True)
class Policy:
    """The [rules] settings the rules read (plain values, no config types)."""

    late_after: timedelta = timedelta(minutes=15)
    rebook_within: timedelta = timedelta(days=7)
    cancel_grace: timedelta = timedelta(days=2)
    lapse_after: timedelta = timedelta(days=30)
    termination_after: timedelta = timedelta(days=14)
    acquainted_gap: timedelta = timedelta(minutes=15)
    lookahead: timedelta = timedelta(days=14)
    max_age: timedelta = timedelta(days=30)
    check_in: bool = False
    late_upcoming: timedelta = timedelta(days=1)


_CANCELLED = frozenset({Attendance.CANCELLED, Attendance.LATE_CANCEL})
_SEEN = frozenset({Attendance.ATTENDED, Attendance.ARRIVED})
_WITH_CLIENT = frozenset({Attendance.IN_PROGRESS, Attendance.ARRIVED})


def _state(due: datetime, now: datetime, policy: Policy) -> NeedState:
    if due > now:
        return "upcoming"
    if due < now - policy.max_age:
        return "stale"
    return "due"


def _need(
    client_id: ClientId,
    reason: Reason,
    due: datetime,
    anchor: Appointment,
    now: datetime,
    policy: Policy,
    *,
    other: Appointment | None = None,
    state: NeedState | None = None,
) -> CallNeed:
    return CallNeed(
        key=reminder_key(client_id, reason.value, anchor.uid, anchor.recurrence_id),
        client_id=client_id,
        reason=reason,
        due=due,
        state=state or _state(due, now, policy),
        anchor_uid=anchor.uid,
        anchor_rid=anchor.recurrence_id,
        appointment_start=anchor.start,
        appointment_end=anchor.end,
        other_client_id=other.client_id if other else None,
        other_start=other.start if other else None,
    )


_BY_TIME = attrgetter("start", "end", "id")


def _chronological(appointments: Iterable[Appointment]) -> list[Appointment]:
    return sorted(appointments, key=_BY_TIME)


def late_needs(client: Client, appts: Sequence[Appointment], now: datetime, policy: Policy) -> list[CallNeed]:
    """Check-in mode: 15 minutes past the start and not marked arrived, until the end."""
    if not policy.check_in:
        return []
    out = []
    for a in appts:
        if a.attendance not in (Attendance.SCHEDULED, Attendance.IN_PROGRESS):
            continue
        due = a.start + policy.late_after
        if now >= a.end or due >= a.end:
            continue
        if due > now and a.start - now > policy.late_upcoming:
            continue
        # a late call is only useful while the appointment runs: never stale
        state: NeedState = "due" if due <= now else "upcoming"
        out.append(_need(client.id, Reason.LATE, due, a, now, policy, state=state))
    return out


def no_show_needs(
    client: Client, appts: Sequence[Appointment], now: datetime, policy: Policy
) -> list[CallNeed]:
    """Every missed appointment gets a call at its end; only the therapist closes it."""
    return [
        _need(client.id, Reason.NO_SHOW, a.end, a, now, policy)
        for a in appts
        if a.attendance is Attendance.NO_SHOW
    ]


def _paused(client: Client, now: datetime) -> bool:
    """On a planned break: no rebooking or lapsed calls until `pause_until`."""
    return client.pause_until is not None and now < client.pause_until


def _after_pause(client: Client, due: datetime) -> datetime:
    """After a break the normal rules apply from its last day: nothing falls due inside it."""
    return max(due, client.pause_until) if client.pause_until is not None else due


def callable_at(client: Client, moment: datetime) -> bool:
    """False for a client who asked not to be called (at all, or before `call_after`)."""
    return not client.no_calls and (client.call_after is None or moment >= client.call_after)


def respect_wishes(
    client: Client, found: Sequence[CallNeed], now: datetime, policy: Policy
) -> list[CallNeed]:
    """A client's own contact wishes, applied to the needs the rules found for them.

    `no_calls`: no call at all (a termination letter is a letter, not a call: it stays).
    `call_after`: a call due earlier is due at that moment instead; a late call (useful only
    while the appointment runs) is dropped when it would come before it.
    """
    out = []
    for need in found:
        if need.reason is Reason.TERMINATION_LETTER:
            out.append(need)
        elif client.no_calls:
            continue
        elif client.call_after is None or need.due >= client.call_after:
            out.append(need)
        elif need.reason is not Reason.LATE:
            due = client.call_after
            out.append(replace(need, due=due, state=_state(due, now, policy)))
    return out


def _has_future_booking(appts: Sequence[Appointment], now: datetime) -> bool:
    # newest first: a client who is still coming is found at once
    return any(a.end > now and a.attendance not in _CANCELLED for a in reversed(appts))


def rebook_needs(
    client: Client, appts: Sequence[Appointment], now: datetime, policy: Policy
) -> list[CallNeed]:
    """not_rebooked / cancelled_not_rebooked, superseded by termination_letter; at most one.

    "Latest appointment" orders by start, cancelled ones included; it decides which applies.
    Nothing is needed while any non-cancelled appointment is still ahead.
    """
    if not appts or _has_future_booking(appts, now) or _paused(client, now):
        return []
    latest = appts[-1]
    if latest.is_cancelled:
        reason = Reason.CANCELLED_NOT_REBOOKED
        due = (latest.cancelled_at or latest.start) + policy.cancel_grace
    elif latest.attendance in (Attendance.ATTENDED, Attendance.NO_SHOW, Attendance.ARRIVED):
        reason = Reason.NOT_REBOOKED
        due = latest.end + (client.rebook_within or policy.rebook_within)
    else:
        return []
    due = _after_pause(client, due)
    letter_due = due + policy.termination_after
    if letter_due <= now:
        return [_need(client.id, Reason.TERMINATION_LETTER, letter_due, latest, now, policy)]
    return [_need(client.id, reason, due, latest, now, policy)]


def lapsed_needs(
    client: Client, appts: Sequence[Appointment], now: datetime, policy: Policy
) -> list[CallNeed]:
    """Has come before, keeps cancelling or missing, still has something booked ahead.

    Due at the last attended end + lapse_after. Not raised when an appointment booked before
    the due time would settle it anyway, nor while the client is in an appointment right now
    (it settles the matter when it ends).
    """
    if _paused(client, now):
        return []
    i = len(appts) - 1
    while i >= 0 and not (appts[i].attendance in _SEEN and appts[i].end <= now):
        i -= 1
    if i < 0:
        return []
    last = appts[i]
    since = [a for a in appts[i + 1 :] if a.start >= last.end]
    if not any(a.attendance in _CANCELLED or a.attendance is Attendance.NO_SHOW for a in since):
        return []
    ahead = [a for a in since if a.attendance not in _CANCELLED and a.end > now]
    if not ahead:
        return []  # nothing booked: not_rebooked / cancelled_not_rebooked apply instead
    if any(a.start <= now and a.attendance in _WITH_CLIENT for a in ahead):
        return []
    due = _after_pause(client, last.end + policy.lapse_after)
    if due > now and any(a.start < due for a in ahead):
        return []
    return [_need(client.id, Reason.LAPSED, due, last, now, policy)]


def _called(a: Appointment, b: Appointment) -> tuple[Appointment, Appointment]:
    """(called, other): the later start is called; ties go to the later created, then id."""
    far = datetime.max.replace(tzinfo=a.start.tzinfo)
    rank_a = (a.start, a.created or far, a.id)
    rank_b = (b.start, b.created or far, b.id)
    return (a, b) if rank_a > rank_b else (b, a)


def conflict_needs(
    clients: Mapping[ClientId, Client],
    appts: Sequence[Appointment],
    now: datetime,
    policy: Policy,
) -> list[CallNeed]:
    """double_booked and acquainted_conflict among appointments ahead, within lookahead.

    An overlapping pair is a double booking, whatever the acquaintance: one call fixes both.
    An appointment under way still blocks the one that follows it, but only an appointment
    that has not started can be moved, so only such a one is called. Cancelled and no-show
    appointments, and appointments of discharged or unknown clients, take no part: nobody is
    coming to them.
    """
    # compared in UTC: fast for stored (UTC) times, and exact across a DST change
    after = now.astimezone(UTC)
    horizon = after + policy.lookahead
    live = sorted((a for a in appts if _live(clients, after, horizon, a)), key=lambda a: (a.start, a.id))
    found: dict[tuple[Reason, str], CallNeed] = {}
    reach = max(policy.acquainted_gap, timedelta(0))
    for i, a in enumerate(live):
        limit = a.end + reach
        for b in live[i + 1 :]:
            if b.start >= limit:
                break  # sorted by start: every later b is at least as far from a
            if a.client_id == b.client_id:
                continue
            called, other = _called(a, b)
            if called.start <= now:
                continue  # both under way: nothing left to move
            if not callable_at(clients[called.client_id], now):
                # asked not to be called: the other one is called when that one can be moved
                if other.start <= now or not callable_at(clients[other.client_id], now):
                    continue
                called, other = other, called
            if overlaps(a.start, a.end, b.start, b.end):
                reason = Reason.DOUBLE_BOOKED
            elif (
                b.client_id in clients[a.client_id].acquainted_with
                or a.client_id in clients[b.client_id].acquainted_with
            ) and gap_between(a.start, a.end, b.start, b.end) < policy.acquainted_gap:
                reason = Reason.ACQUAINTED_CONFLICT
            else:
                continue
            slot = (reason, called.id)
            if slot not in found:
                found[slot] = _need(
                    called.client_id, reason, now, called, now, policy, other=other, state="due"
                )
    return list(found.values())


def _live(clients: Mapping[ClientId, Client], after: datetime, horizon: datetime, a: Appointment) -> bool:
    """Somebody is coming to `a`, it has not ended and it starts within the lookahead."""
    return (
        a.end > after
        and a.start <= horizon
        and a.attendance not in _CANCELLED
        and a.attendance is not Attendance.NO_SHOW
        and a.client_id in clients
        and not clients[a.client_id].discharged
    )


def room_needs(
    clients: Mapping[ClientId, Client],
    own: Sequence[Appointment],
    room: Sequence[Appointment],
    now: datetime,
    policy: Policy,
) -> list[CallNeed]:
    """acquainted_conflict across clinicians who share a waiting room.

    `own` are this clinician's appointments, `room` the other clinicians' (same roster, same
    waiting room). A pair of acquaintances within `acquainted_gap` of each other (overlapping
    included: other rooms, one waiting room) is decided exactly as `conflict_needs` decides a
    pair in one calendar, so every clinician's pass agrees on who is called; a need is returned
    only when the called appointment is one of `own` (the other clinician's pass calls theirs).
    """
    after = now.astimezone(UTC)
    horizon = after + policy.lookahead
    mine = sorted((a for a in own if _live(clients, after, horizon, a)), key=lambda a: (a.start, a.id))
    theirs = sorted((b for b in room if _live(clients, after, horizon, b)), key=lambda b: (b.start, b.id))
    found: dict[str, CallNeed] = {}
    for a in mine:
        friends = clients[a.client_id].acquainted_with
        for b in theirs:
            if b.start >= a.end + policy.acquainted_gap:
                break  # sorted by start: every later b is further away
            if b.client_id == a.client_id or not (
                b.client_id in friends or a.client_id in clients[b.client_id].acquainted_with
            ):
                continue
            if gap_between(a.start, a.end, b.start, b.end) >= policy.acquainted_gap:
                continue
            called, other = _called(a, b)
            if called.start <= now:
                continue
            if not callable_at(clients[called.client_id], now):
                if other.start <= now or not callable_at(clients[other.client_id], now):
                    continue
                called, other = other, called
            if called is a and a.id not in found:
                found[a.id] = _need(
                    a.client_id, Reason.ACQUAINTED_CONFLICT, now, a, now, policy, other=other, state="due"
                )
    return list(found.values())


def needs(
    clients: Mapping[ClientId, Client],
    appointments: Iterable[Appointment],
    *,
    now: datetime,
    policy: Policy,
    room: Sequence[Appointment] = (),
    elsewhere: Sequence[Appointment] = (),
) -> list[CallNeed]:
    """Every call need at `now`, sorted by (due, client, reason).

    Deterministic: the same appointments in any order give the same list. A discharged client
    gets nothing; appointments of clients not in the roster are ignored.

    A group practice (one roster, several clinicians): `room` holds the other clinicians'
    appointments in this one's waiting room (acquaintances meeting there: `room_needs`);
    `elsewhere` the other clinicians' appointments of the same clients, so a client who moved
    to another clinician is one client (booked there: no "did not rebook" call here). Needs
    are only ever anchored on this clinician's own appointments.
    """
    # One instant, one zone: stored times are UTC, so comparisons take the fast path, and
    # they are exact in the repeated hour of a DST change (same-zone comparisons are not).
    now = now.astimezone(UTC)
    own = list(appointments)
    by_client: dict[ClientId, list[Appointment]] = defaultdict(list)
    for a in own:
        if a.client_id in clients:
            by_client[a.client_id].append(a)
    mine = {(a.uid, a.recurrence_id) for a in own}
    history: dict[ClientId, list[Appointment]] = defaultdict(list)
    for a in elsewhere:
        if a.client_id in clients and (a.uid, a.recurrence_id) not in mine:
            history[a.client_id].append(a)
    out: list[CallNeed] = []
    for client_id in sorted(by_client):
        client = clients[client_id]
        if client.discharged:
            continue
        # sorting each client's list costs less than one sort of everything (n log n)
        appts = _chronological(by_client[client_id] + history.get(client_id, []))
        found = late_needs(client, appts, now, policy)
        found += no_show_needs(client, appts, now, policy)
        found += rebook_needs(client, appts, now, policy)
        found += lapsed_needs(client, appts, now, policy)
        out += respect_wishes(client, found, now, policy)
    out += conflict_needs(clients, [a for appts in by_client.values() for a in appts], now, policy)
    if history:
        out = [n for n in out if (n.anchor_uid, n.anchor_rid) in mine]
    out += room_needs(clients, own, room, now, policy)
    unique = {n.key: n for n in out}
    return sorted(unique.values(), key=lambda n: (n.due, n.client_id, n.reason.value, n.key))
