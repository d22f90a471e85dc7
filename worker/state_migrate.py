"""`callsheet state migrate --from sqlite:PATH --to postgresql://…`: move one account's state from
a SQLite state folder into PostgreSQL, every table and row (tombstones included), in one
transaction, under both run locks (no pass of the account runs meanwhile).

Running it again is harmless: a target that already holds exactly these rows is left alone.
A target account holding anything else is refused unless `--replace`.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from worker.output import EXIT_CONFIG, EXIT_OK
from worker.state import SCHEMA_VERSION, TABLES, Rows, State, dump_rows, run_lock


def _fail(message: str) -> int:
    print(f"callsheet: {message}", file=sys.stderr)
    return EXIT_CONFIG


def read_sqlite(folder: Path) -> Rows:
    """Every row of the SQLite state in `folder`, read-only (migrated forward in memory only).

    Raises:
        ValueError: there is no usable state.db there (the message says why).
    """
    path = folder / "state.db"
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = int(source.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise ValueError(f"{path} has schema {version}, newer than this callsheet ({SCHEMA_VERSION})")
            check = source.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise ValueError(f"{path} fails its integrity check")
            memory = sqlite3.connect(":memory:", isolation_level=None)
            source.backup(memory)
        finally:
            source.close()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path} cannot be read ({exc})") from exc
    state = State(memory, None)
    try:
        state._migrate()
        return dump_rows(memory)
    finally:
        state.close()


def migrate(source: str, target: str, *, account: str, replace: bool, password_env: str | None) -> int:
    """Copy the SQLite state named by `source` ("sqlite:PATH", PATH the state folder or its
    state.db) into `target`'s rows for `account`. Exit 0 when the target holds the source's
    rows afterwards (copied now or before), 2 for bad arguments or a refused non-empty target."""
    from worker.config import check_state_url

    if not source.startswith("sqlite:"):
        return _fail('--from must be "sqlite:PATH" (the state folder, or its state.db)')
    folder = Path(source.removeprefix("sqlite:")).expanduser()
    if folder.name == "state.db":
        folder = folder.parent
    try:
        check_state_url(target)
    except ValueError as exc:
        return _fail(f"--to {exc}")
    if not target:
        return _fail('--to must be a "postgresql://" URL')
    if not (folder / "state.db").is_file():
        return _fail(f"--from: {folder / 'state.db'} does not exist")
    import psycopg

    from worker import state_pg

    with run_lock(folder), state_pg.run_lock(target, account, password_env):
        try:
            rows = read_sqlite(folder)
        except ValueError as exc:
            return _fail(f"--from: {exc}")
        conn = state_pg.connect(target, password_env)
        try:
            state_pg.migrate(conn, target)
            before = state_pg.dump(conn, account)
            if before == rows:
                print(f"account {account!r} already holds this state ({_counts(rows)}); nothing to do.")
                return EXIT_OK
            if any(before.values()) and not replace:
                return _fail(
                    f"account {account!r} in {state_pg.where(target)} already holds other state "
                    f"({_counts(before)}); nothing was changed. Add --replace to overwrite it."
                )
            state_pg.load(conn, account, rows)
            after = state_pg.dump(conn, account)
        except psycopg.Error as exc:
            raise state_pg.unusable(target, exc) from exc
        finally:
            conn.close()
    if after != rows:  # pragma: no cover - the copy is one transaction; this is the receipt
        return _fail("the copy does not match the source; the target was left as written, check it")
    print(
        f"moved the state of {folder} into account {account!r} of {state_pg.where(target)}: {_counts(rows)}."
    )
    print(f'Set state_url = "{target}" in the config; {folder / "state.db"} is no longer used.')
    return EXIT_OK


def _counts(rows: Rows) -> str:
    return ", ".join(f"{len(rows.get(table, []))} {table}" for table in TABLES)
