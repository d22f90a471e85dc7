"""The object-id migration as a property, on SQLite and PostgreSQL: whatever a state of the previous
schema holds, every row stays (tombstones and records untouched), only the object names become ids,
and what the source-loss guard counts (objects, aged-out objects) is unchanged."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import PgServer
from worker import state as state_mod
from worker import state_pg
from worker.object_ids import VDIR_CURSOR, object_id, unpack_stamps
from worker.state import TABLES, Rows, State, dump_rows, load_rows, upgrade_object_rows

SOURCES = ("practice", "second")
BEFORE = datetime(2026, 3, 1, tzinfo=UTC)
# what a file name may be (PostgreSQL text holds no NUL and no lone surrogate)
NAME = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=24
)
STATUS = st.sampled_from(["open", "tombstone", "withdrawn", "failed", "handled"])


@st.composite
def legacy_states(draw: st.DrawFn) -> Rows:
    """Rows of a state as the previous schema wrote them: object names, a vdir cursor by name."""
    names = draw(st.lists(NAME.map(lambda n: f"{n}.ics"), unique=True, max_size=8))
    occurrences = []
    for n in range(draw(st.integers(0, 14))):
        source = draw(st.sampled_from(SOURCES))
        item = draw(st.sampled_from([*names, ""])) if names else ""
        start = BEFORE + timedelta(days=draw(st.integers(-40, 40)))
        cancelled = draw(st.booleans())
        vanished = (start - timedelta(days=1)).isoformat() if cancelled and draw(st.booleans()) else None
        occurrences.append(
            (source, f"uid-{n}|", item, f"uid-{n}", "", draw(st.sampled_from(["c001", "c002", None])),
             start.isoformat(), (start + timedelta(minutes=50)).isoformat(), int(cancelled),
             vanished, 0, 0, int(not cancelled), None, vanished)
        )  # fmt: skip
    objects = sorted({(s, i) for s, _, i, *_ in occurrences if i} | {(SOURCES[0], n) for n in names[:2]})
    reminders = [
        (f"k{n:02d}", kind, draw(STATUS), f"ref-{n}", "", "", None, "c001", "late", "", "t", "t", n % 3)
        for n in range(draw(st.integers(0, 6)))
        for kind in ("event", "task")
    ]
    cursors = [
        (
            source,
            json.dumps(
                {"files": {n: [1, 2] for n in names}, "revisit": names[:1], "window": ["a", "b"]},
                sort_keys=True,
            ),
            "t",
        )
        for source in SOURCES[: draw(st.integers(0, 2))]
    ]
    meta = [("last_pass_at", BEFORE.isoformat())]
    failures = [("k00", "event", 1, "RefusedError", 1, 2, "t", "t")] if reminders else []
    return {
        "cursors": cursors,
        "occurrences": occurrences,
        "reminders": reminders,
        "objects": objects,
        "failures": failures,
        "meta": meta,
    }


def _guard_counts(state: State | state_pg.PgState) -> dict[str, tuple[int, int]]:
    """What the source-loss guard counts per source: the objects held, and those aged out."""
    return {s: (len(state.objects(s)), len(state.aged_out(s, BEFORE))) for s in SOURCES}


def _expected_counts(rows: Rows) -> dict[str, tuple[int, int]]:
    """The same counts, worked out from the old rows themselves."""
    latest: dict[tuple[str, str], str] = {}
    for source, _, item, _, _, _, start, *_ in rows["occurrences"]:
        if item:
            latest[(str(source), str(item))] = max(str(start), latest.get((str(source), str(item)), ""))
    return {
        s: (
            sum(1 for source, _ in rows["objects"] if source == s),
            sum(1 for (source, _), start in latest.items() if source == s and start < BEFORE.isoformat()),
        )
        for s in SOURCES
    }


def _check(old: Rows, new: Rows) -> None:
    """Every row kept; only the names changed, each to its id; no name left anywhere."""
    assert Counter({t: len(r) for t, r in old.items()}) == Counter({t: len(r) for t, r in new.items()})
    for table in ("reminders", "failures", "meta"):
        assert sorted(new[table], key=repr) == sorted(old[table], key=repr)
    assert [r for r in new["reminders"] if r[2] == "tombstone"] == [
        r for r in old["reminders"] if r[2] == "tombstone"
    ]
    item = TABLES["occurrences"].index("item")
    mapped = sorted(
        ((*r[:item], object_id(str(r[item])), *r[item + 1 :]) for r in old["occurrences"]), key=repr
    )
    assert sorted(new["occurrences"], key=repr) == mapped
    assert sorted(new["objects"]) == sorted((s, object_id(str(i))) for s, i in old["objects"])
    for (_, text, _), (_, was, _) in zip(sorted(new["cursors"]), sorted(old["cursors"]), strict=True):
        cursor, before = json.loads(str(text)), json.loads(str(was))
        assert cursor["v"] == VDIR_CURSOR
        assert unpack_stamps(cursor["files"]) == {
            object_id(n): f"{s[0]}/{s[1]}" for n, s in before["files"].items()
        }
        assert cursor["revisit"] == sorted(object_id(n) for n in before["revisit"])
    assert sorted(upgrade_object_rows(old)["occurrences"], key=repr) == mapped  # `plan`'s in-memory upgrade


def _sqlite_legacy(rows: Rows) -> State:
    """An in-memory SQLite state at schema 2 holding `rows`."""
    state = State(sqlite3.connect(":memory:", isolation_level=None), None)
    for version in (1, 2):
        step = state_mod._MIGRATIONS[version]
        assert isinstance(step, str)
        for statement in step.split(";"):
            if statement.strip():
                state.conn.execute(statement)
    state.conn.execute("PRAGMA user_version = 2")
    load_rows(state, rows)
    return state


@settings(max_examples=60, deadline=None)
@given(legacy_states())
def test_sqlite_migration_keeps_every_row_and_count(rows: Rows) -> None:
    """SQLite schema 2 -> 3 keeps every row and tombstone, maps each name to its id, keeps the guard's counts."""
    state = _sqlite_legacy(rows)
    try:
        assert _guard_counts(state) == _expected_counts(rows)
        state._migrate()
        assert state.conn.execute("PRAGMA user_version").fetchone()[0] == state_mod.SCHEMA_VERSION
        _check(rows, dump_rows(state.conn))
        assert _guard_counts(state) == _expected_counts(rows)
    finally:
        state.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(legacy_states())
def test_postgres_migration_keeps_every_row_and_count(pg_server: PgServer, rows: Rows) -> None:
    """PostgreSQL schema 1 -> 2 does the same, for every account of the database at once."""
    url = pg_server.database()
    conn = state_pg.connect(url)
    try:
        conn.execute("CREATE TABLE callsheet_schema (version INTEGER NOT NULL)")
        step = state_pg._MIGRATIONS[1]
        assert isinstance(step, str)
        for statement in step.split(";"):
            if statement.strip():
                conn.execute(statement.encode())
        conn.execute("INSERT INTO callsheet_schema VALUES (1)")
        state_pg.load(conn, "one", rows)
        state_pg.load(conn, "two", rows)
    finally:
        conn.close()
    one = state_pg.PgState.open(url, "one")  # migrates
    two = state_pg.PgState.open(url, "two")
    try:
        for state in (one, two):
            _check(rows, state_pg.dump(state.conn, state.account))
            assert _guard_counts(state) == _expected_counts(rows)
    finally:
        one.close()
        two.close()
