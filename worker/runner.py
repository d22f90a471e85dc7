"""One pass (sync -> plan -> apply -> health), and the scheduled loop (docs/design.md "Map").

The runner composes the steps and holds the guards that span them: the never-write-the-source
check (by identity, `connectors.base.check_locations`), the clock guard (a `now` more than
`CLOCK_SLACK` before the last pass writes nothing), the run lock and the state. `plan` runs the
same pass on an in-memory copy of the state and applies nothing.
"""

from __future__ import annotations

import random
import signal
import threading
import time as _time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType

import structlog

from connectors.base import (
    Sink,
    check_locations,
    open_sink,
    open_source,
    owner_of,
    sink_locations,
    source_locations,
)
from worker.apply import apply
from worker.config import Settings
from worker.errors import (
    ClockError,
    ConfigError,
    ConnectorError,
    ItemsUnseenError,
    LockedError,
    Problem,
    WorkerError,
)
from worker.health import read_health, record_failure, record_outcome, write_health
from worker.model import Appointment
from worker.planning import Plan, appointments_at, decide
from worker.roster import Roster
from worker.state import Store, lock_for, open_state, snapshot_state
from worker.sync import sync_source, window_for

__all__ = [
    "CLOCK_SLACK",
    "NO_ACCEPT",
    "Accept",
    "AccountRun",
    "PassOutcome",
    "Plan",
    "Stop",
    "account_pass",
    "loop",
    "loop_accounts",
    "peers_of",
    "read_health",
    "record_failure",
    "run_accounts",
    "run_pass",
    "window_for",
    "write_health",
]

log = structlog.get_logger()

# A pass whose clock is this far behind the last pass writes nothing (a board that boots
# before NTP, a wrong --now): it would delete future reminders and close open tasks.
CLOCK_SLACK = timedelta(hours=1)


@dataclass(slots=True)
class PassOutcome:
    plan: Plan
    counts: Counter[str]
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Accept:
    """The named ways out of the guards, for one pass."""

    source_loss: bool = False
    deletions: bool = False


NO_ACCEPT = Accept()


def run_pass(
    settings: Settings,
    now: datetime,
    *,
    dry_run: bool = False,
    include_stale: bool = False,
    on_phase: Callable[[str], None] | None = None,
    sink: Sink | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    accept: Accept = NO_ACCEPT,
    peers: Sequence[Settings] = (),
) -> PassOutcome:
    """One pass. With `dry_run` the state is an in-memory copy and nothing is written.

    `sink` replaces the configured reminder sink (tests use an in-memory one). `peers`: the
    other accounts of a group practice sharing this one's roster (`peers_of`); their
    appointments, as their last pass read them, go into the rules.

    Raises:
        LockedError: another pass runs (only without dry_run).
        GuardError: a guard stopped the pass before it changed anything (source loss, mass
            deletion, clock); the message names the way out.
        ConnectorError: a calendar could not be read or written; the pass failed.
        ConfigError: the configuration is unusable (a sink pointed at a source included).
        StateError: the state database cannot be used now.
    """
    started = _time.monotonic()
    now = now.replace(microsecond=0)
    run_id = uuid.uuid4().hex[:8]
    structlog.contextvars.bind_contextvars(run_id=run_id)
    try:
        if sink is None:
            check_locations(settings)  # before anything is read (open_sink checks again)
        if dry_run:
            state = snapshot_state(settings)
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
                accept=accept,
                peers=peers,
            )
        with lock_for(settings):
            state = open_state(settings)
            if state.moved_aside is not None:
                log.warning("state.corrupt", moved_to=str(state.moved_aside))
            last = state.last_pass()
            if last is not None and now < last - CLOCK_SLACK:
                state.close()
                raise ClockError(
                    f"the clock says {now.isoformat()} but the last pass ran at {last.isoformat()}; "
                    "nothing was changed (a clock this far behind would delete future reminders). "
                    "Set the clock right (network time); the next pass with a correct clock goes on.",
                    operation="clock",
                )
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
                accept=accept,
                peers=peers,
            )
    finally:
        structlog.contextvars.unbind_contextvars("run_id")


def _pass(
    settings: Settings,
    state: Store,
    now: datetime,
    *,
    dry_run: bool,
    include_stale: bool,
    started: float,
    on_phase: Callable[[str], None] | None,
    sink: Sink | None,
    should_stop: Callable[[], bool],
    accept: Accept,
    peers: Sequence[Settings] = (),
) -> PassOutcome:
    roster = Roster.of(settings.clients)
    given = sink
    source = None
    try:
        source = open_source(settings, settings.source)
        if on_phase:
            on_phase("reading the calendar")
        counts = sync_source(source, settings, state, roster, now, accept_loss=accept.source_loss)
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
        room, elsewhere = peer_appointments(settings, peers, now)
        try:
            plan = decide(
                settings,
                state,
                sink,
                now,
                owner=owner_of(settings),
                include_stale=include_stale,
                accept_deletions=accept.deletions,
                source_empty=counts["objects"] == 0 and not accept.source_loss,
                room=room,
                elsewhere=elsewhere,
            )
        except ItemsUnseenError as exc:
            # the sink lost a whole list (not the therapist handling each item): nothing is
            # tombstoned; the open items of that kind are written afresh next pass
            if not dry_run:
                released = state.release_open(exc.kind, now=now, note="list lost")
                log.warning("sink.items_unseen", kind=exc.kind, count=released)
            raise
        plan.counts.update(counts)
        done: Counter[str] = Counter()
        if not dry_run:
            if on_phase:
                on_phase("writing reminders")
            done["swept"] = sink.sweep()
            done.update(apply(plan, sink, state, should_stop=should_stop))
            for alert in plan.alerts:  # healthy again: the "needs attention" reminder goes
                try:
                    sink.delete(alert)
                except ConnectorError as exc:
                    log.warning("alert.undeletable", error=type(exc).__name__)
                    continue
                done["alerts_cleared"] += 1
            state.note_pass(now)
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
        if source is not None:
            source.close()
        if sink is not None and sink is not given:
            sink.close()
        state.close()


# -- a group practice: the other accounts ---------------------------------------------------------


def peers_of(settings: Settings, accounts: Sequence[Settings]) -> tuple[Settings, ...]:
    """The other accounts that share `settings`' roster file (one practice roster: client ids
    mean the same person in both). Accounts with rosters of their own share nothing."""
    return tuple(
        a for a in accounts if a.account != settings.account and a.roster_path == settings.roster_path
    )


def peer_appointments(
    settings: Settings, peers: Sequence[Settings], now: datetime
) -> tuple[list[Appointment], list[Appointment]]:
    """(room, elsewhere): the peers' appointments in this account's waiting room, and all of
    theirs (the same clients seen by another clinician), as each peer's last pass stored them.

    A peer whose state cannot be read is left out (logged): its trouble never stops this pass.
    """
    room: list[Appointment] = []
    elsewhere: list[Appointment] = []
    for peer in peers:
        try:
            state = snapshot_state(peer)
            try:
                theirs = appointments_at(state, peer, now)
            finally:
                state.close()
        except Exception as exc:  # noqa: BLE001 - another account's state is never this one's failure
            log.warning("peer.unreadable", account=peer.account, error=type(exc).__name__)
            continue
        elsewhere += theirs
        if settings.waiting_room and peer.waiting_room == settings.waiting_room:
            room += theirs
    return room, elsewhere


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
    accept: Accept = NO_ACCEPT,
) -> int:
    """Run a pass every `every` (with a little jitter) until stopped. Returns the exit code."""
    stop = stop or Stop()
    passes = 0
    while not stop.event.is_set():
        now = clock()
        try:
            outcome = run_pass(
                settings, now, include_stale=include_stale, should_stop=stop.event.is_set, accept=accept
            )
            record_outcome(settings, now, dict(outcome.counts), every=every)
        except LockedError:
            log.info("pass.skipped", reason="locked")
        except ConfigError:
            raise
        except ConnectorError as exc:
            record_failure(settings, now, exc, every=every)
            log.error("pass.failed", error=type(exc).__name__, operation=exc.operation, source=exc.source)
        except Exception as exc:  # noqa: BLE001 - the loop must survive any one bad pass
            record_failure(settings, now, exc, every=every)
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


# -- a group practice: every account, bounded concurrency ----------------------------------------


@dataclass(slots=True)
class AccountRun:
    """What one account's pass came to: its outcome, or the error that ended it."""

    settings: Settings
    outcome: PassOutcome | None = None
    error: BaseException | None = None
    healthy: bool = True  # record_outcome's verdict (False: some items failed)


def account_pass(
    settings: Settings,
    accounts: Sequence[Settings],
    now: datetime,
    *,
    include_stale: bool = False,
    accept: Accept = NO_ACCEPT,
    record: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    every: timedelta | None = None,
) -> AccountRun:
    """One account's pass under its own deadline (`run.deadline`: past it, the pass writes no
    more), its health recorded in its own state folder. Never raises: the error is returned."""
    structlog.contextvars.bind_contextvars(account=settings.account)
    deadline = _time.monotonic() + settings.run.deadline.total_seconds()

    def stop_now() -> bool:
        return should_stop() or _time.monotonic() > deadline

    result = AccountRun(settings)
    try:
        check_peer_sources(settings, accounts)
        result.outcome = run_pass(
            settings,
            now,
            include_stale=include_stale,
            should_stop=stop_now,
            accept=accept,
            peers=peers_of(settings, accounts),
        )
        if record:
            result.healthy = record_outcome(settings, now, dict(result.outcome.counts), every=every)
    except LockedError as exc:
        log.info("pass.skipped", reason="locked")
        result.error = exc
    except Exception as exc:  # noqa: BLE001 - one account's failure is never another's
        result.error = exc
        log.error("pass.failed", error=type(exc).__name__)
        if record and not isinstance(exc, ConfigError):
            try:
                record_failure(settings, now, exc, every=every)
            except Exception as again:  # noqa: BLE001 - an unwritable state folder is this account's only
                log.error("health.unwritable", error=type(again).__name__)
    finally:
        structlog.contextvars.unbind_contextvars("account")
    return result


def check_peer_sources(settings: Settings, accounts: Sequence[Settings]) -> None:
    """Refuse reminders that would land in another account's appointment calendar (folders and
    CalDAV collections, by identity; Google calendar ids name nothing across accounts).

    Raises:
        ConfigError: the clash, naming both accounts.
    """
    if settings.reminders.kind == "google":
        return
    mine = sink_locations(settings.reminders)
    for peer in accounts:
        if peer.account == settings.account or peer.source.kind == "google":
            continue
        if mine & source_locations(peer.source):
            raise ConfigError(
                [
                    Problem(
                        str(settings.path),
                        f"account {settings.account!r}: [reminders] is the appointment calendar of account "
                        f"{peer.account!r}; callsheet never writes into a source",
                    )
                ]
            )


def read_ahead(settings: Settings, now: datetime, accept: Accept = NO_ACCEPT) -> None:
    """Read one account's calendar into its state (under its lock), as a pass would, without
    planning or writing reminders. Never raises: whatever fails here fails again in the pass
    that follows, which reports it."""
    structlog.contextvars.bind_contextvars(account=settings.account)
    try:
        with lock_for(settings):
            state = open_state(settings)
            try:
                last = state.last_pass()
                if last is not None and now < last - CLOCK_SLACK:
                    return  # the pass refuses this clock, and says so
                source = open_source(settings, settings.source)
                try:
                    sync_source(
                        source,
                        settings,
                        state,
                        Roster.of(settings.clients),
                        now,
                        accept_loss=accept.source_loss,
                    )
                finally:
                    source.close()
            finally:
                state.close()
    except Exception as exc:  # noqa: BLE001 - reported by the pass itself
        log.info("read_ahead.failed", error=type(exc).__name__)
    finally:
        structlog.contextvars.unbind_contextvars("account")


def run_accounts(
    accounts: Sequence[Settings],
    now: datetime,
    *,
    include_stale: bool = False,
    accept: Accept = NO_ACCEPT,
    record: bool = True,
    everyone: Sequence[Settings] = (),
) -> list[AccountRun]:
    """One pass of each of `accounts`, `run.concurrency` at a time; results in config order.
    `everyone`: all accounts of the config (the peers; default `accounts`)."""
    everyone = everyone or accounts
    workers = max(1, min(accounts[0].run.concurrency, len(accounts)))
    # Accounts that share a roster see each other's appointments as each one's last read stored
    # them: read all their calendars first, so that no pass plans on a peer's calendar of the
    # previous pass (a client who moved to another clinician would get a false call).
    ahead = [a for a in accounts if peers_of(a, accounts)]
    if ahead:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read") as pool:
            list(pool.map(lambda a: read_ahead(a, now, accept), ahead))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="account") as pool:
        futures = [
            pool.submit(
                account_pass, a, everyone, now, include_stale=include_stale, accept=accept, record=record
            )
            for a in accounts
        ]
        return [f.result() for f in futures]


def loop_accounts(
    accounts: Sequence[Settings],
    every: timedelta | None,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    stop: Stop | None = None,
    include_stale: bool = False,
    max_passes: int | None = None,
    accept: Accept = NO_ACCEPT,
    everyone: Sequence[Settings] = (),
    reload: Callable[[], Sequence[Settings] | None] | None = None,
) -> int:
    """Every account on its own interval (`every`, else its `run.every`) with jitter, at most
    `run.concurrency` passes at once, until stopped. A slow or failing account delays no
    other: it only holds its own worker thread. `reload` (accounts in the database; asked
    about once a second) gives every account anew when they changed. Returns the exit code."""
    stop = stop or Stop()
    everyone = everyone or accounts
    interval = {a.account: (every or a.run.every).total_seconds() for a in accounts}
    start = _time.monotonic()
    # the first passes are spread over a few seconds, so a fleet does not start in step
    next_at = {a.account: start + random.uniform(0, min(5.0, interval[a.account] * 0.1)) for a in accounts}
    passes = dict.fromkeys(next_at, 0)
    running: dict[str, Future[AccountRun]] = {}
    concurrency = accounts[0].run.concurrency
    # with `reload`, accounts may come later: the pool is as wide as the config allows
    workers = concurrency if reload is not None else max(1, min(concurrency, len(accounts)))
    asked = start
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="account") as pool:
        while not stop.event.is_set():
            moment = _time.monotonic()
            if reload is not None and moment - asked >= 1.0:
                asked = moment
                try:
                    changed = reload()
                except WorkerError as exc:  # the database is away: the accounts stay as they were
                    log.warning("loop.reload_failed", problem=str(exc))
                    changed = None
                if changed is not None:
                    accounts = everyone = tuple(changed)
                    interval = {a.account: (every or a.run.every).total_seconds() for a in accounts}
                    next_at = {a.account: next_at.get(a.account, moment) for a in accounts}
                    passes = {a.account: passes.get(a.account, 0) for a in accounts}
            for settings in accounts:
                name = settings.account
                if name in running or next_at[name] > moment:
                    continue
                if max_passes is not None and passes[name] >= max_passes:
                    continue
                running[name] = pool.submit(
                    account_pass,
                    settings,
                    everyone,
                    clock(),
                    include_stale=include_stale,
                    accept=accept,
                    should_stop=stop.event.is_set,
                    every=timedelta(seconds=interval[name]),
                )
            for name, future in list(running.items()):
                if future.done():
                    del running[name]
                    if name not in interval:  # removed while it ran
                        continue
                    passes[name] += 1
                    jitter = random.uniform(0, min(30.0, interval[name] * 0.1))
                    next_at[name] = _time.monotonic() + interval[name] + jitter
            if max_passes is not None and not running and all(n >= max_passes for n in passes.values()):
                break
            waiting = [t for n, t in next_at.items() if n not in running]
            wait = min(waiting, default=moment + 1.0) - _time.monotonic()
            stop.event.wait(min(max(wait, 0.0), 0.2 if running else 1.0))
    if stop.signal:
        log.info("loop.stopped", signal=stop.signal)
    return 0
