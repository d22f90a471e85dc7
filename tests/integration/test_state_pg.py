"""The PostgreSQL state backend on a real server: schema versions, the advisory run lock, `plan`
writing nothing, and `state migrate` keeping every row (tombstones included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.integration.conftest import PgServer
from tests.integration.state_backends import statuses
from tests.practice import Practice, local, vevent
from worker import state_pg
from worker.cli import main
from worker.config import load_settings
from worker.errors import ConfigError, LockedError, StateError
from worker.state import State, dump_rows

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-03-11T12:00:00-05:00"
LATER = "2026-03-12T12:00:00-05:00"


def _setup(practice: Practice) -> None:
    practice.add("avery-last", vevent("avery-last", "Avery Quinn", local("2026-03-03 10:00")))
    practice.add(
        "cameron-missed", vevent("cameron-missed", "Cameron Tate no show", local("2026-03-09 14:00"))
    )
    practice.add("cameron-next", vevent("cameron-next", "Cameron Tate", local("2026-03-16 14:00")))


def _run(practice: Practice, now: str = NOW) -> int:
    return main(["--config", str(practice.config), "run", "--once", "--now", now])


def _outputs(practice: Practice) -> dict[str, bytes]:
    out = practice.root / "out"
    return (
        {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.ics"))} if out.exists() else {}
    )


def _with_tombstone(practice: Practice) -> None:
    """Two passes; between them the therapist completes one task, which becomes a tombstone."""
    _setup(practice)
    assert _run(practice) == 0
    (task,) = [p for p in practice.tasks_dir.glob("*.ics") if b"STATUS:NEEDS-ACTION" in p.read_bytes()][:1]
    task.write_bytes(task.read_bytes().replace(b"STATUS:NEEDS-ACTION", b"STATUS:COMPLETED"))
    assert _run(practice, LATER) == 0
    assert "tombstone" in statuses(load_settings(practice.config)).values()


def test_new_schema_is_versioned(pg_server: PgServer) -> None:
    """Opening an empty database creates the tables and records the current schema version."""
    url = pg_server.database()
    state = state_pg.PgState.open(url)
    state.close()
    with psycopg.connect(url) as conn:
        assert state_pg.schema_version(conn) == state_pg.SCHEMA_VERSION


def test_newer_schema_is_refused_before_writing(pg_server: PgServer) -> None:
    """A database at a newer schema is refused with a clear message and nothing is written to it."""
    url = pg_server.database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE callsheet_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO callsheet_schema VALUES (%s)", (state_pg.SCHEMA_VERSION + 1,))
    with pytest.raises(StateError, match="newer than this callsheet"):
        state_pg.PgState.open(url)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('reminders')").fetchone() == (None,)


def test_accounts_do_not_see_each_other(pg_server: PgServer) -> None:
    """Two accounts in one schema: each reads only its own rows."""
    url = pg_server.database()
    now = local("2026-03-11 12:00")
    one, two = state_pg.PgState.open(url, "one"), state_pg.PgState.open(url, "two")
    try:
        one.save_record("k1", "event", status="tombstone", now=now, generation=1)
        one.set_meta("last_pass_at", "x")
        assert list(one.records()) == [("k1", "event")] and two.records() == {}
        assert two.meta("last_pass_at") is None
    finally:
        one.close()
        two.close()


def test_a_password_in_the_url_is_refused(practice: Practice) -> None:
    """state_url with a password inline is a config error that points at state_password_env."""
    practice.state_url = "postgresql://me:secret@127.0.0.1/db"
    practice.write_config()
    with pytest.raises(ConfigError, match="state_password_env"):
        load_settings(practice.config)


def test_plan_on_postgres_writes_nothing(pg_server: PgServer, tmp_path: Path) -> None:
    """plan against an empty PostgreSQL database creates no table and no reminder."""
    url = pg_server.database()
    practice = Practice(tmp_path / "p", state_url=url)
    _setup(practice)
    assert main(["--config", str(practice.config), "plan", "--json", "--now", NOW]) == 0
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('callsheet_schema')").fetchone() == (None,)
    assert _outputs(practice) == {}


def test_advisory_lock_excludes_a_second_pass(pg_server: PgServer, tmp_path: Path) -> None:
    """While another process holds the account's advisory lock a pass skips, writing nothing; another
    account is not held up; once the holder is SIGKILLed the lock is free again."""
    url = pg_server.database()
    practice = Practice(tmp_path / "p", state_url=url)
    _setup(practice)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import time; from worker.state_pg import run_lock\n"
                f"with run_lock({url!r}, 'default'):\n"
                "    print('locked', flush=True); time.sleep(60)\n"
            ),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError), state_pg.run_lock(url, "default"):  # on a connection of its own
            pass
        with state_pg.run_lock(url, "another-account"):
            pass
        assert _run(practice) == 0  # "another pass is running": exit 0, nothing done
        assert _outputs(practice) == {}
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()
    assert _run(practice) == 0  # the server let go of a dead holder's lock
    assert len(_outputs(practice)) == 4


def test_two_passes_at_once_on_postgres_one_skips(pg_server: PgServer, tmp_path: Path) -> None:
    """Two `run --once` processes on one account at once: never both pass; the result has no duplicate."""
    practice = Practice(tmp_path / "p", state_url=pg_server.database())
    _setup(practice)
    cmd = [
        sys.executable,
        "-m",
        "worker.cli",
        "--config",
        str(practice.config),
        "run",
        "--once",
        "--now",
        NOW,
    ]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    wrote = sum("4 reminders written" in out for out, _err in outs)
    skipped = sum("another pass is running" in err for _out, err in outs)
    assert wrote >= 1 and wrote + skipped + sum("0 reminders written" in o for o, _e in outs) == 3
    assert len(_outputs(practice)) == 4


def test_migrate_keeps_every_row_and_tombstone(
    pg_server: PgServer, practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """`state migrate` copies every table row for row (the tombstone too); a pass on PostgreSQL then
    changes nothing; running it again is a no-op; another account's state is refused without --replace."""
    _with_tombstone(practice)
    settings = load_settings(practice.config)
    source = State.open(settings.state_dir)
    try:
        rows = dump_rows(source.conn)
    finally:
        source.close()
    assert all(rows[t] for t in ("cursors", "occurrences", "reminders", "objects", "meta"))
    url = pg_server.database()
    migrate = ["state", "migrate", "--from", f"sqlite:{settings.state_dir}", "--to", url]
    assert main(migrate) == 0
    with psycopg.connect(url) as conn:
        assert state_pg.dump(conn, "default") == rows
    assert main(migrate) == 0  # idempotent
    assert "nothing to do" in capsys.readouterr().out
    before = _outputs(practice)
    before_statuses = statuses(settings)
    practice.state_url = url
    practice.write_config()
    assert _run(practice, LATER) == 0
    assert _outputs(practice) == before  # the tombstone held: the completed task was not written again
    assert statuses(load_settings(practice.config)) == before_statuses
    # the account now differs from the SQLite file (this pass noted itself): refused, then replaced
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = 'changed' WHERE account = 'default' AND name = 'last_pass_at'")
    capsys.readouterr()
    assert main(migrate) == 2
    assert "--replace" in capsys.readouterr().err
    assert main([*migrate, "--replace"]) == 0
    with psycopg.connect(url) as conn:
        assert state_pg.dump(conn, "default") == rows


def test_migrate_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing source folder or a URL with a password: exit 2, one line, nothing created."""
    missing = tmp_path / "nowhere"
    assert main(["state", "migrate", "--from", f"sqlite:{missing}", "--to", "postgresql://127.0.0.1/x"]) == 2
    assert not missing.exists()
    assert (
        main(["state", "migrate", "--from", f"sqlite:{tmp_path}", "--to", "postgresql://u:pw@127.0.0.1/x"])
        == 2
    )
    err = capsys.readouterr().err
    assert "does not exist" in err and "pw" not in err.replace("password", "")


def test_status_reads_postgres(
    pg_server: PgServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status --json` after a pass on PostgreSQL shows the clients the pass saw."""
    practice = Practice(tmp_path / "p", state_url=pg_server.database())
    _setup(practice)
    assert _run(practice) == 0
    capsys.readouterr()
    assert main(["--config", str(practice.config), "status", "--json", "--now", NOW]) == 0
    out = capsys.readouterr().out
    assert out.strip() and json.loads(out.splitlines()[0])


def test_check_reaches_the_state_database(
    pg_server: PgServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` says the PostgreSQL state is reachable, and fails naming the server (not a password)
    when nothing listens there."""
    from tests.servers import free_port

    practice = Practice(tmp_path / "p", state_url=pg_server.database())
    _setup(practice)
    capsys.readouterr()
    assert main(["--config", str(practice.config), "check"]) == 0
    assert "[ok] state database (state_url) reachable" in capsys.readouterr().out
    practice.state_url = f"postgresql://callsheet@127.0.0.1:{free_port()}/callsheet"
    practice.write_config()
    assert main(["--config", str(practice.config), "check"]) == 1
    out = capsys.readouterr().out
    assert "[!!] the state database postgresql://127.0.0.1:" in out and "start PostgreSQL" in out


def test_password_comes_from_state_password_env(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A role that needs a password passes with state_password_env set, and fails (exit 1, the
    variable named, no password shown) without it."""
    from tests.integration.conftest import PG_SECRET_PASSWORD, PG_SECRET_ROLE

    url = pg_server.database().replace("//callsheet@", f"//{PG_SECRET_ROLE}@")
    practice = Practice(tmp_path / "p", state_url=url)
    _setup(practice)
    practice.config.write_text(
        practice.config.read_text().replace("state_url =", 'state_password_env = "CS_DB_PW"\nstate_url =')
    )
    monkeypatch.delenv("PGPASSWORD", raising=False)
    capsys.readouterr()
    assert _run(practice) == 1
    err = capsys.readouterr().err
    assert "CS_DB_PW" in err and PG_SECRET_PASSWORD not in err
    monkeypatch.setenv("CS_DB_PW", PG_SECRET_PASSWORD)
    assert _run(practice) == 0
    assert len(_outputs(practice)) == 4
    monkeypatch.setenv("CS_DB_PW", "wrong")
    state_pg.close_pools()
    assert _run(practice) == 1
    assert "wrong" not in capsys.readouterr().err.replace("wrong password", "")


def test_database_connections_cut_mid_pass(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server drops every callsheet connection after the second reminder lands: the pass fails
    (exit 1, the database named), and the next pass, on fresh pooled connections, adopts what
    landed: one file per need, records consistent with the folder; idle pooled connections
    dropped between passes are replaced."""
    import connectors.vdir as vdir

    url = pg_server.database()
    practice = Practice(tmp_path / "p", state_url=url)
    _setup(practice)
    original = vdir._write_atomic
    landed = 0

    def write(path: Path, data: bytes, *, exclusive: bool) -> None:
        nonlocal landed
        original(path, data, exclusive=exclusive)
        landed += 1
        if landed == 2:
            with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND datname = 'postgres'"
                )

    monkeypatch.setattr(vdir, "_write_atomic", write)
    capsys.readouterr()
    assert _run(practice) == 1
    assert "the state database postgresql://127.0.0.1:" in capsys.readouterr().err
    assert len(_outputs(practice)) == 2
    monkeypatch.setattr(vdir, "_write_atomic", original)
    assert _run(practice) == 0
    assert _run(practice) == 0
    assert len(_outputs(practice)) == 4
    settings = load_settings(practice.config)
    assert sorted(statuses(settings).values()) == ["open"] * 4
    # the server drops the idle pooled connections between passes (a restart): the next pass
    # gets a fresh one instead of failing
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = 'postgres'"
        )
    assert _run(practice) == 0


def test_a_sqlite_pass_never_imports_psycopg(practice: Practice) -> None:
    """A config without state_url runs a pass without importing psycopg (start-up time)."""
    _setup(practice)
    code = (
        "import sys\nfrom worker.cli import main\n"
        f"code = main(['--config', {str(practice.config)!r}, 'run', '--once', '--now', {NOW!r}])\n"
        "print(code, 'psycopg' in sys.modules, 'worker.state_pg' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.splitlines()[-1].split() == ["0", "False", "False"]


def test_purge_forgets_the_records_in_postgres(pg_server: PgServer, tmp_path: Path) -> None:
    """`purge --yes` on a PostgreSQL state removes our items and forgets their records there."""
    practice = Practice(tmp_path / "p", state_url=pg_server.database())
    _setup(practice)
    assert _run(practice) == 0
    settings = load_settings(practice.config)
    assert len(statuses(settings)) == 4
    assert main(["--config", str(practice.config), "purge", "--yes"]) == 0
    assert _outputs(practice) == {} and statuses(settings) == {}
