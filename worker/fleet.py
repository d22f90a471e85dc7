"""`callsheet worker`: the accounts' passes as Procrastinate jobs in the state database
(docs/scaling.md).

Every worker process, on any machine, loads the same account configs (the files mounted into
it) and connects to the `state_url` database, which also holds Procrastinate's queue. Three
tasks:

- `callsheet.tick` (periodic, every `tick` seconds; Procrastinate defers each tick once for
  the whole fleet): queues one pass of every account that is due. An account is due when one
  of its interval boundaries (`run.every`, offset by a hash of its name, so a fleet's passes
  spread evenly over the interval) falls inside the tick just ended. The pass is queued with
  the account's queueing lock: a pass never waits in the queue twice.
- `callsheet.pass`: one pass of one account (`runner.account_pass`) under the account's
  advisory lock (worker/state_pg.py): never two passes of one account at once, on any
  machine. A pass that finds the lock held is skipped (the running one covers the account).
- Accounts kept in the database (`accounts_from = "database"`, worker/accounts_db.py): the
  tick and every pass first ask whether the accounts changed (one one-row query) and load
  them again when they did, so an account added, changed or removed is served at the next
  tick without a restart; a pass of an account no longer stored is dropped.
- `callsheet.rescue` (periodic, every tick): a pass whose worker died (no heartbeat for
  `STALLED_AFTER` seconds) is queued again; when a newer pass of that account already waits,
  the dead one is marked failed instead (the waiting one covers it). Deterministic reminder
  names make the repeated pass adopt what the dead one wrote, never duplicate it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from worker import runner
from worker.config import Settings
from worker.errors import ConfigError, LockedError, Problem
from worker.group import error_words

log = structlog.get_logger()

PASS_TASK = "callsheet.pass"
TICK_TASK = "callsheet.tick"
RESCUE_TASK = "callsheet.rescue"
QUEUE = "callsheet"
# a worker's heartbeat; a pass of a worker silent for STALLED_AFTER seconds is queued again
HEARTBEAT = 2.0
STALLED_AFTER = 10.0
TICKS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)  # seconds that divide a minute
DEFAULT_TICK = 10
_SCHEMA_LOCK = 0x63616C6C_666C6565  # "callflee": applying Procrastinate's schema, one process at a time


def offset(account: str, every: float) -> float:
    """Where in its interval an account's passes fall: a stable spread by its name."""
    digest = hashlib.blake2b(f"callsheet-fleet:{account}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % 1_000_000) / 1_000_000 * every


def due_slot(account: str, every: float, at: float, tick: float) -> int | None:
    """The interval boundary of `account` that falls in the tick (at - tick, at], as a Unix
    time, or None. Ticks tile the time line, so each boundary is due in exactly one tick."""
    shift = offset(account, every)
    now_slot = math.floor((at - shift) / every)
    if now_slot > math.floor((at - tick - shift) / every):
        return int(now_slot * every + shift)
    return None


def _connector_kwargs(url: str, password_env: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {"conninfo": url, "min_size": 1, "max_size": 4}
    if password_env:
        options["kwargs"] = {"password": os.environ.get(password_env, "")}
    return options


def _require_state_url(accounts: Sequence[Settings]) -> str:
    urls = {a.state_url for a in accounts}
    if urls == {""} or "" in urls or len(urls) != 1:
        raise ConfigError(
            [
                Problem(
                    str(accounts[0].path),
                    "state_url: `callsheet worker` needs every account's state in one PostgreSQL "
                    'database (state_url = "postgresql://…"); it holds the work queue too',
                )
            ]
        )
    return next(iter(urls))


def ensure_schema(settings: Settings | tuple[str, str | None]) -> bool:
    """Apply Procrastinate's schema to the state database (a Settings' state_url, or a URL and its
    password variable) when it is not there yet (under an advisory lock, so workers starting
    together apply it once). Returns True when applied."""
    import psycopg

    from worker.state_pg import connect, unusable

    url, password_env = (
        settings if isinstance(settings, tuple) else (settings.state_url, settings.state_password_env)
    )
    conn = connect(url, password_env)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            row = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            if row is not None and row[0] is not None:
                return False
            from procrastinate.schema import SchemaManager

            conn.execute(SchemaManager.get_schema().encode())
        return True
    except psycopg.Error as exc:
        raise unusable(url, exc) from exc
    finally:
        conn.close()


# accounts_from = "database": the accounts again when they changed since the last call, else None
Reload = Callable[[], "tuple[Settings, ...] | None"]


@dataclass(frozen=True, slots=True)
class Fleet:
    """What a worker process serves: the accounts (by name) and the tick; `reload` (accounts
    in the database) gives a newer set of accounts when they changed."""

    accounts: tuple[Settings, ...]
    tick: int = DEFAULT_TICK
    reload: Reload | None = None
    database: tuple[str, str | None] = ("", None)  # state_url and its password variable

    def by_name(self) -> dict[str, Settings]:
        return {a.account: a for a in self.accounts}

    def circles(self) -> dict[str, tuple[Settings, ...]]:
        """Each account with the accounts a pass of it must see: itself first, then its peers
        (a shared roster), and any account whose calendar its reminders would land in (so that
        `runner.check_peer_sources` refuses it). Worked out once per worker: a pass then costs
        the same with 10 accounts or 10,000 (the group's per-pass checks look at every account)."""
        from connectors.base import sink_locations, source_locations

        by_roster: dict[object, list[Settings]] = {}
        sources: dict[object, list[Settings]] = {}
        for a in self.accounts:
            by_roster.setdefault(a.roster_path, []).append(a)
            if a.source.kind != "google":
                for place in source_locations(a.source):
                    sources.setdefault(place, []).append(a)
        out: dict[str, tuple[Settings, ...]] = {}
        for a in self.accounts:
            seen = {a.account}
            circle = [a]
            clashing = (
                []
                if a.reminders.kind == "google"
                else [p for place in sink_locations(a.reminders) for p in sources.get(place, [])]
            )
            for other in [*by_roster[a.roster_path], *clashing]:
                if other.account not in seen:
                    seen.add(other.account)
                    circle.append(other)
            out[a.account] = tuple(circle)
        return out


@dataclass(slots=True)
class _Served:
    """The accounts a worker serves now: (accounts, by name, circles), swapped whole (one
    attribute, so a pass never sees half of an old set and half of a new one) when `reload`
    finds a change."""

    fleet: Fleet
    view: tuple[tuple[Settings, ...], dict[str, Settings], dict[str, tuple[Settings, ...]]] = ((), {}, {})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._use(self.fleet.accounts)

    def _use(self, accounts: tuple[Settings, ...]) -> None:
        whole = Fleet(accounts, self.fleet.tick)
        self.view = (accounts, whole.by_name(), whole.circles())

    def refresh(self) -> None:
        """Load the accounts again when they changed (one small query when they did not). A
        database that cannot be reached keeps the accounts as they were (the pass says why)."""
        if self.fleet.reload is None:
            return
        from worker.errors import StateError

        with self.lock:
            try:
                changed = self.fleet.reload()
            except StateError as exc:
                log.warning("fleet.reload_failed", problem=str(exc))
                return
            if changed is not None:
                self._use(changed)


def make_app(fleet: Fleet) -> Any:
    """The Procrastinate app of a worker: its three tasks bound to the fleet's accounts."""
    import procrastinate
    from procrastinate import exceptions, jobs

    url, password_env = (
        fleet.database
        if fleet.database[0]
        else (fleet.accounts[0].state_url, fleet.accounts[0].state_password_env)
    )
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(**_connector_kwargs(url, password_env)))
    served = _Served(fleet)

    @app.task(name=PASS_TASK, queue=QUEUE)
    def pass_task(account: str, slot: int) -> None:
        served.refresh()
        _accounts, named, circles = served.view
        settings = named.get(account)
        if settings is None:  # removed since, or queued by a worker with another config
            log.warning("fleet.unknown_account", account=account)
            return
        started = time.time()
        log.info("fleet.pass_started", account=account, slot=slot, pid=os.getpid(), at=started)
        result = runner.account_pass(settings, circles[account], datetime.now(UTC), every=settings.run.every)
        finished = time.time()
        if isinstance(result.error, LockedError):
            log.info("fleet.pass_skipped", account=account, slot=slot, pid=os.getpid(), at=finished)
            return
        log.info(
            "fleet.pass_done",
            account=account,
            slot=slot,
            pid=os.getpid(),
            at=finished,
            since=started,
            status="ok" if result.error is None else "failed",
            problem=error_words(result.error) if result.error is not None else "",
        )

    @app.periodic(cron=f"* * * * * */{fleet.tick}", periodic_id="tick")
    @app.task(name=TICK_TASK, queue=QUEUE, queueing_lock=TICK_TASK)
    async def tick_task(timestamp: int) -> None:
        if fleet.reload is not None:
            await asyncio.to_thread(served.refresh)
        queued = 0
        for settings in served.view[0]:
            slot = due_slot(settings.account, settings.run.every.total_seconds(), timestamp, fleet.tick)
            if slot is None:
                continue
            try:
                await pass_task.configure(queueing_lock=f"pass:{settings.account}").defer_async(
                    account=settings.account, slot=slot
                )
            except exceptions.AlreadyEnqueued:
                log.info("fleet.already_queued", account=settings.account, slot=slot)
                continue
            queued += 1
        log.debug("fleet.tick", count=queued, slot=timestamp)

    @app.periodic(cron=f"* * * * * */{fleet.tick}", periodic_id="rescue")
    @app.task(name=RESCUE_TASK, queue=QUEUE, queueing_lock=RESCUE_TASK)
    async def rescue_task(timestamp: int) -> None:
        stalled = await app.job_manager.get_stalled_jobs(
            task_name=PASS_TASK, seconds_since_heartbeat=STALLED_AFTER
        )
        for job in stalled:
            account = str(job.task_kwargs.get("account", ""))
            try:
                await app.job_manager.retry_job(job)
                log.warning("fleet.pass_requeued", account=account, slot=job.task_kwargs.get("slot"))
            except exceptions.ConnectorException:  # a newer pass of the account is queued already
                await app.job_manager.finish_job(job, status=jobs.Status.FAILED, delete_job=False)
                log.warning("fleet.pass_superseded", account=account, slot=job.task_kwargs.get("slot"))
        # a dead worker's tick or rescue: dropped (the accounts it left pass at their next boundary)
        for name in (TICK_TASK, RESCUE_TASK):
            for job in await app.job_manager.get_stalled_jobs(
                task_name=name, seconds_since_heartbeat=STALLED_AFTER
            ):
                await app.job_manager.finish_job(job, status=jobs.Status.FAILED, delete_job=True)

    del tick_task, rescue_task  # registered on the app
    return app


def serve(
    accounts: Sequence[Settings],
    *,
    concurrency: int,
    tick: int = DEFAULT_TICK,
    reload: Reload | None = None,
) -> int:
    """Run a worker until SIGTERM/SIGINT: at most `concurrency` passes at once. Returns 0.
    `reload` (accounts in the database, worker/accounts_db.Reloader): a newer set of accounts
    when they changed; then `accounts` may be empty (the worker waits for the first)."""
    database = getattr(reload, "db", None)
    if database is not None:
        url, password_env = database.url, database.password_env
    else:
        url = _require_state_url(accounts)
        password_env = accounts[0].state_password_env
    if tick not in TICKS:
        raise ValueError(f"--tick must divide a minute: one of {', '.join(map(str, TICKS))}")
    _migrate(url, password_env)  # callsheet's own schema, migrated forward (worker/state_pg.py)
    if ensure_schema((url, password_env)):
        log.info("fleet.schema_applied")
    app = make_app(Fleet(tuple(accounts), tick, reload, (url, password_env)))
    log.info("fleet.started", count=len(accounts), pid=os.getpid())
    app.run_worker(
        queues=[QUEUE],
        concurrency=concurrency,
        name=f"callsheet-{os.uname().nodename}-{os.getpid()}",
        update_heartbeat_interval=HEARTBEAT,
        stalled_worker_timeout=STALLED_AFTER,
        delete_jobs="successful",
        fetch_job_polling_interval=1.0,
    )
    log.info("fleet.stopped", pid=os.getpid())
    return 0


def _migrate(url: str, password_env: str | None) -> None:
    from worker import state_pg

    conn = state_pg.connect(url, password_env)
    try:
        if state_pg.current(conn) != state_pg.SCHEMA_VERSION:
            state_pg.migrate(conn, url)
    finally:
        conn.close()


def init_database(url: str, password_env: str | None, config: object) -> int:
    """`callsheet state init` for `accounts_from = "database"`: the tables and the queue, before
    any account is stored."""
    if not url:
        raise ConfigError(
            [Problem(str(config), 'accounts_from = "database" needs state_url = "postgresql://…"')]
        )
    _migrate(url, password_env)
    applied = ensure_schema((url, password_env))
    print("callsheet: the state database is ready" + (" (work queue created)." if applied else "."))
    return 0


def init(accounts: Sequence[Settings]) -> int:
    """`callsheet state init`: create or migrate callsheet's tables and Procrastinate's queue."""
    _require_state_url(accounts)
    from worker.state import open_state

    open_state(accounts[0]).close()
    applied = ensure_schema(accounts[0])
    print("callsheet: the state database is ready" + (" (work queue created)." if applied else "."))
    return 0


__all__ = ["Fleet", "due_slot", "ensure_schema", "init", "init_database", "make_app", "offset", "serve"]
