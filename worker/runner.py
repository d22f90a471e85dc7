"""One pass (read -> rules -> placement/render -> reconcile -> apply), and the scheduled loop.

The runner is the only code that applies actions and the only place that wires connectors,
state and the pure core together. `plan` runs the same pass on an in-memory copy of the state
and applies nothing.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import random
import signal
import threading
import time as _time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import structlog

from connectors.base import Sink, Source, open_sink, open_source
from worker import attendance as attendance_mod
from worker import placement, render, rules
from worker.config import Settings
from worker.errors import ConfigError, ConflictError, ConnectorError, NotFoundError
from worker.model import (
    Action,
    Adopt,
    Appointment,
    Busy,
    CallNeed,
    ClientId,
    Create,
    Event,
    ItemKind,
    Keep,
    Managed,
    Observation,
    Reason,
    Reminder,
    ReminderKey,
    SystemReason,
    Tombstone,
    Update,
    Window,
    Withdraw,
    reminder_key,
)
from worker.reconcile import action_name, reconcile
from worker.roster import AMBIGUOUS, Roster
from worker.state import State, StoredOccurrence, run_lock, secure_dir

log = structlog.get_logger()

# How far ahead recurrences are expanded: far enough that a booking beyond `lookahead`
# still counts as "booked" for the rebooking rules.
MIN_AHEAD = timedelta(days=180)
# A sink that suddenly holds none of many reminders we wrote is more likely unmounted or
# misconfigured than emptied by hand: refuse to tombstone them all.
EMPTY_SINK_GUARD = 5


def policy_of(settings: Settings) -> rules.Policy:
    r = settings.rules
    return rules.Policy(
        late_after=r.late_after,
        rebook_within=r.rebook_within,
        cancel_grace=r.cancel_grace,
        lapse_after=r.lapse_after,
        termination_after=r.termination_after,
        acquainted_gap=r.acquainted_gap,
        lookahead=r.lookahead,
        max_age=r.max_age,
        check_in=bool(settings.markers.arrived),
    )


def hours_of(settings: Settings) -> placement.Hours:
    office = settings.practice.office_hours
    return placement.Hours(
        tz=settings.practice.tz,
        weekdays=office.weekdays,
        start=office.start,
        end=office.end,
        slot=settings.rules.slot,
    )


def practice_of(settings: Settings) -> render.Practice:
    p = settings.practice
    return render.Practice(tz=p.tz, therapist_name=p.therapist_name, callback_number=p.callback_number)


def markers_of(settings: Settings) -> attendance_mod.MarkerRules:
    m = settings.markers
    return attendance_mod.MarkerRules(
        no_show=m.no_show,
        cancelled=m.cancelled,
        arrived=m.arrived,
        no_show_colors=m.no_show_colors,
        cancelled_colors=m.cancelled_colors,
    )


def window_for(settings: Settings, now: datetime) -> Window:
    """The expansion window, on local day boundaries so it moves once a day."""
    tz = settings.practice.tz
    today = now.astimezone(tz).date()
    start = datetime.combine(today - settings.rules.history, datetime.min.time(), tz)
    ahead = max(settings.rules.lookahead, MIN_AHEAD)
    end = datetime.combine(today + ahead + timedelta(days=1), datetime.min.time(), tz)
    return Window(start=start, end=end)


def _stored(
    events: Iterable[Event], roster: Roster, markers: attendance_mod.MarkerRules, counts: Counter[str]
) -> list[StoredOccurrence]:
    out = []
    for event in events:
        busy = event.status != "cancelled" and not event.transparent
        match = roster.match(event)
        if match is AMBIGUOUS:
            counts["ambiguous"] += 1
            log.warning("source.event.ambiguous", uid=event.uid)
            match = None
        if match is None:
            obs = Observation(
                id=event.appointment_id,
                uid=event.uid,
                recurrence_id=event.recurrence_id,
                client_id=ClientId(""),
                start=event.start,
                end=event.end,
                cancelled=event.status == "cancelled",
                item=event.item,
                source=event.source,
            )
        else:
            obs = attendance_mod.observe(event, match, markers, declined=roster.declined(event, match))
            busy = busy and not obs.cancelled
        out.append(StoredOccurrence(observation=obs, busy=busy))
    return out


def sync_source(
    source: Source, settings: Settings, state: State, roster: Roster, now: datetime
) -> Counter[str]:
    """Read one source incrementally and store what changed."""
    window = window_for(settings, now)
    counts: Counter[str] = Counter()
    batch = source.read(window, state.cursor(source.name))
    markers = markers_of(settings)
    changed = {item: _stored(events, roster, markers, counts) for item, events in batch.changed.items()}
    state.apply_source(
        source.name,
        changed=changed,
        removed=batch.removed,
        complete=batch.complete,
        window_start=window.start,
        window_end=window.end,
        cursor=batch.cursor,
        now=now,
    )
    counts["changed"] += len(batch.changed)
    counts["removed"] += len(batch.removed)
    counts["bad"] += batch.bad
    return counts


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


def appointments_at(state: State, settings: Settings, now: datetime) -> list[Appointment]:
    clients = [c.id for c in settings.clients]
    within = settings.rules.late_cancel_within
    return [
        attendance_mod.appointment_at(o, now, late_cancel_within=within) for o in state.observations(clients)
    ]


def decide(
    settings: Settings, state: State, sink: Sink, now: datetime, *, include_stale: bool = False
) -> Plan:
    """Rules, placement, rendering and reconciliation for one pass (no writes)."""
    roster = Roster.of(settings.clients)
    appointments = appointments_at(state, settings, now)
    needs = rules.needs(roster.clients, appointments, now=now, policy=policy_of(settings))
    every_item = list(sink.managed())
    alerts = [m for m in every_item if m.reason == SystemReason.ATTENTION.value]
    held_items = [m for m in every_item if m.reason != SystemReason.ATTENTION.value]
    held = {(m.key, m.kind): m for m in held_items}
    records = state.records()
    sink_kinds = sink.kinds()
    writable = [n for n in needs if n.state == "due" or (include_stale and n.state == "stale")]
    existing = set(held) | set(records)
    length = settings.reminders.length
    to_place = [
        n for n in writable if any((n.key, k) not in existing for k in kinds_for(n, settings, sink_kinds))
    ]
    busy = sorted(
        state.busy(now - timedelta(days=1), now + timedelta(days=150)), key=lambda b: (b.start, b.end)
    )
    taken = [m.start for m in held_items if m.kind == "event" and m.status == "open" and m.start is not None]
    placed = placement.place(
        to_place, now=now, hours=hours_of(settings), busy=busy, taken=taken, length=length
    )
    practice = practice_of(settings)
    desired: dict[tuple[ReminderKey, ItemKind], Reminder] = {}
    for need in writable:
        client = roster.get(need.client_id)
        if client is None:
            continue
        alternatives = _alternatives(need, appointments, busy, settings, roster, now)
        for kind in kinds_for(need, settings, sink_kinds):
            item = held.get((need.key, kind))
            start = placed.get(need.key) or (item.start if item and item.start else now)
            desired[(need.key, kind)] = render.render(
                need,
                client,
                practice,
                kind=kind,
                start=start,
                length=length,
                alternatives=alternatives,
                history=render.history_of(need, appointments, records),
            )
    actions = reconcile(desired.values(), {n.key for n in needs}, records, held_items, now=now)
    open_records = [s for s, r in records.items() if r.status == "open"]
    if len(open_records) >= EMPTY_SINK_GUARD and not any(s in held for s in open_records):
        raise ConnectorError(
            f"the reminders calendar holds none of the {len(open_records)} reminders written earlier; "
            "refusing to treat them all as handled (is the right calendar configured and reachable?)",
            source=sink.name,
            operation="list",
        )
    counts: Counter[str] = Counter(n.state for n in needs)
    return Plan(
        now=now,
        needs=needs,
        actions=actions,
        reminders=desired,
        held=held,
        counts=counts,
        alerts=alerts,
        appointments=appointments,
    )


def _record_open(
    state: State, r: Reminder, now: datetime, *, ref: str, etag: str, payload: str, start: datetime | None
) -> None:
    """State now knows this item as ours and open, with what it holds."""
    state.save_record(
        r.key,
        r.kind,
        status="open",
        now=now,
        ref=ref,
        etag=etag,
        payload_hash=payload,
        start=start,
        client_id=r.client_id,
        reason=r.reason.value,
    )


def apply(
    plan: Plan, sink: Sink, state: State, *, should_stop: Callable[[], bool] = lambda: False
) -> Counter[str]:
    """Carry out the plan's actions, recording each in state as soon as it is done."""
    done: Counter[str] = Counter()
    now = plan.now
    for action in plan.actions:
        if should_stop():
            # SIGTERM: every action so far is recorded; the rest is planned again next pass
            log.info("pass.abandoned", count=len(plan.actions) - sum(done.values()))
            break
        try:
            match action:
                case Create(reminder=r):
                    receipt = sink.create(r)
                    if receipt.gone:
                        state.save_record(r.key, r.kind, status="tombstone", now=now, note="deleted earlier")
                        done["tombstoned"] += 1
                        continue
                    _record_open(
                        state,
                        r,
                        now,
                        ref=receipt.ref,
                        etag=receipt.etag,
                        payload=r.payload_hash,
                        start=r.start,
                    )
                    done["created"] += 1
                    log.debug(
                        "reminder.created", key=r.key, kind=r.kind, reason=r.reason.value, client=r.client_id
                    )
                case Adopt(reminder=r, item=item):
                    _record_open(
                        state,
                        r,
                        now,
                        ref=item.ref,
                        etag=item.etag,
                        payload=item.payload_hash,
                        start=item.start,
                    )
                    done["adopted"] += 1
                case Update(reminder=r, item=item):
                    receipt = sink.update(r, item)
                    _record_open(
                        state,
                        r,
                        now,
                        ref=receipt.ref or item.ref,
                        etag=receipt.etag,
                        payload=r.payload_hash,
                        start=item.start,
                    )
                    done["updated"] += 1
                case Withdraw(key=key, kind=kind, item=item, note=note, delete=delete):
                    if item is not None and (delete or kind == "task"):
                        sink.withdraw(item, note=note, delete=delete)
                    state.save_record(key, kind, status="withdrawn", now=now, note=note)
                    done["resolved"] += 1
                    log.debug("reminder.resolved", key=key, kind=kind)
                case Tombstone(key=key, kind=kind, why=why):
                    state.save_record(key, kind, status="tombstone", now=now, note=why)
                    done["tombstoned"] += 1
                    log.debug("reminder.tombstoned", key=key, kind=kind)
                case Keep():
                    done["kept"] += 1
        except (ConflictError, NotFoundError) as exc:
            done["failed"] += 1
            log.warning("reminder.skipped", key=action_key(action), error=type(exc).__name__)
    return done


@dataclass(slots=True)
class PassOutcome:
    plan: Plan
    counts: Counter[str]
    duration_ms: int


def run_pass(
    settings: Settings,
    now: datetime,
    *,
    dry_run: bool = False,
    include_stale: bool = False,
    on_phase: Callable[[str], None] | None = None,
    sink: Sink | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PassOutcome:
    """One pass. With `dry_run` the state is an in-memory copy and nothing is written.

    `sink` replaces the configured reminder sink (tests use an in-memory one).

    Raises:
        LockedError: another pass runs (only without dry_run).
        ConnectorError: a calendar could not be read or written; the pass failed.
        ConfigError: the configuration is unusable.
    """
    started = _time.monotonic()
    now = now.replace(microsecond=0)
    run_id = uuid.uuid4().hex[:8]
    structlog.contextvars.bind_contextvars(run_id=run_id)
    try:
        if dry_run:
            state = State.snapshot(settings.state_dir)
            return _pass(
                settings,
                state,
                now,
                dry_run=True,
                include_stale=include_stale,
                started=started,
                on_phase=on_phase,
                sink=sink,
                should_stop=should_stop,
            )
        with run_lock(settings.state_dir):
            state = State.open(settings.state_dir)
            if state.moved_aside is not None:
                log.warning("state.corrupt", moved_to=str(state.moved_aside))
            return _pass(
                settings,
                state,
                now,
                dry_run=False,
                include_stale=include_stale,
                started=started,
                on_phase=on_phase,
                sink=sink,
                should_stop=should_stop,
            )
    finally:
        structlog.contextvars.unbind_contextvars("run_id")


def _pass(
    settings: Settings,
    state: State,
    now: datetime,
    *,
    dry_run: bool,
    include_stale: bool,
    started: float,
    on_phase: Callable[[str], None] | None,
    sink: Sink | None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PassOutcome:
    roster = Roster.of(settings.clients)
    source = open_source(settings, settings.source)
    given = sink
    try:
        if on_phase:
            on_phase("reading the calendar")
        counts = sync_source(source, settings, state, roster, now)
        log.info(
            "source.read",
            source=source.name,
            changed=counts["changed"],
            removed=counts["removed"],
            bad=counts["bad"],
            ambiguous=counts["ambiguous"],
        )
        if sink is None:
            sink = open_sink(settings, settings.reminders)
        if on_phase:
            on_phase("working out the calls")
        plan = decide(settings, state, sink, now, include_stale=include_stale)
        plan.counts.update(counts)
        done: Counter[str] = Counter()
        if not dry_run:
            if on_phase:
                on_phase("writing reminders")
            sweep = getattr(sink, "sweep", None)
            if sweep is not None:
                sweep()
            done = apply(plan, sink, state, should_stop=should_stop)
            for alert in plan.alerts:  # healthy again: the "needs attention" reminder goes
                sink.delete(alert)
                done["alerts_cleared"] += 1
        duration = int((_time.monotonic() - started) * 1000)
        log.info(
            "pass.finished",
            mode="plan" if dry_run else "run",
            needs=len(plan.needs),
            due=plan.counts["due"],
            upcoming=plan.counts["upcoming"],
            stale=plan.counts["stale"],
            created=done["created"],
            updated=done["updated"],
            resolved=done["resolved"],
            tombstoned=done["tombstoned"],
            adopted=done["adopted"],
            failed=done["failed"],
            changed=counts["changed"],
            bad=counts["bad"],
            duration_ms=duration,
        )
        return PassOutcome(plan=plan, counts=done, duration_ms=duration)
    finally:
        source.close()
        if sink is not None and sink is not given:
            sink.close()
        state.close()


# -- health -------------------------------------------------------------------------------------


def write_health(
    state_dir: Path, *, now: datetime, outcome: str, counts: dict[str, int], error: str = ""
) -> None:
    """Write state_dir/health.json atomically: time, outcome, counts, error class; no client data."""
    secure_dir(state_dir)
    path = state_dir / "health.json"
    previous = read_health(state_dir) or {}
    last_ok = now.isoformat() if outcome == "ok" else previous.get("last_ok")
    failing_since = None if outcome == "ok" else (previous.get("failing_since") or now.isoformat())
    body: dict[str, object] = {
        "time": now.isoformat(),
        "outcome": outcome,
        "last_ok": last_ok,
        "failing_since": failing_since,
        "error": error,
        "counts": counts,
        "pid": os.getpid(),
    }
    if outcome != "ok" and previous.get("alerted"):
        body["alerted"] = True
    _write_json(path, body)


def _write_json(path: Path, body: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(body, handle, sort_keys=True)
    os.replace(tmp, path)


def record_failure(settings: Settings, now: datetime, exc: BaseException) -> None:
    """Note a failed pass in health.json, and raise the alarm if it has lasted too long."""
    error = type(exc).__name__
    write_health(settings.state_dir, now=now, outcome="failed", counts={}, error=error)
    alert_if_failing(settings, now, error)


def read_health(state_dir: Path) -> dict[str, object] | None:
    try:
        value = json.loads((state_dir / "health.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


ALERT_KEY = reminder_key("callsheet", SystemReason.ATTENTION.value, "health", "")

_FIXES = {
    "AuthError": (
        "callsheet lost its permission to read or write the calendar (the authorisation expired or "
        "was revoked). On the computer that runs callsheet, run the setup again: "
        "python scripts/authorize_google.py --config {config} (for CalDAV: check the password file)."
    ),
    "ConfigError": "The configuration has a problem. Run: callsheet --config {config} check",
    "StateError": "The state database cannot be used. Run: callsheet --config {config} check",
}
_DEFAULT_FIX = (
    "callsheet could not reach the calendar server. Check that the server is up, the address and "
    "password are right, and the network works; `callsheet --config {config} check` shows what fails."
)


def alert_if_failing(settings: Settings, now: datetime, error: str) -> bool:
    """After passes kept failing for `run.alert_after`, write one "needs attention" reminder.

    Written once per failing stretch (health.json remembers it); removed by the next healthy
    pass. Returns True when it was written now. Never raises: the sink may be unreachable too.
    """
    beat = read_health(settings.state_dir) or {}
    since_text = beat.get("failing_since")
    if not since_text or beat.get("alerted"):
        return False
    since = datetime.fromisoformat(str(since_text))
    if now - since < settings.run.alert_after:
        return False
    fix = _FIXES.get(error, _DEFAULT_FIX).format(config=settings.path)
    local = since.astimezone(settings.practice.tz)
    body = (
        f"callsheet has not completed a pass since {local:%a %d %b %H:%M} ({error}).\n\n{fix}\n\n"
        "Until this is fixed no new call reminders are written. This reminder disappears by itself "
        "once callsheet works again."
    )
    reminder = Reminder(
        key=ALERT_KEY,
        kind="event",
        client_id=ClientId("callsheet"),
        reason=SystemReason.ATTENTION,
        start=now,
        end=now + timedelta(minutes=15),
        title="callsheet needs attention",
        description=body,
        payload_hash=render.payload_hash("callsheet needs attention", body),
    )
    try:
        sink = open_sink(settings, settings.reminders)
        try:
            if "event" not in sink.kinds():
                reminder = replace(reminder, kind="task")
            sink.create(reminder)
        finally:
            sink.close()
    except Exception as exc:  # noqa: BLE001 - the alert is best effort; the health file still tells
        log.warning("alert.unwritable", error=type(exc).__name__)
        return False
    beat["alerted"] = True
    _write_json(settings.state_dir / "health.json", beat)
    log.warning("alert.written", error=error, since=since.isoformat())
    return True


# -- the loop -----------------------------------------------------------------------------------


class Stop:
    """Set by SIGTERM/SIGINT: the loop finishes the current pass and exits."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal = ""

    def install(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            self.signal = signal.Signals(signum).name
            self.event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def loop(
    settings: Settings,
    every: timedelta,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    stop: Stop | None = None,
    include_stale: bool = False,
    max_passes: int | None = None,
) -> int:
    """Run a pass every `every` (with a little jitter) until stopped. Returns the exit code."""
    from worker.errors import LockedError  # local: keeps the import list of the module short

    stop = stop or Stop()
    passes = 0
    while not stop.event.is_set():
        now = clock()
        try:
            outcome = run_pass(settings, now, include_stale=include_stale, should_stop=stop.event.is_set)
            write_health(settings.state_dir, now=now, outcome="ok", counts=dict(outcome.counts))
        except LockedError:
            log.info("pass.skipped", reason="locked")
        except ConfigError:
            raise
        except ConnectorError as exc:
            record_failure(settings, now, exc)
            log.error("pass.failed", error=type(exc).__name__, operation=exc.operation, source=exc.source)
        except Exception as exc:  # noqa: BLE001 - the loop must survive any one bad pass
            record_failure(settings, now, exc)
            log.error("pass.failed", error=type(exc).__name__)
        passes += 1
        if max_passes is not None and passes >= max_passes:
            break
        jitter = random.uniform(0, min(30.0, every.total_seconds() * 0.1))
        wait = every.total_seconds() + jitter
        log.debug("loop.sleep", next_in_s=round(wait, 1))
        stop.event.wait(wait)
    if stop.signal:
        log.info("loop.stopped", signal=stop.signal)
    return 0
