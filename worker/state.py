"""The SQLite store: sync cursors, appointment history, reminders written, tombstones; the
run lock.

Files are 0600 in a 0700 folder. The schema is versioned (PRAGMA user_version) and migrated
forward on open. Writes are transactional; the runner commits after every applied action, so
a crash loses at most the record of one write, which the next pass adopts by key. A corrupt
database is moved aside (never overwritten) and rebuilt from what the sink holds.

Longer than ~400 lines on purpose: one table per concern, each with its few queries; the
migrations and the corruption rules need to sit next to the schema they guard.

The end of this module picks the backend for the callers: `open_state`, `snapshot_state` and
`lock_for` give the SQLite state in state_dir, or the PostgreSQL one (worker/state_pg.py, only
imported then) when `state_url` is set; both satisfy `Store`, which is all a pass uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from worker.errors import LockedError, StateError
from worker.model import Busy, ClientId, ItemKind, Observation, Record, ReminderKey
from worker.object_ids import object_id, upgrade_cursor

SCHEMA_VERSION = 3
# seconds a pass waits for a database another process holds before it gives up (StateError)
BUSY_TIMEOUT = 10.0


def upgrade_cursor_text(text: str) -> str:
    """A stored cursor (JSON) with its object names replaced by ids (worker.object_ids)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text  # not ours to judge: the connector ignores a cursor it cannot read
    return json.dumps(upgrade_cursor(value), sort_keys=True)


def _object_ids(conn: sqlite3.Connection) -> None:
    """Schema 3: objects by id, never by file name, href or event id (worker.object_ids).

    Rewrites every row in place (history, tombstones and counts untouched: only the item names
    change, one id per name, so `objects`, `aged_out` and the loss guard count as before) and
    every cursor in the connectors' new shape, so the next pass reads incrementally.
    """
    conn.create_function("callsheet_object_id", 1, object_id, deterministic=True)
    conn.create_function("callsheet_cursor", 1, upgrade_cursor_text, deterministic=True)
    conn.execute("UPDATE occurrences SET item = callsheet_object_id(item) WHERE item != ''")
    conn.execute("UPDATE objects SET item = callsheet_object_id(item) WHERE item != ''")
    conn.execute("UPDATE cursors SET cursor = callsheet_cursor(cursor)")


def upgrade_object_rows(rows: Rows) -> Rows:
    """What `_object_ids` does, on rows read from a state of an older schema (`plan`'s
    snapshot of a PostgreSQL state no pass has migrated yet)."""
    item = TABLES["occurrences"].index("item")
    out = dict(rows)
    out["occurrences"] = [
        (*r[:item], object_id(str(r[item])), *r[item + 1 :]) for r in rows.get("occurrences", [])
    ]
    out["objects"] = [(source, object_id(str(name))) for source, name in rows.get("objects", [])]
    out["cursors"] = [
        (source, upgrade_cursor_text(str(cursor)), at) for source, cursor, at in rows.get("cursors", [])
    ]
    return out


# a step is SQL (statements separated by ";") or, where rows must be rewritten, a function
_MIGRATIONS: dict[int, str | Callable[[sqlite3.Connection], None]] = {
    1: """
    CREATE TABLE cursors (
        source TEXT PRIMARY KEY,
        cursor TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE occurrences (
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        item TEXT NOT NULL,
        uid TEXT NOT NULL,
        rid TEXT NOT NULL,
        client_id TEXT,
        start TEXT NOT NULL,
        end TEXT NOT NULL,
        cancelled INTEGER NOT NULL DEFAULT 0,
        cancelled_at TEXT,
        no_show INTEGER NOT NULL DEFAULT 0,
        arrived INTEGER NOT NULL DEFAULT 0,
        busy INTEGER NOT NULL DEFAULT 1,
        created TEXT,
        vanished_at TEXT,
        PRIMARY KEY (source, id)
    );
    CREATE INDEX occurrences_item ON occurrences (source, item);
    CREATE INDEX occurrences_client ON occurrences (client_id, start);
    CREATE INDEX occurrences_start ON occurrences (start);
    CREATE TABLE reminders (
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        ref TEXT NOT NULL DEFAULT '',
        etag TEXT NOT NULL DEFAULT '',
        payload_hash TEXT NOT NULL DEFAULT '',
        start TEXT,
        client_id TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (key, kind)
    );
    """,
    # 2: per-item generations (worker.identity), the objects each source holds (source-loss
    # guard), per-item write failures, and pass metadata (clock guard)
    2: """
    ALTER TABLE reminders ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE objects (
        source TEXT NOT NULL,
        item TEXT NOT NULL,
        PRIMARY KEY (source, item)
    );
    INSERT OR IGNORE INTO objects (source, item)
        SELECT DISTINCT source, item FROM occurrences WHERE item != '';
    CREATE TABLE failures (
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        generation INTEGER NOT NULL,
        class TEXT NOT NULL,
        permanent INTEGER NOT NULL,
        count INTEGER NOT NULL,
        first_at TEXT NOT NULL,
        last_at TEXT NOT NULL,
        PRIMARY KEY (key, kind)
    );
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 3: object ids are digests (worker.object_ids), in the rows and in the cursors
    3: _object_ids,
}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def secure_dir(path: Path) -> None:
    """Create `path` as a 0700 folder (or tighten an existing one we own)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(PermissionError):
        os.chmod(path, 0o700)


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data`, created 0600 (health, tokens, drafts, the demo).

    The temporary file sits next to the target, is fsynced, then renamed over it: a crash
    leaves the old file or the new one, never half of either.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _touch_private(path: Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    with contextlib.suppress(PermissionError):
        os.chmod(path, 0o600)


@contextlib.contextmanager
def run_lock(state_dir: Path) -> Iterator[None]:
    """Hold the exclusive `run.lock` for one pass.

    Raises:
        LockedError: another pass holds it.
    """
    secure_dir(state_dir)
    path = state_dir / "run.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LockedError("another callsheet pass is running") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


RECORD_COLUMNS = "key, kind, status, ref, etag, payload_hash, start, generation, client_id, reason"


def record_of(row: Sequence[Any]) -> Record:
    """A reminders row (RECORD_COLUMNS, in order) as a Record; both backends read it so."""
    key, kind, status, ref, etag, payload, start, generation, client_id, reason = row
    return Record(
        key=ReminderKey(key),
        kind=kind,
        status=status,
        ref=ref,
        etag=etag,
        payload_hash=payload,
        start=_dt(start),
        generation=generation,
        client_id=client_id,
        reason=reason,
    )


def observation_of(row: Sequence[Any]) -> Observation:
    """An occurrences row (id, uid, rid, client_id, start, end, cancelled, cancelled_at, no_show,
    arrived, created, item, source) as an Observation; both backends read it so."""
    start, end = _dt(row[4]), _dt(row[5])
    assert start is not None and end is not None
    return Observation(
        id=row[0],
        uid=row[1],
        recurrence_id=row[2],
        client_id=ClientId(row[3]),
        start=start,
        end=end,
        cancelled=bool(row[6]),
        cancelled_at=_dt(row[7]),
        no_show=bool(row[8]),
        arrived=bool(row[9]),
        created=_dt(row[10]),
        item=row[11],
        source=row[12],
    )


class _Corrupt(sqlite3.DatabaseError):
    """The integrity check failed."""


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """True only for a file that is not a database or whose contents are damaged."""
    if isinstance(exc, _Corrupt):
        return True
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or name.startswith("SQLITE_CORRUPT_"):
        return True
    text = str(exc).lower()
    return not name and ("file is not a database" in text or "malformed" in text)


_STATE_FIXES = {
    "locked": "another program holds the database; it is retried next pass (stop any other callsheet "
    "using this state folder)",
    "busy": "another program holds the database; it is retried next pass",
    "full": "the disk is full: free some space",
    "readonly": "the folder or file is read-only: make state_dir writable by the user running callsheet",
    "perm": "permission denied: make state_dir writable by the user running callsheet",
    "cantopen": "the file cannot be opened: check that state_dir exists, is a folder and is writable",
    "ioerr": "the disk reported an I/O error: check the disk",
}


def unusable(path: Path | None, exc: sqlite3.DatabaseError) -> StateError:
    """A StateError naming the database and the fix (never a move aside)."""
    name = str(getattr(exc, "sqlite_errorname", "")).lower()
    text = str(exc).lower()
    fix = "check the state folder; the database was left in place"
    for word, advice in _STATE_FIXES.items():
        if word in name or word in text:
            fix = advice
            break
    where = str(path) if path is not None else "the state database"
    return StateError(f"the state database {where} cannot be used now ({text or name}): {fix}")


@dataclass(frozen=True, slots=True)
class StoredOccurrence:
    observation: Observation
    busy: bool


class State:
    """One open state database."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None) -> None:
        conn.row_factory = sqlite3.Row  # columns by name; still a sequence for the shared readers
        self.conn = conn
        self.path = path
        self.moved_aside: Path | None = None

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path) -> State:
        """Open (creating and migrating) state_dir/state.db.

        Only a file that is not a database, or fails its integrity check, is renamed to
        state.db.corrupt-<time> and a new one started (`moved_aside` says where the old one
        went). A locked, full, read-only or unreadable database is left exactly where it is.

        Raises:
            StateError: the database cannot be used now (busy, disk full, permissions, I/O);
                the message names the path and what to do.
        """
        secure_dir(state_dir)
        path = state_dir / "state.db"
        moved: Path | None = None
        try:
            state = cls._connect(path)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise unusable(path, exc) from exc
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            moved = path.with_name(f"state.db.corrupt-{stamp}")
            os.replace(path, moved)
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    os.replace(side, moved.with_name(moved.name + suffix))
            try:
                state = cls._connect(path)
            except sqlite3.DatabaseError as again:
                raise unusable(path, again) from again
        state.moved_aside = moved
        return state

    @classmethod
    def _connect(cls, path: Path) -> State:
        if not path.exists():
            _touch_private(path)
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                conn.close()  # before anything is written: a newer callsheet owns this file
                raise StateError(
                    f"state database schema {version} is newer than this callsheet ({SCHEMA_VERSION}): "
                    "upgrade callsheet"
                )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise _Corrupt("quick_check failed")
            state = cls(conn, path)
            state._migrate()
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return state

    @classmethod
    def snapshot(cls, state_dir: Path) -> State:
        """An in-memory copy of the state (or an empty one): for `plan`, which writes nothing."""
        memory = sqlite3.connect(":memory:", isolation_level=None)
        path = state_dir / "state.db"
        if path.exists():
            try:
                source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    source.backup(memory)
                finally:
                    source.close()
            except sqlite3.DatabaseError:
                memory.close()
                memory = sqlite3.connect(":memory:", isolation_level=None)
        state = cls(memory, None)
        state._migrate()
        return state

    def _migrate(self) -> None:
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database schema {version} is newer than this callsheet ({SCHEMA_VERSION}): "
                "upgrade callsheet"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            step = _MIGRATIONS[target]
            with self.transaction():
                if callable(step):
                    step(self.conn)
                else:
                    for statement in step.split(";"):
                        if statement.strip():
                            self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {target}")

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a database error inside it is a StateError, never corruption."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise unusable(self.path, exc) from exc

    # -- cursors ------------------------------------------------------------------------------

    def cursor(self, source: str) -> dict[str, object] | None:
        row = self.conn.execute("SELECT cursor FROM cursors WHERE source = ?", (source,)).fetchone()
        if row is None:
            return None
        value = json.loads(row[0])
        return value if isinstance(value, dict) else None

    def objects(self, source: str) -> set[str]:
        """The ids (worker.object_ids) of the objects (files, hrefs, events) the source held
        after the last pass."""
        rows = self.conn.execute("SELECT item FROM objects WHERE source = ?", (source,))
        return {r[0] for r in rows}

    def aged_out(self, source: str, before: datetime) -> set[str]:
        """Objects whose every remembered occurrence starts before `before`: a listing of a
        later window may leave them out without their having been deleted."""
        rows = self.conn.execute(
            "SELECT item FROM occurrences WHERE source = ? AND item != '' GROUP BY item HAVING MAX(start) < ?",
            (source, _iso(before)),
        )
        return {r[0] for r in rows}

    # -- pass metadata ----------------------------------------------------------------------------

    def meta(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
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
        """Store what a source read returned, and its new cursor, in one transaction.

        A changed object replaces its occurrences inside the window (occurrences before the
        window are history and stay). An occurrence that disappears from an object that is
        still there (an EXDATE) is simply dropped; the occurrences of an object that is gone
        and that had not started yet count as cancelled from `now` (vanished before its start).
        With `exdate_is_cancellation` (a per-source quirk for servers such as Zimbra that store
        a cancelled session as an EXDATE), an occurrence that disappears from an object that is
        still there is treated like one of a vanished object: cancelled from `now` when it had
        not started, kept as it was when it had (history).
        """
        lo, hi = _iso(window_start), _iso(window_end)
        with self.transaction() as db:
            gone = set(removed)
            if complete:
                present = set(changed)
                listed = db.execute("SELECT DISTINCT item FROM occurrences WHERE source = ?", (source,))
                gone |= {r[0] for r in listed if r[0] not in present}
                db.execute("DELETE FROM objects WHERE source = ?", (source,))
            db.executemany("DELETE FROM objects WHERE source = ? AND item = ?", [(source, i) for i in gone])
            db.executemany(
                "INSERT OR IGNORE INTO objects (source, item) VALUES (?, ?)",
                [(source, i) for i in changed if i not in gone],
            )
            # a complete listing also names unchanged objects: they are in `changed` with
            # their occurrences, so nothing else to do for them.
            for item, occurrences in changed.items():
                keep = {o.observation.id for o in occurrences}
                rows = db.execute(
                    "SELECT id FROM occurrences WHERE source = ? AND item = ? AND start >= ? AND start < ?",
                    (source, item, lo, hi),
                ).fetchall()
                drop = [r[0] for r in rows if r[0] not in keep]
                if exdate_is_cancellation:
                    # not started: a cancellation noticed now; started or over: history, as it was
                    db.executemany(
                        """UPDATE occurrences SET cancelled = 1, busy = 0,
                               cancelled_at = COALESCE(cancelled_at, :now),
                               vanished_at = COALESCE(vanished_at, :now)
                           WHERE source = :source AND id = :id AND start > :now""",
                        [{"now": _iso(now), "source": source, "id": i} for i in drop],
                    )
                    drop = []
                db.executemany(
                    "DELETE FROM occurrences WHERE source = ? AND id = ?", [(source, i) for i in drop]
                )
                db.executemany(
                    """INSERT INTO occurrences (source, id, item, uid, rid, client_id, start, end,
                           cancelled, cancelled_at, no_show, arrived, busy, created, vanished_at)
                       VALUES (:source, :id, :item, :uid, :rid, :client_id, :start, :end,
                           :cancelled, :cancelled_at, :no_show, :arrived, :busy, :created, NULL)
                       ON CONFLICT (source, id) DO UPDATE SET item = excluded.item,
                           client_id = excluded.client_id, start = excluded.start, end = excluded.end,
                           cancelled = excluded.cancelled,
                           cancelled_at = CASE
                               WHEN excluded.cancelled = 1 AND occurrences.cancelled = 1
                                    AND occurrences.cancelled_at IS NOT NULL
                                   THEN occurrences.cancelled_at
                               -- booked when we last looked, cancelled now, and the event does
                               -- not say when (no LAST-MODIFIED: the start stands in): we
                               -- noticed it now, which is closer to the truth than its start
                               WHEN excluded.cancelled = 1 AND occurrences.cancelled = 0
                                    AND excluded.cancelled_at = excluded.start
                                   THEN :now
                               ELSE excluded.cancelled_at END,
                           no_show = excluded.no_show, arrived = excluded.arrived,
                           busy = excluded.busy, created = excluded.created, vanished_at = NULL""",
                    [
                        {
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
                            "now": _iso(now),
                        }
                        for o in occurrences
                    ],
                )
            for item in gone:
                db.execute(
                    """UPDATE occurrences SET cancelled = 1, busy = 0,
                           cancelled_at = COALESCE(cancelled_at, :now), vanished_at = COALESCE(vanished_at, :now)
                       WHERE source = :source AND item = :item AND start > :now""",
                    {"now": _iso(now), "source": source, "item": item},
                )
                # what had already happened stays as history; mark it detached from the object
                db.execute("UPDATE occurrences SET item = '' WHERE source = ? AND item = ?", (source, item))
            db.execute(
                """INSERT INTO cursors (source, cursor, updated_at) VALUES (?, ?, ?)
                   ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor,
                       updated_at = excluded.updated_at""",
                (source, json.dumps(cursor, sort_keys=True), _iso(now)),
            )

    def observations(self, clients: Iterable[ClientId]) -> list[Observation]:
        """Every remembered appointment of these clients."""
        wanted = set(clients)
        out = []
        for row in self.conn.execute(
            """SELECT id, uid, rid, client_id, start, end, cancelled, cancelled_at, no_show,
                      arrived, created, item, source
               FROM occurrences WHERE client_id IS NOT NULL"""
        ):
            if row["client_id"] in wanted:
                out.append(observation_of(row))
        return out

    def busy(self, start: datetime, end: datetime) -> list[Busy]:
        """Taken time on the source calendars between start and end."""
        rows = self.conn.execute(
            "SELECT start, end FROM occurrences WHERE busy = 1 AND cancelled = 0 AND end > ? AND start < ?",
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
        rows = self.conn.execute(f"SELECT {RECORD_COLUMNS} FROM reminders")
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
                db.execute("DELETE FROM failures WHERE key = ? AND kind = ?", (key, kind))
            # a None argument leaves the stored value as it is (or '' / 0 for a new record)
            db.execute(
                """INSERT INTO reminders (key, kind, status, ref, etag, payload_hash, start,
                       client_id, reason, note, created_at, updated_at, generation)
                   VALUES (:key, :kind, :status, COALESCE(:ref, ''), COALESCE(:etag, ''),
                           COALESCE(:payload_hash, ''), :start, COALESCE(:client_id, ''),
                           COALESCE(:reason, ''), COALESCE(:note, ''), :now, :now, COALESCE(:generation, 0))
                   ON CONFLICT (key, kind) DO UPDATE SET status = excluded.status,
                       generation = COALESCE(:generation, reminders.generation),
                       ref = COALESCE(:ref, reminders.ref), etag = COALESCE(:etag, reminders.etag),
                       payload_hash = COALESCE(:payload_hash, reminders.payload_hash),
                       start = COALESCE(excluded.start, reminders.start),
                       client_id = COALESCE(:client_id, reminders.client_id),
                       reason = COALESCE(:reason, reminders.reason),
                       note = COALESCE(:note, reminders.note),
                       updated_at = excluded.updated_at""",
                {
                    "key": key,
                    "kind": kind,
                    "status": status,
                    "ref": ref,
                    "etag": etag,
                    "payload_hash": payload_hash,
                    "start": _iso(start),
                    "client_id": client_id,
                    "reason": reason,
                    "note": note,
                    "now": _iso(now),
                    "generation": generation,
                },
            )

    def release_open(self, kind: str, *, now: datetime, note: str) -> int:
        """Mark every open record of `kind` withdrawn: their items are gone without anyone
        handling them (a task list deleted as a whole), so a need still due is written afresh
        under its next generation. Returns how many."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE reminders SET status = 'withdrawn', note = ?, updated_at = ? "
                "WHERE kind = ? AND status = 'open'",
                (note, _iso(now), kind),
            )
            return int(cursor.rowcount)

    def forget_records(self, slots: Iterable[tuple[str, str]]) -> None:
        """Drop the records of items removed on purpose (`purge`)."""
        with self.transaction() as db:
            db.executemany("DELETE FROM reminders WHERE key = ? AND kind = ?", list(slots))
            db.executemany("DELETE FROM failures WHERE key = ? AND kind = ?", list(slots))

    # -- per-item write failures --------------------------------------------------------------------

    def note_failure(
        self, key: str, kind: str, *, generation: int, error: str, permanent: bool, now: datetime
    ) -> None:
        """Remember that writing one item failed (class only, no message: it may quote data)."""
        with self.transaction() as db:
            db.execute(
                """INSERT INTO failures (key, kind, generation, class, permanent, count, first_at, last_at)
                   VALUES (:key, :kind, :generation, :class, :permanent, 1, :now, :now)
                   ON CONFLICT (key, kind) DO UPDATE SET generation = excluded.generation,
                       class = excluded.class, permanent = excluded.permanent,
                       count = failures.count + 1, last_at = excluded.last_at""",
                {
                    "key": key,
                    "kind": kind,
                    "generation": generation,
                    "class": error,
                    "permanent": int(permanent),
                    "now": _iso(now),
                },
            )

    def failures(self) -> dict[tuple[ReminderKey, ItemKind], Failure]:
        out = {}
        for row in self.conn.execute("SELECT * FROM failures"):
            first_at, last_at = _dt(row["first_at"]), _dt(row["last_at"])
            assert first_at is not None and last_at is not None
            out[(ReminderKey(row["key"]), row["kind"])] = Failure(
                generation=row["generation"],
                error=row["class"],
                permanent=bool(row["permanent"]),
                count=row["count"],
                first_at=first_at,
                last_at=last_at,
            )
        return out


@dataclass(frozen=True, slots=True)
class Failure:
    """A write of one item that did not go through: its class, whether the server refused it
    for good (permanent: retried after `PERMANENT_RETRY`), how often, since when."""

    generation: int
    error: str
    permanent: bool
    count: int
    first_at: datetime
    last_at: datetime


# -- the backends ---------------------------------------------------------------------------------

# The tables of one account's state and their columns (the same in both backends, PostgreSQL's
# `account` column aside): `state migrate`, `plan`'s snapshot of a PostgreSQL state and the
# tests copy and compare them.
TABLES: dict[str, tuple[str, ...]] = {
    "cursors": ("source", "cursor", "updated_at"),
    "occurrences": (
        "source",
        "id",
        "item",
        "uid",
        "rid",
        "client_id",
        "start",
        "end",
        "cancelled",
        "cancelled_at",
        "no_show",
        "arrived",
        "busy",
        "created",
        "vanished_at",
    ),
    "reminders": (
        "key",
        "kind",
        "status",
        "ref",
        "etag",
        "payload_hash",
        "start",
        "client_id",
        "reason",
        "note",
        "created_at",
        "updated_at",
        "generation",
    ),
    "objects": ("source", "item"),
    "failures": ("key", "kind", "generation", "class", "permanent", "count", "first_at", "last_at"),
    "meta": ("name", "value"),
}

Rows = dict[str, list[tuple[object, ...]]]


def dump_rows(conn: sqlite3.Connection) -> Rows:
    """Every row of a SQLite state, table by table, sorted (for copies and comparisons)."""
    out: Rows = {}
    for table, columns in TABLES.items():
        names = ", ".join(f'"{c}"' for c in columns)
        out[table] = sorted((tuple(r) for r in conn.execute(f"SELECT {names} FROM {table}")), key=repr)
    return out


def load_rows(state: State, tables: Mapping[str, Iterable[tuple[object, ...]]]) -> None:
    """Replace the rows of a SQLite state with these, in one transaction."""
    with state.transaction() as db:
        for table in TABLES:
            db.execute(f"DELETE FROM {table}")
        for table, rows in tables.items():
            columns = TABLES[table]
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" for _ in columns)
            db.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(rows))


class Store(Protocol):
    """What a pass needs of its state, whichever backend holds it (State: SQLite in state_dir;
    worker.state_pg.PgState: PostgreSQL when `state_url` is set)."""

    moved_aside: Path | None

    def close(self) -> None: ...
    def cursor(self, source: str) -> dict[str, object] | None: ...
    def objects(self, source: str) -> set[str]: ...
    def aged_out(self, source: str, before: datetime) -> set[str]: ...
    def meta(self, name: str) -> str | None: ...
    def set_meta(self, name: str, value: str) -> None: ...
    def last_pass(self) -> datetime | None: ...
    def note_pass(self, now: datetime) -> None: ...
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
    ) -> None: ...
    def observations(self, clients: Iterable[ClientId]) -> list[Observation]: ...
    def busy(self, start: datetime, end: datetime) -> list[Busy]: ...
    def records(self) -> dict[tuple[ReminderKey, ItemKind], Record]: ...
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
    ) -> None: ...
    def release_open(self, kind: str, *, now: datetime, note: str) -> int: ...
    def forget_records(self, slots: Iterable[tuple[str, str]]) -> None: ...
    def note_failure(
        self, key: str, kind: str, *, generation: int, error: str, permanent: bool, now: datetime
    ) -> None: ...
    def failures(self) -> dict[tuple[ReminderKey, ItemKind], Failure]: ...


class _StateConfig(Protocol):
    @property
    def state_dir(self) -> Path: ...
    @property
    def state_url(self) -> str: ...
    @property
    def state_password_env(self) -> str | None: ...


def account_of(settings: _StateConfig) -> str:
    """The account whose rows a PostgreSQL state uses ("default" for a single-calendar config)."""
    return str(getattr(settings, "account", "") or "default")


def open_state(settings: _StateConfig) -> Store:
    """The state a pass writes: PostgreSQL when `state_url` is set, else state_dir/state.db."""
    if settings.state_url:
        from worker.state_pg import PgState  # psycopg is imported only by those who use it

        return PgState.open(settings.state_url, account_of(settings), settings.state_password_env)
    return State.open(settings.state_dir)


def snapshot_state(settings: _StateConfig) -> Store:
    """An in-memory SQLite copy of the state, for `plan` (which writes nothing, to either backend)."""
    if not settings.state_url:
        return State.snapshot(settings.state_dir)
    from worker import state_pg

    rows = state_pg.read_account(settings.state_url, account_of(settings), settings.state_password_env)
    state = State(sqlite3.connect(":memory:", isolation_level=None), None)
    state._migrate()
    load_rows(state, rows)
    return state


def lock_for(settings: _StateConfig) -> contextlib.AbstractContextManager[None]:
    """The run lock of one pass: the account's advisory lock in PostgreSQL, else state_dir/run.lock.

    Raises (on entry):
        LockedError: another pass of this account holds it.
    """
    if settings.state_url:
        from worker.state_pg import run_lock as pg_lock

        return pg_lock(settings.state_url, account_of(settings), settings.state_password_env)
    return run_lock(settings.state_dir)
