"""Object ids in the state (worker.object_ids): no file name, href or event id in any table, on
either backend, and a state written before them migrates without a cold re-read, a lost
tombstone or a tripped source-loss guard."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.state_backends import statuses
from tests.practice import Practice, local, vevent
from worker.cli import main
from worker.config import load_settings
from worker.object_ids import object_id, unpack_stamps
from worker.state import TABLES, Rows, State, account_of, dump_rows, load_rows, open_state

pytestmark = pytest.mark.state_backends

NOW = "2026-03-11T12:00:00-05:00"
LATER = "2026-03-12T12:00:00-05:00"
# file names that name the client, as a therapist's own export may; UIDs that do not
FILES = {
    "Avery Quinn 2026-03-03": vevent("avery-last", "Avery Quinn", local("2026-03-03 10:00")),
    "Cameron Tate missed": vevent("cameron-missed", "Cameron Tate no show", local("2026-03-09 14:00")),
    "Cameron Tate next": vevent("cameron-next", "Cameron Tate", local("2026-03-16 14:00")),
}
UIDS = ("avery-last", "cameron-missed", "cameron-next")
# the columns that keep the appointment's UID: the reminder key and `plan --json` "anchor" are
# made from it (docs/design.md "Reminder keys")
UID_COLUMNS = {("occurrences", "id"), ("occurrences", "uid")}


def _run(practice: Practice, now: str = NOW) -> int:
    return main(["--config", str(practice.config), "run", "--once", "--now", now])


def _practice(practice: Practice) -> None:
    for name, component in FILES.items():
        practice.add(name, component)


def _text_cells(practice: Practice) -> Iterator[tuple[str, str, str]]:
    """(table, column, value) of every text cell of every table of the practice's state."""
    settings = load_settings(practice.config)
    if not settings.state_url:
        db = sqlite3.connect(settings.state_dir / "state.db")
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
                for row in db.execute(f"SELECT * FROM {table}"):
                    for column, value in zip(columns, row, strict=True):
                        if isinstance(value, str):
                            yield table, column, value
        finally:
            db.close()
        return
    import psycopg

    with psycopg.connect(settings.state_url) as conn:
        found = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = 'text'"
        ).fetchall()
        for table, column in found:
            for (value,) in conn.execute(f'SELECT "{column}" FROM {table}'.encode()):
                if isinstance(value, str):
                    yield table, column, value


def test_no_table_holds_a_source_file_name(practice: Practice) -> None:
    """After passes (one with a deletion), no text cell of any table holds a file name or a client's
    name, and the UIDs sit only where the reminder-key contract needs them."""
    _practice(practice)
    assert _run(practice) == 0
    practice.remove("Cameron Tate next")
    assert _run(practice, LATER) == 0
    cells = list(_text_cells(practice))
    assert any(table == "cursors" for table, _, _ in cells) and any(t == "objects" for t, _, _ in cells)
    names = [*FILES, *(f"{n}.ics" for n in FILES), "Avery Quinn", "Cameron Tate"]
    assert [(t, c) for t, c, v in cells if any(n in v for n in names)] == []
    assert {(t, c) for t, c, v in cells if any(u in v for u in UIDS)} <= UID_COLUMNS


# -- the state as schema 2 (SQLite) / 1 (PostgreSQL) wrote it ---------------------------------------


def _legacy_cursor(cursor: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The vdir cursor in the shape callsheet wrote before object ids (file names as keys)."""
    assert cursor["v"] == 2
    return {
        "files": {
            names[i]: [int(n) for n in stamp.split("/")]
            for i, stamp in unpack_stamps(cursor["files"]).items()
        },
        "revisit": sorted(names[i] for i in cursor["revisit"]),
        "window": cursor["window"],
    }


def legacy_rows(rows: Rows, names: dict[str, str]) -> Rows:
    """The rows with every object id turned back into the file name it stands for."""
    item = TABLES["occurrences"].index("item")
    out = dict(rows)
    out["occurrences"] = [
        (*r[:item], names.get(str(r[item]), r[item]), *r[item + 1 :]) for r in rows["occurrences"]
    ]
    out["objects"] = [(source, names[str(i)]) for source, i in rows["objects"]]
    out["cursors"] = [
        (source, json.dumps(_legacy_cursor(json.loads(str(cursor)), names), sort_keys=True), at)
        for source, cursor, at in rows["cursors"]
    ]
    return {table: sorted(values, key=repr) for table, values in out.items()}  # as dumps sort them


def _dump(practice: Practice) -> Rows:
    settings = load_settings(practice.config)
    if not settings.state_url:
        db = sqlite3.connect(settings.state_dir / "state.db")
        try:
            return dump_rows(db)
        finally:
            db.close()
    from worker import state_pg

    return state_pg.read_account(settings.state_url, account_of(settings))


def _write_legacy(practice: Practice, rows: Rows) -> None:
    """Store `rows` as the previous schema holds them (SQLite user_version 2, PostgreSQL 1)."""
    settings = load_settings(practice.config)
    if not settings.state_url:
        state = State.open(settings.state_dir)
        try:
            load_rows(state, rows)
            state.conn.execute("PRAGMA user_version = 2")
        finally:
            state.close()
        return
    from worker import state_pg

    conn = state_pg.connect(settings.state_url)
    try:
        state_pg.load(conn, account_of(settings), rows)
        conn.execute("UPDATE callsheet_schema SET version = %s", (state_pg.OBJECT_IDS_VERSION - 1,))
    finally:
        conn.close()


def test_old_state_migrates_and_the_next_pass_reads_nothing_again(
    practice: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state written before object ids (names in rows and cursor, a tombstone) migrates to exactly
    what a pass now writes; the next pass reads no file again and trips no guard."""
    _practice(practice)
    assert _run(practice) == 0
    practice.remove("Cameron Tate next")
    assert _run(practice) == 0
    (task,) = [p for p in practice.tasks_dir.glob("*.ics") if b"STATUS:NEEDS-ACTION" in p.read_bytes()][:1]
    task.write_bytes(task.read_bytes().replace(b"STATUS:NEEDS-ACTION", b"STATUS:COMPLETED"))
    assert _run(practice) == 0
    before = statuses(load_settings(practice.config))
    assert "tombstone" in before.values()
    now_written = _dump(practice)
    names = {object_id(f"{n}.ics"): f"{n}.ics" for n in FILES}
    old = legacy_rows(now_written, names)
    assert any(names[i] in json.dumps(old) for i in names)  # the old shape really spells the names
    _write_legacy(practice, old)
    settings = load_settings(practice.config)
    state = open_state(settings)  # migrates
    state.close()
    assert _dump(practice) == now_written
    reads: list[Path] = []
    import connectors.vdir as vdir

    real = vdir.read_regular
    monkeypatch.setattr(vdir, "read_regular", lambda path, *a: reads.append(path) or real(path, *a))
    assert _run(practice) == 0
    assert [p for p in reads if Path(p).parent == practice.calendar] == []  # not a cold re-read
    assert statuses(settings) == before


def test_plan_reads_a_state_no_pass_has_migrated(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan` on a state of the previous schema plans what it planned before (its snapshot upgrades
    the rows in memory), and writes nothing."""
    _practice(practice)
    assert _run(practice) == 0
    capsys.readouterr()
    assert main(["--config", str(practice.config), "plan", "--json", "--now", NOW]) == 0
    expected = capsys.readouterr().out
    names = {object_id(f"{n}.ics"): f"{n}.ics" for n in FILES}
    old = legacy_rows(_dump(practice), names)
    _write_legacy(practice, old)
    assert main(["--config", str(practice.config), "plan", "--json", "--now", NOW]) == 0
    assert capsys.readouterr().out == expected
    settings = load_settings(practice.config)
    if not settings.state_url:
        db = sqlite3.connect(settings.state_dir / "state.db")
        try:
            assert db.execute("PRAGMA user_version").fetchone()[0] == 2
            assert dump_rows(db) == old
        finally:
            db.close()
    else:
        from worker import state_pg

        conn = state_pg.connect(settings.state_url)
        try:
            assert state_pg.schema_version(conn) == state_pg.OBJECT_IDS_VERSION - 1
            assert state_pg.dump(conn, account_of(settings)) == old
        finally:
            conn.close()
