"""The PostgreSQL store (`state_url = "postgresql://…"`): the same tables and meaning as the
SQLite store in worker/state.py, with an `account` column in every table, and the run lock as
a PostgreSQL advisory lock per account.

One schema serves every account (the single-config account is "default"). The schema is
versioned in `callsheet_schema` and migrated forward on open under a transaction-level
advisory lock (two workers starting at once never both migrate); a database at a newer
version is refused before anything is written. Every write is its own transaction, committed
before the method returns, so a crash loses at most the record of one write, which the next
pass adopts by key (the same guarantee as SQLite). Timestamps are ISO text in UTC, as in
SQLite, in columns collated "C" so that text order is time order whatever the database's
locale. Connections come from one psycopg pool per URL and process.

The password never sits in the URL (the config refuses it): it comes from the environment
variable `state_password_env` names, or libpq's own PGPASSWORD / .pgpass (PGPASSFILE).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from worker.errors import LockedError, StateError
from worker.model import Busy, ClientId, ItemKind, Observation, Record, ReminderKey
from worker.object_ids import object_id
from worker.state import (
    RECORD_COLUMNS,
    TABLES,
    Failure,
    Rows,
    StoredOccurrence,
    _dt,
    _iso,
    observation_of,
    record_of,
    upgrade_cursor_text,
    upgrade_object_rows,
)

SCHEMA_VERSION = 3
# seconds to wait for a connection from the pool before the pass gives up (StateError)
CONNECT_TIMEOUT = 10.0
LOCK_POOL_SIZE = 64  # passes of one process holding their account's lock at once (worker --concurrency)

_C = 'TEXT COLLATE "C"'


def _object_ids(conn: psycopg.Connection[Any]) -> None:
    """Objects by id, never by file name, href or event id (worker.object_ids; SQLite schema 3).

    Every account at once: each distinct item name is mapped to its id through a temporary
    table (one UPDATE per table, by join), and every cursor is rewritten in the connectors'
    new shape. Only the names change, so history, tombstones and the loss guard's counts stay.
    """
    names = conn.execute(
        "SELECT item FROM occurrences WHERE item != '' UNION SELECT item FROM objects WHERE item != ''"
    ).fetchall()
    conn.execute(f"CREATE TEMPORARY TABLE callsheet_object_ids (old {_C} PRIMARY KEY, new {_C} NOT NULL)")
    with conn.cursor() as cur, cur.copy("COPY callsheet_object_ids (old, new) FROM STDIN") as copy:
        for (name,) in names:
            copy.write_row((name, object_id(name)))
    for table in ("occurrences", "objects"):
        conn.execute(
            f"UPDATE {table} AS t SET item = m.new FROM callsheet_object_ids AS m WHERE t.item = m.old"
        )
    conn.execute("DROP TABLE callsheet_object_ids")
    cursors = conn.execute("SELECT account, source, cursor FROM cursors").fetchall()
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE cursors SET cursor = %s WHERE account = %s AND source = %s",
            [(upgrade_cursor_text(text), account, source) for account, source, text in cursors],
        )


# the first schema whose rows hold object ids (older rows are upgraded when read: `read_account`)
OBJECT_IDS_VERSION = 3

# a step is SQL (statements separated by ";") or, where rows must be rewritten, a function
_MIGRATIONS: dict[int, str | Callable[[psycopg.Connection[Any]], None]] = {
    # 1: the SQLite schema 2, per account
    1: f"""
    CREATE TABLE cursors (
        account {_C} NOT NULL,
        source {_C} NOT NULL,
        cursor TEXT NOT NULL,
        updated_at {_C} NOT NULL,
        PRIMARY KEY (account, source)
    );
    CREATE TABLE occurrences (
        account {_C} NOT NULL,
        source {_C} NOT NULL,
        id {_C} NOT NULL,
        item {_C} NOT NULL,
        uid {_C} NOT NULL,
        rid {_C} NOT NULL,
        client_id {_C},
        start {_C} NOT NULL,
        "end" {_C} NOT NULL,
        cancelled INTEGER NOT NULL DEFAULT 0,
        cancelled_at {_C},
        no_show INTEGER NOT NULL DEFAULT 0,
        arrived INTEGER NOT NULL DEFAULT 0,
        busy INTEGER NOT NULL DEFAULT 1,
        created {_C},
        vanished_at {_C},
        PRIMARY KEY (account, source, id)
    );
    CREATE INDEX occurrences_item ON occurrences (account, source, item);
    CREATE INDEX occurrences_client ON occurrences (account, client_id, start);
    CREATE INDEX occurrences_start ON occurrences (account, start);
    CREATE TABLE reminders (
        account {_C} NOT NULL,
        key {_C} NOT NULL,
        kind {_C} NOT NULL,
        status {_C} NOT NULL,
        ref {_C} NOT NULL DEFAULT '',
        etag {_C} NOT NULL DEFAULT '',
        payload_hash {_C} NOT NULL DEFAULT '',
        start {_C},
        client_id {_C} NOT NULL DEFAULT '',
        reason {_C} NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT '',
        created_at {_C} NOT NULL,
        updated_at {_C} NOT NULL,
        generation INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, key, kind)
    );
    CREATE TABLE objects (
        account {_C} NOT NULL,
        source {_C} NOT NULL,
        item {_C} NOT NULL,
        PRIMARY KEY (account, source, item)
    );
    CREATE TABLE failures (
        account {_C} NOT NULL,
        key {_C} NOT NULL,
        kind {_C} NOT NULL,
        generation INTEGER NOT NULL,
        class {_C} NOT NULL,
        permanent INTEGER NOT NULL,
        count INTEGER NOT NULL,
        first_at {_C} NOT NULL,
        last_at {_C} NOT NULL,
        PRIMARY KEY (account, key, kind)
    );
    CREATE TABLE meta (
        account {_C} NOT NULL,
        name {_C} NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (account, name)
    );
    """,
    # 2: account configs and their encrypted secrets (accounts_from = "database", worker/accounts_db.py);
    # `account_revision` counts every change of an account config: a worker polls it, one row, per tick
    2: f"""
    CREATE TABLE account_configs (
        name {_C} PRIMARY KEY,
        config TEXT NOT NULL,
        version BIGINT NOT NULL,
        updated_at {_C} NOT NULL
    );
    CREATE TABLE account_secrets (
        account {_C} NOT NULL,
        name {_C} NOT NULL,
        ciphertext TEXT NOT NULL,
        key_id {_C} NOT NULL,
        updated_at {_C} NOT NULL,
        PRIMARY KEY (account, name)
    );
    CREATE TABLE account_revision (
        one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
        revision BIGINT NOT NULL
    );
    INSERT INTO account_revision (one, revision) VALUES (TRUE, 0);
    """,
    # 3: object ids are digests (worker.object_ids), in the rows and in the cursors
    OBJECT_IDS_VERSION: _object_ids,
}

# a fixed key for the migration lock; the run locks hash the account name (lock_key)
_MIGRATION_LOCK = 0x63616C6C73686565  # "callshee"

_pools: dict[str, ConnectionPool[psycopg.Connection[Any]]] = {}
_pools_lock = threading.Lock()


def _cols(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def where(url: str) -> str:
    """The URL without user or password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _kwargs(password_env: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": int(CONNECT_TIMEOUT)}
    if password_env:
        password = os.environ.get(password_env)
        if password is None:
            raise StateError(f"state_password_env names {password_env}, which is not set in the environment")
        kwargs["password"] = password
    return kwargs


def unusable(url: str, exc: BaseException) -> StateError:
    """A StateError naming the database (never its password) and what to do."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StateError(
        f"the state database {where(url)} cannot be used now ({text}): check that PostgreSQL runs "
        "and accepts this user; it is retried next pass"
    )


def connect(url: str, password_env: str | None = None) -> psycopg.Connection[Any]:
    """One connection of its own (`state migrate`, the work queue's schema); autocommit."""
    try:
        return psycopg.connect(url, **_kwargs(password_env))
    except psycopg.Error as exc:
        raise unusable(url, exc) from exc


def _pool(
    url: str, password_env: str | None, *, locks: bool = False
) -> ConnectionPool[psycopg.Connection[Any]]:
    """The process's pool for one database: for the state's queries, or (`locks`) for the
    connections that hold accounts' advisory locks, kept between passes (a new connection per
    pass costs PostgreSQL a backend: ~4 ms of its CPU, as much as the rest of an idle pass)."""
    name = f"{'lock|' if locks else ''}{password_env or ''}|{url}"
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None:
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=LOCK_POOL_SIZE if locks else 8,
                kwargs=_kwargs(password_env),
                timeout=CONNECT_TIMEOUT,
                # a connection the server dropped (restart, failover) is replaced, not handed out
                check=ConnectionPool.check_connection,
                open=False,
            )
            try:
                pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            except psycopg.Error as exc:
                pool.close()
                raise unusable(url, exc) from exc
            except Exception as exc:  # the pool's own PoolTimeout: no connection came up
                pool.close()
                raise unusable(url, exc) from exc
            _pools[name] = pool
        return pool


def close_pools() -> None:
    """Close every pool this process opened (tests; a worker shutting down)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


def lock_key(account: str) -> int:
    """The advisory-lock key of one account: a signed 64-bit number from its name."""
    digest = hashlib.blake2b(f"callsheet:{account}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.contextmanager
def run_lock(url: str, account: str, password_env: str | None = None) -> Iterator[None]:
    """Hold the account's advisory lock for one pass, on a connection of its own (not the
    state's), kept in a pool between passes: never two passes of one account at once, on any
    machine. PostgreSQL lets go of it when the connection ends, so a pass killed mid-way never
    leaves the account locked; a connection whose unlock is not confirmed is closed, never
    handed to another pass.

    Raises:
        LockedError: another pass of this account holds it.
        StateError: the database cannot be reached.
    """
    pool = _pool(url, password_env, locks=True)
    try:
        conn = pool.getconn(timeout=CONNECT_TIMEOUT)
    except Exception as exc:  # psycopg.Error, or the pool's PoolTimeout
        raise unusable(url, exc) from exc
    reusable = False
    try:
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(account),)).fetchone()
        except psycopg.Error as exc:
            raise unusable(url, exc) from exc
        if row is None or not row[0]:
            reusable = True  # it holds nothing
            raise LockedError("another callsheet pass of this account is running")
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                row = conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(account),)).fetchone()
                reusable = row is not None and row[0] is True
    finally:
        if not reusable:
            conn.close()  # the pool drops a closed connection
        pool.putconn(conn)


def migrate(conn: psycopg.Connection[Any], url: str) -> None:
    """Bring the schema to SCHEMA_VERSION (refusing a newer one before anything is written)."""
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS callsheet_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM callsheet_schema").fetchone()
            version = int(row[0]) if row is not None and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"state database schema {version} is newer than this callsheet ({SCHEMA_VERSION}): "
                    "upgrade callsheet"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                step = _MIGRATIONS[target]
                if callable(step):
                    step(conn)
                else:
                    for statement in step.split(";"):
                        if statement.strip():
                            conn.execute(statement.encode())
                conn.execute("DELETE FROM callsheet_schema")
                conn.execute("INSERT INTO callsheet_schema (version) VALUES (%s)", (target,))
    except psycopg.Error as exc:
        raise unusable(url, exc) from exc


def current(conn: psycopg.Connection[Any]) -> int | None:
    """The schema version, or None when there is no schema yet (reads only)."""
    row = conn.execute("SELECT to_regclass('callsheet_schema')").fetchone()
    return None if row is None or row[0] is None else schema_version(conn)


def schema_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT max(version) FROM callsheet_schema").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def read_account(url: str, account: str, password_env: str | None = None) -> Rows:
    """One account's rows, read without writing anything (no schema yet: no rows).

    Raises:
        StateError: the database cannot be used, or its schema is newer than this callsheet.
    """
    conn = connect(url, password_env)
    try:
        version = current(conn)
        if version is None:
            return {table: [] for table in TABLES}
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database schema {version} is newer than this callsheet ({SCHEMA_VERSION}): "
                "upgrade callsheet"
            )
        rows = dump(conn, account)
        return upgrade_object_rows(rows) if version < OBJECT_IDS_VERSION else rows
    except psycopg.Error as exc:
        raise unusable(url, exc) from exc
    finally:
        conn.close()


def dump(conn: psycopg.Connection[Any], account: str) -> Rows:
    """Every row of one account, table by table, sorted (for copies and comparisons)."""
    out: Rows = {}
    for table, columns in TABLES.items():
        rows = conn.execute(f"SELECT {_cols(columns)} FROM {table} WHERE account = %s", (account,))
        out[table] = sorted((tuple(r) for r in rows), key=repr)
    return out


def load(
    conn: psycopg.Connection[Any], account: str, tables: Mapping[str, Iterable[Sequence[object]]]
) -> None:
    """Replace one account's rows with these, in one transaction."""
    with conn.transaction():
        for table in TABLES:
            conn.execute(f"DELETE FROM {table} WHERE account = %s", (account,))
        for table, rows in tables.items():
            columns = TABLES[table]
            marks = ", ".join(["%s"] * (len(columns) + 1))
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {table} (account, {_cols(columns)}) VALUES ({marks})",
                    [(account, *row) for row in rows],
                )


class PgState:
    """One account's state in PostgreSQL: the methods of worker.state.State."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]], url: str, account: str) -> None:
        self.url = url
        self.account = account
        self.path: Path | None = None
        self.moved_aside: Path | None = None  # never: a database is not moved aside
        self._pool = pool
        self.conn: psycopg.Connection[Any] = pool.getconn()

    @classmethod
    def open(cls, url: str, account: str = "default", password_env: str | None = None) -> PgState:
        """Connect (creating and migrating the schema).

        Raises:
            StateError: the database cannot be used now, or its schema is newer than this callsheet.
        """
        pool = _pool(url, password_env)
        try:
            state = cls(pool, url, account)
        except Exception as exc:  # PoolTimeout: every connection busy or the server gone
            raise unusable(url, exc) from exc
        try:
            if current(state.conn) != SCHEMA_VERSION:  # read first: most passes find it current
                migrate(state.conn, url)
        except psycopg.Error as exc:
            state.close()
            raise unusable(url, exc) from exc
        except BaseException:
            state.close()
            raise
        return state

    def close(self) -> None:
        conn, self.conn = self.conn, None  # type: ignore[assignment]
        if conn is not None:
            self._pool.putconn(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction; a database error inside it is a StateError."""
        try:
            with self.conn.transaction():
                yield self.conn
        except psycopg.Error as exc:
            raise unusable(self.url, exc) from exc

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn.execute(sql, (self.account, *params)).fetchall())
        except psycopg.Error as exc:
            raise unusable(self.url, exc) from exc

    # -- cursors ------------------------------------------------------------------------------

    def cursor(self, source: str) -> dict[str, object] | None:
        rows = self._query("SELECT cursor FROM cursors WHERE account = %s AND source = %s", (source,))
        if not rows:
            return None
        value = json.loads(rows[0][0])
        return value if isinstance(value, dict) else None

    def objects(self, source: str) -> set[str]:
        """The ids (worker.object_ids) of the objects the source held after the last pass."""
        rows = self._query("SELECT item FROM objects WHERE account = %s AND source = %s", (source,))
        return {r[0] for r in rows}

    def aged_out(self, source: str, before: datetime) -> set[str]:
        """Objects whose every remembered occurrence starts before `before` (see State.aged_out)."""
        rows = self._query(
            "SELECT item FROM occurrences WHERE account = %s AND source = %s AND item != '' "
            "GROUP BY item HAVING MAX(start) < %s",
            (source, _iso(before)),
        )
        return {r[0] for r in rows}

    # -- pass metadata ----------------------------------------------------------------------------

    def meta(self, name: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE account = %s AND name = %s", (name,))
        return None if not rows else str(rows[0][0])

    def set_meta(self, name: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta (account, name, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (account, name) DO UPDATE SET value = excluded.value",
                (self.account, name, value),
            )

    def last_pass(self) -> datetime | None:
        """The `now` of the latest pass that wrote anything (the clock guard compares with it)."""
        return _dt(self.meta("last_pass_at"))

    def note_pass(self, now: datetime) -> None:
        last = self.last_pass()
        if last is None or now > last:
            self.set_meta("last_pass_at", _iso(now) or "")

    # -- appointment history ------------------------------------------------------------------

    def apply_source(
        self,
        source: str,
        *,
        changed: Mapping[str, Iterable[StoredOccurrence]],
        removed: Iterable[str],
        complete: bool,
        window_start: datetime,
        window_end: datetime,
        cursor: Mapping[str, object],
        now: datetime,
        exdate_is_cancellation: bool = False,
    ) -> None:
        """Store what a source read returned, and its new cursor, in one transaction (the
        meaning is worker.state.State.apply_source's, line for line)."""
        lo, hi = _iso(window_start), _iso(window_end)
        acc = self.account
        stamp = _iso(now)
        with self.transaction() as db, db.cursor() as cur:
            gone = set(removed)
            if complete:
                present = set(changed)
                listed = cur.execute(
                    "SELECT DISTINCT item FROM occurrences WHERE account = %s AND source = %s", (acc, source)
                ).fetchall()
                gone |= {r[0] for r in listed if r[0] not in present}
                cur.execute("DELETE FROM objects WHERE account = %s AND source = %s", (acc, source))
            if gone:
                cur.executemany(
                    "DELETE FROM objects WHERE account = %s AND source = %s AND item = %s",
                    [(acc, source, i) for i in gone],
                )
            fresh = [(acc, source, i) for i in changed if i not in gone]
            if fresh:
                cur.executemany(
                    "INSERT INTO objects (account, source, item) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    fresh,
                )
            for item, occurrences in changed.items():
                occurrences = list(occurrences)
                keep = {o.observation.id for o in occurrences}
                rows = cur.execute(
                    "SELECT id FROM occurrences WHERE account = %s AND source = %s AND item = %s "
                    "AND start >= %s AND start < %s",
                    (acc, source, item, lo, hi),
                ).fetchall()
                drop = [(acc, source, r[0]) for r in rows if r[0] not in keep]
                if drop and exdate_is_cancellation:
                    # not started: a cancellation noticed now; started or over: history, as it was
                    cur.executemany(
                        """UPDATE occurrences SET cancelled = 1, busy = 0,
                               cancelled_at = COALESCE(cancelled_at, %s), vanished_at = COALESCE(vanished_at, %s)
                           WHERE account = %s AND source = %s AND id = %s AND start > %s""",
                        [(stamp, stamp, a, src, i, stamp) for a, src, i in drop],
                    )
                    drop = []
                if drop:
                    cur.executemany(
                        "DELETE FROM occurrences WHERE account = %s AND source = %s AND id = %s", drop
                    )
                if not occurrences:
                    continue
                cur.executemany(
                    """INSERT INTO occurrences (account, source, id, item, uid, rid, client_id, start, "end",
                           cancelled, cancelled_at, no_show, arrived, busy, created, vanished_at)
                       VALUES (%(account)s, %(source)s, %(id)s, %(item)s, %(uid)s, %(rid)s, %(client_id)s,
                           %(start)s, %(end)s, %(cancelled)s, %(cancelled_at)s, %(no_show)s, %(arrived)s,
                           %(busy)s, %(created)s, NULL)
                       ON CONFLICT (account, source, id) DO UPDATE SET item = excluded.item,
                           client_id = excluded.client_id, start = excluded.start, "end" = excluded."end",
                           cancelled = excluded.cancelled,
                           cancelled_at = CASE
                               WHEN excluded.cancelled = 1 AND occurrences.cancelled = 1
                                    AND occurrences.cancelled_at IS NOT NULL
                                   THEN occurrences.cancelled_at
                               -- booked when we last looked, cancelled now, and no time given
                               -- (the start stands in): we noticed it now
                               WHEN excluded.cancelled = 1 AND occurrences.cancelled = 0
                                    AND excluded.cancelled_at = excluded.start
                                   THEN %(now)s::text
                               ELSE excluded.cancelled_at END,
                           no_show = excluded.no_show, arrived = excluded.arrived,
                           busy = excluded.busy, created = excluded.created, vanished_at = NULL""",
                    [
                        {
                            "account": acc,
                            "source": source,
                            "id": o.observation.id,
                            "item": item,
                            "uid": o.observation.uid,
                            "rid": o.observation.recurrence_id,
                            "client_id": o.observation.client_id or None,
                            "start": _iso(o.observation.start),
                            "end": _iso(o.observation.end),
                            "cancelled": int(o.observation.cancelled),
                            "cancelled_at": _iso(o.observation.cancelled_at),
                            "no_show": int(o.observation.no_show),
                            "arrived": int(o.observation.arrived),
                            "busy": int(o.busy),
                            "created": _iso(o.observation.created),
                            "now": stamp,
                        }
                        for o in occurrences
                    ],
                )
            for item in gone:
                cur.execute(
                    """UPDATE occurrences SET cancelled = 1, busy = 0,
                           cancelled_at = COALESCE(cancelled_at, %s), vanished_at = COALESCE(vanished_at, %s)
                       WHERE account = %s AND source = %s AND item = %s AND start > %s""",
                    (stamp, stamp, acc, source, item, stamp),
                )
                cur.execute(
                    "UPDATE occurrences SET item = '' WHERE account = %s AND source = %s AND item = %s",
                    (acc, source, item),
                )
            cur.execute(
                """INSERT INTO cursors (account, source, cursor, updated_at) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (account, source) DO UPDATE SET cursor = excluded.cursor,
                       updated_at = excluded.updated_at""",
                (acc, source, json.dumps(cursor, sort_keys=True), stamp),
            )

    def observations(self, clients: Iterable[ClientId]) -> list[Observation]:
        """Every remembered appointment of these clients."""
        wanted = set(clients)
        out = []
        for row in self._query(
            """SELECT id, uid, rid, client_id, start, "end", cancelled, cancelled_at, no_show,
                      arrived, created, item, source
               FROM occurrences WHERE account = %s AND client_id IS NOT NULL""",
            (),
        ):
            if row[3] in wanted:
                out.append(observation_of(row))
        return out

    def busy(self, start: datetime, end: datetime) -> list[Busy]:
        """Taken time on the source calendars between start and end."""
        rows = self._query(
            'SELECT start, "end" FROM occurrences WHERE account = %s AND busy = 1 AND cancelled = 0 '
            'AND "end" > %s AND start < %s',
            (_iso(start), _iso(end)),
        )
        out = []
        for s, e in rows:
            bs, be = _dt(s), _dt(e)
            assert bs is not None and be is not None
            out.append(Busy(bs, be))
        return out

    # -- reminders ------------------------------------------------------------------------------

    def records(self) -> dict[tuple[ReminderKey, ItemKind], Record]:
        rows = self._query(f"SELECT {RECORD_COLUMNS} FROM reminders WHERE account = %s", ())
        return {(r.key, r.kind): r for r in map(record_of, rows)}

    def save_record(
        self,
        key: str,
        kind: str,
        *,
        status: str,
        now: datetime,
        ref: str | None = None,
        etag: str | None = None,
        payload_hash: str | None = None,
        start: datetime | None = None,
        client_id: str | None = None,
        reason: str | None = None,
        note: str | None = None,
        generation: int | None = None,
    ) -> None:
        """Insert or update one reminder record (its own transaction); a write clears its failure."""
        with self.transaction() as db:
            if status != "failed":
                db.execute(
                    "DELETE FROM failures WHERE account = %s AND key = %s AND kind = %s",
                    (self.account, key, kind),
                )
            db.execute(
                """INSERT INTO reminders (account, key, kind, status, ref, etag, payload_hash, start,
                       client_id, reason, note, created_at, updated_at, generation)
                   VALUES (%(account)s, %(key)s, %(kind)s, %(status)s, COALESCE(%(ref)s, ''),
                           COALESCE(%(etag)s, ''), COALESCE(%(payload)s, ''), %(start)s,
                           COALESCE(%(client_id)s, ''), COALESCE(%(reason)s, ''), COALESCE(%(note)s, ''),
                           %(now)s, %(now)s, COALESCE(%(generation)s, 0))
                   ON CONFLICT (account, key, kind) DO UPDATE SET status = excluded.status,
                       generation = COALESCE(%(generation)s, reminders.generation),
                       ref = COALESCE(%(ref)s, reminders.ref), etag = COALESCE(%(etag)s, reminders.etag),
                       payload_hash = COALESCE(%(payload)s, reminders.payload_hash),
                       start = COALESCE(excluded.start, reminders.start),
                       client_id = COALESCE(%(client_id)s, reminders.client_id),
                       reason = COALESCE(%(reason)s, reminders.reason),
                       note = COALESCE(%(note)s, reminders.note),
                       updated_at = excluded.updated_at""",
                {
                    "account": self.account,
                    "key": key,
                    "kind": kind,
                    "status": status,
                    "ref": ref,
                    "etag": etag,
                    "payload": payload_hash,
                    "start": _iso(start),
                    "client_id": client_id,
                    "reason": reason,
                    "note": note,
                    "now": _iso(now),
                    "generation": generation,
                },
            )

    def release_open(self, kind: str, *, now: datetime, note: str) -> int:
        """Mark every open record of `kind` withdrawn (worker.state.State.release_open)."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE reminders SET status = 'withdrawn', note = %s, updated_at = %s "
                "WHERE account = %s AND kind = %s AND status = 'open'",
                (note, _iso(now), self.account, kind),
            )
            return int(cursor.rowcount)

    def forget_records(self, slots: Iterable[tuple[str, str]]) -> None:
        """Drop the records of items removed on purpose (`purge`)."""
        rows = [(self.account, key, kind) for key, kind in slots]
        if not rows:
            return
        with self.transaction() as db, db.cursor() as cur:
            cur.executemany("DELETE FROM reminders WHERE account = %s AND key = %s AND kind = %s", rows)
            cur.executemany("DELETE FROM failures WHERE account = %s AND key = %s AND kind = %s", rows)

    # -- per-item write failures --------------------------------------------------------------------

    def note_failure(
        self, key: str, kind: str, *, generation: int, error: str, permanent: bool, now: datetime
    ) -> None:
        """Remember that writing one item failed (class only, no message: it may quote data)."""
        with self.transaction() as db:
            db.execute(
                """INSERT INTO failures (account, key, kind, generation, class, permanent, count,
                       first_at, last_at)
                   VALUES (%s, %s, %s, %s, %s, %s, 1, %s, %s)
                   ON CONFLICT (account, key, kind) DO UPDATE SET generation = excluded.generation,
                       class = excluded.class, permanent = excluded.permanent,
                       count = failures.count + 1, last_at = excluded.last_at""",
                (self.account, key, kind, generation, error, int(permanent), _iso(now), _iso(now)),
            )

    def failures(self) -> dict[tuple[ReminderKey, ItemKind], Failure]:
        out = {}
        for key, kind, generation, error, permanent, count, first, last in self._query(
            "SELECT key, kind, generation, class, permanent, count, first_at, last_at FROM failures "
            "WHERE account = %s",
            (),
        ):
            first_at, last_at = _dt(first), _dt(last)
            assert first_at is not None and last_at is not None
            out[(ReminderKey(key), kind)] = Failure(
                generation=generation,
                error=error,
                permanent=bool(permanent),
                count=count,
                first_at=first_at,
                last_at=last_at,
            )
        return out
