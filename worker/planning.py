"""Step 2 of a pass: needs, placement, rendering and reconciliation; no writes
(docs/design.md "Map").

Owns the ownership filter (an item is ours only when key, UID, resource name and owner mark
agree: `worker.identity.foreign_reason`; anything else is counted, never named, never touched)
and the mass-deletion guard (a sink that suddenly holds none of the reminders written earlier
fails the pass with `MassDeletionError`; its way out is `run --accept-deletions`).
"""

from __future__ import annotations

import bisect
import contextlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog

from connectors.base import Sink
from worker import attendance as attendance_mod
from worker import placement, render, rules
from worker.config import Settings
from worker.errors import MassDeletionError, SourceLossError
from worker.identity import foreign_reason
from worker.model import (
    Action,
    Adopt,
    Appointment,
    Busy,
    CallNeed,
    Create,
    ItemKind,
    Keep,
    Managed,
    Reason,
    Record,
    Reminder,
    ReminderKey,
    SystemReason,
    Update,
    Withdraw,
)
from worker.policy import hours_of, policy_of, practice_of
from worker.reconcile import action_name, current_items, reconcile
from worker.roster import Roster
from worker.state import Store

log = structlog.get_logger()

# A sink that suddenly holds none of at least this many reminders we wrote is more likely
# unmounted or misconfigured than emptied by hand: refuse to tombstone them all.
EMPTY_SINK_GUARD = 5


def action_key(action: Action) -> str:
    return action.reminder.key if isinstance(action, Create | Adopt | Update) else action.key


@dataclass(slots=True)
class Plan:
    """Everything one pass decided."""

    now: datetime
    needs: list[CallNeed]
    actions: list[Action]
    reminders: dict[tuple[ReminderKey, ItemKind], Reminder]
    held: dict[tuple[ReminderKey, ItemKind], Managed]
    counts: Counter[str] = field(default_factory=Counter)
    alerts: list[Managed] = field(default_factory=list)
    appointments: list[Appointment] = field(default_factory=list)
    handled: set[ReminderKey] = field(default_factory=set)

    def need_state(self, need: CallNeed) -> str:
        """`due`, `upcoming`, `stale`, or `handled` when the therapist already dealt with it."""
        return "handled" if need.key in self.handled else need.state

    def need_action(self, need: CallNeed) -> str:
        """The one verb `plan --json` shows for a need (over its event and task)."""
        verbs = set()
        for action in self.actions:
            if action_key(action) != need.key:
                continue
            verb = action_name(action)
            if isinstance(action, Keep):
                kind = action.kind
                item = self.held.get((need.key, kind))
                verb = "keep" if item is not None and item.status == "open" else "none"
            verbs.add(verb)
        for verb in ("create", "update", "resolve", "keep"):
            if verb in verbs:
                return verb
        return "none"

    def withdrawals(self) -> list[Withdraw]:
        """Withdrawals of items whose need is gone (the `resolve` lines of `plan`)."""
        live = {n.key for n in self.needs}
        return [a for a in self.actions if isinstance(a, Withdraw) and a.key not in live]

    def open_calls(self) -> list[CallNeed]:
        """Needs that are due and not handled: what the call sheet counts."""
        return [n for n in self.needs if n.state == "due" and n.key not in self.handled]


def kinds_for(need: CallNeed, settings: Settings, sink_kinds: frozenset[ItemKind]) -> list[ItemKind]:
    """Which items a need gets: termination letters are tasks (events without a task list)."""
    wanted = [k for k in settings.reminders.write if k in sink_kinds]
    if need.reason is Reason.TERMINATION_LETTER:
        if "task" in sink_kinds:
            return ["task"]
        return ["event"] if "event" in sink_kinds else []
    return wanted


def _alternatives(
    need: CallNeed,
    appointments: Sequence[Appointment],
    busy: Sequence[Busy],
    settings: Settings,
    roster: Roster,
    now: datetime,
) -> list[datetime]:
    """Free times to offer the called client instead of a conflicting appointment.

    `busy` is sorted by start; only the stretch the search can reach is looked at, and the
    called appointment itself is taken out once (an exact double booking has two equal
    intervals, and the other client's one must stay busy).
    """
    if need.reason not in (Reason.ACQUAINTED_CONFLICT, Reason.DOUBLE_BOOKED):
        return []
    reach_from = min(need.appointment_start, now) - timedelta(days=1)
    reach_to = max(need.appointment_start, now) + settings.rules.lookahead + timedelta(days=2)
    starts = [b.start for b in busy]
    window = list(busy[bisect.bisect_left(starts, reach_from) : bisect.bisect_right(starts, reach_to)])
    with contextlib.suppress(ValueError):
        window.remove(Busy(need.appointment_start, need.appointment_end))
    client = roster.get(need.client_id)
    friends = client.acquainted_with if client else frozenset()
    keep_clear = [
        Busy(a.start, a.end)
        for a in appointments
        if a.client_id in friends and not a.is_cancelled and a.end > now
    ]
    return placement.alternatives(
        need,
        now=now,
        hours=hours_of(settings),
        busy=window,
        keep_clear=keep_clear,
        gap=settings.rules.acquainted_gap,
        horizon=settings.rules.lookahead,
    )


def appointments_at(state: Store, settings: Settings, now: datetime) -> list[Appointment]:
    clients = [c.id for c in settings.clients]
    within = settings.rules.late_cancel_within
    return [
        attendance_mod.appointment_at(o, now, late_cancel_within=within) for o in state.observations(clients)
    ]


def ours(items: Sequence[Managed], owner: str) -> tuple[list[Managed], Counter[str]]:
    """The items this installation owns, and a count (by reason) of the ones it must not touch."""
    mine: list[Managed] = []
    foreign: Counter[str] = Counter()
    for item in items:
        why = foreign_reason(item, owner)
        if why:
            foreign[why] += 1
        else:
            mine.append(item)
    return mine, foreign


def _guard_deletions(
    records: dict[tuple[ReminderKey, ItemKind], Record], held: set[tuple[ReminderKey, ItemKind]], sink: str
) -> None:
    open_records = [s for s, r in records.items() if r.status == "open"]
    if len(open_records) >= EMPTY_SINK_GUARD and not any(s in held for s in open_records):
        raise MassDeletionError(
            f"the reminders calendar holds none of the {len(open_records)} reminders written "
            "earlier; nothing was changed (is the right calendar configured and reachable?). If "
            "they were removed on purpose, run once with: callsheet run --once --accept-deletions "
            "(they are then treated as handled and not written again)",
            source=sink,
            operation="list",
        )


def _guard_empty_source(items: Iterable[Managed], sink: str) -> None:
    """A source that lists nothing while our open reminders stand: most likely not mounted or
    re-pointed, even when state has no memory of it (a new or rebuilt state)."""
    standing = sum(1 for m in items if m.status == "open")
    if standing:
        raise SourceLossError(
            f"the appointment calendar lists no appointments, yet the reminders calendar holds "
            f"{standing} open reminders of ours; nothing was changed. If the appointments really "
            "are gone, run once with: callsheet run --once --accept-source-loss",
            source=sink,
            operation="list",
            lost=standing,
        )


def decide(
    settings: Settings,
    state: Store,
    sink: Sink,
    now: datetime,
    *,
    owner: str,
    include_stale: bool = False,
    accept_deletions: bool = False,
    source_empty: bool = False,
    room: Sequence[Appointment] = (),
    elsewhere: Sequence[Appointment] = (),
) -> Plan:
    """Rules, placement, rendering and reconciliation for one pass (no writes). `room` and
    `elsewhere`: the other clinicians' appointments (`rules.needs`; a group practice).

    Raises:
        MassDeletionError: the sink holds none of many open reminders (unless accepted).
    """
    roster = Roster.of(settings.clients)
    appointments = appointments_at(state, settings, now)
    needs = rules.needs(
        roster.clients, appointments, now=now, policy=policy_of(settings), room=room, elsewhere=elsewhere
    )
    every_item, foreign = ours(list(sink.managed()), owner)
    if foreign:
        log.info(
            "sink.foreign",
            count=sum(foreign.values()),
            foreign_uid=foreign["uid"],
            foreign_name=foreign["name"],
            foreign_owner=foreign["owner"],
        )
    alerts = [m for m in every_item if m.reason == SystemReason.ATTENTION.value and m.status == "open"]
    held_items = [m for m in every_item if m.reason != SystemReason.ATTENTION.value]
    records = state.records()
    current, _newer = current_items(records, held_items)
    if not accept_deletions:
        _guard_deletions(records, set(current), sink.name)
    if source_empty:
        _guard_empty_source(current.values(), sink.name)
    sink_kinds = sink.kinds()
    handled = {k for (k, _), r in records.items() if r.status == "tombstone"}
    writable = [
        n
        for n in needs
        if n.key not in handled and (n.state == "due" or (include_stale and n.state == "stale"))
    ]
    length = settings.reminders.length

    def needs_placing(need: CallNeed) -> bool:
        # a slot with no item yet, or whose earlier item was withdrawn: the item is new
        for kind in kinds_for(need, settings, sink_kinds):
            record = records.get((need.key, kind))
            if record is None and (need.key, kind) not in current:
                return True
            if record is not None and record.status == "withdrawn":
                return True
        return False

    to_place = [n for n in writable if needs_placing(n)]
    busy = sorted(
        state.busy(now - timedelta(days=1), now + timedelta(days=150)), key=lambda b: (b.start, b.end)
    )
    taken = [
        m.start for m in current.values() if m.kind == "event" and m.status == "open" and m.start is not None
    ]
    placed = placement.place(
        to_place, now=now, hours=hours_of(settings), busy=busy, taken=taken, length=length
    )
    practice = practice_of(settings)
    desired: dict[tuple[ReminderKey, ItemKind], Reminder] = {}
    for need in writable:
        client = roster.get(need.client_id)
        if client is None:
            continue
        alternatives = _alternatives(need, [*appointments, *room], busy, settings, roster, now)
        for kind in kinds_for(need, settings, sink_kinds):
            item = current.get((need.key, kind))
            start = placed.get(need.key) or (item.start if item and item.start else now)
            reminder = render.render(
                need,
                client,
                practice,
                kind=kind,
                start=start,
                length=length,
                alternatives=alternatives,
                history=render.history_of(need, appointments, records),
            )
            desired[(need.key, kind)] = replace(reminder, owner=owner)
    actions = [
        # the withdrawn task says why, in words, with the client's next booking (alias only)
        replace(a, note=render.note_for(a, roster.clients, appointments, practice.tz, now))
        if isinstance(a, Withdraw) and a.kind == "task"
        else a
        for a in reconcile(desired.values(), {n.key for n in needs}, records, held_items, now=now)
    ]
    counts: Counter[str] = Counter(n.state for n in needs if n.key not in handled)
    counts["handled"] = sum(1 for n in needs if n.key in handled)
    counts["foreign"] = sum(foreign.values())
    return Plan(
        now=now,
        needs=needs,
        actions=actions,
        reminders=desired,
        held=current,
        counts=counts,
        alerts=alerts,
        appointments=appointments,
        handled=handled,
    )
