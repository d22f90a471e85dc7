"""Account configs and encrypted secrets in the PostgreSQL state database (`accounts_from =
"database"`, worker/accounts_db.py) on a real PostgreSQL (conftest `pg_server`): put, list and
remove; secrets that round-trip, never sit in the database or a log in plain text, refuse a
wrong key and survive a key rotation; a running worker that sees a new account without a
restart; a CalDAV pass whose password is a stored secret, against a Radicale that asks for it."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from tests.fakes.google import FakeGoogle
from tests.fakes.google.practice import SAMPLE_NOW, google_practice
from tests.integration.conftest import PASSWORD, USERNAME, DavServer, PgServer
from tests.practice import TZ, TZ_NAME, local, roster_toml, vcalendar, vevent
from tests.scenarios.test_group_practice import CLIENTS
from worker import accounts_db, runner
from worker.accounts_db import KEY_ENV, Database, Keys
from worker.cli import main
from worker.config import load_accounts
from worker.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
NOW = "2026-03-09T09:00:00"
DAV_SECRET = "caldav"


def main_config(root: Path, url: str, every: str = "2s", level: str = "info") -> Path:
    """The main config of a fleet whose accounts live in the database."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.toml"
    config.write_text(
        f'state_dir = "var"\nstate_url = "{url}"\naccounts_from = "database"\n\n'
        f'[run]\nevery = "{every}"\nlog_level = "{level}"\n\n'
        f'[practice]\ntimezone = "{TZ_NAME}"\ntherapist_name = "Group"\ncallback_number = "+1 555 0100"\n',
        encoding="utf-8",
    )
    return config


def vdir_account(root: Path, name: str) -> Path:
    """An account file (as accounts_dir holds it) for a small vdir practice: two acquainted clients
    booked back to back in three days (one call); its calendar and roster on disk."""
    day = (datetime.now(TZ) + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    calendar = root / "calendars" / name
    calendar.mkdir(parents=True)
    (calendar / "x1.ics").write_text(vcalendar(vevent("x1", "Avery Quinn", day)), encoding="utf-8")
    (calendar / "x2.ics").write_text(
        vcalendar(vevent("x2", "Blake Rowe", day + timedelta(minutes=55))), encoding="utf-8"
    )
    (root / "rosters").mkdir(exist_ok=True)
    roster = root / "rosters" / f"{name}.toml"
    roster.write_text(roster_toml(CLIENTS), encoding="utf-8")
    roster.chmod(0o600)
    file = root / "files" / f"{name}.toml"
    file.parent.mkdir(exist_ok=True)
    file.write_text(
        f'name = "{name}"\nroster = "rosters/{name}.toml"\n\n[source]\nkind = "vdir"\npath = "calendars/{name}"\n\n'
        f'[reminders]\nkind = "vdir"\nevents_path = "out/{name}/calls"\ntasks_path = "out/{name}/tasks"\n',
        encoding="utf-8",
    )
    return file


def put(config: Path, name: str, file: Path) -> int:
    return main(["--config", str(config), "accounts", "put", name, "--file", str(file)])


def store_secret(config: Path, name: str, key: str, value: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(value + "\n"))
    return main(["--config", str(config), "accounts", "secret", name, key])


def every_text(url: str) -> str:
    """Every value of every row of the accounts' and secrets' tables, as one text."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = [
            *conn.execute("SELECT * FROM account_configs").fetchall(),
            *conn.execute("SELECT * FROM account_secrets").fetchall(),
        ]
    return repr(rows)


@pytest.fixture
def key_a(monkeypatch: pytest.MonkeyPatch) -> str:
    """CALLSHEET_SECRET_KEY holds one key, A."""
    monkeypatch.setenv(KEY_ENV, KEY_A)
    return KEY_A


def test_put_list_remove(tmp_path: Path, pg_server: PgServer, capsys: pytest.CaptureFixture[str]) -> None:
    """Stored accounts are listed with their versions and pass like accounts_dir files; a removed
    one is listed no more and no longer passed."""
    config = main_config(tmp_path, pg_server.database())
    assert put(config, "a00", vdir_account(tmp_path, "a00")) == 0
    assert put(config, "a01", vdir_account(tmp_path, "a01")) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "accounts", "list"]) == 0
    out = capsys.readouterr().out
    assert "a00" in out and "a01" in out and "UPDATED" in out
    assert [a.account for a in load_accounts(config)] == ["a00", "a01"]
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert len(list((tmp_path / "out" / "a01" / "calls").iterdir())) == 1
    capsys.readouterr()
    assert main(["--config", str(config), "status"]) == 0
    assert main(["--config", str(config), "plan", "--account", "a01"]) == 0
    out = capsys.readouterr().out
    assert "a00:" in out and "a01:" in out  # one summary line per stored account
    assert main(["--config", str(config), "accounts", "remove", "a01"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "accounts", "list"]) == 0
    assert "a01" not in capsys.readouterr().out
    assert [a.account for a in load_accounts(config)] == ["a00"]
    assert main(["--config", str(config), "accounts", "remove", "a01"]) == 2


def test_put_checks_the_account_like_a_file(
    tmp_path: Path, pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account with a mistyped key or a name of its own is refused (exit 2, naming the account
    and the key, at its line) and nothing is stored."""
    url = pg_server.database()
    config = main_config(tmp_path, url)
    file = vdir_account(tmp_path, "a00")
    file.write_text(file.read_text().replace("events_path", "event_path"))
    capsys.readouterr()
    assert put(config, "a00", file) == 2
    err = capsys.readouterr().err
    assert "account 'a00'" in err and "event_path" in err and "database:a00:" in err
    other = vdir_account(tmp_path, "a01")
    assert put(config, "zz", other) == 2
    assert "names must agree" in capsys.readouterr().err
    assert accounts_db.stored_accounts(Database(url))[1] == []


def test_secret_round_trip_never_in_plain_text(
    tmp_path: Path,
    pg_server: PgServer,
    key_a: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A secret read from stdin comes back whole; the table holds only ciphertext and a key id
    (never the value nor the key); `list` names the secret, never its value."""
    url = pg_server.database()
    config = main_config(tmp_path, url)
    value = "correct horse battery staple 9931"
    assert store_secret(config, "a00", DAV_SECRET, value, monkeypatch) == 0
    assert accounts_db.read_secret(Database(url), "a00", DAV_SECRET, config_path=config) == value
    stored = every_text(url)
    assert value not in stored and key_a not in stored
    assert accounts_db.key_id(key_a.encode()) in stored
    capsys.readouterr()
    assert main(["--config", str(config), "accounts", "list"]) == 0
    out = capsys.readouterr().out
    assert DAV_SECRET in out and value not in out
    # the value never comes from the command line: refused (exit 2) without being echoed
    with pytest.raises(SystemExit) as stopped:
        main(["--config", str(config), "accounts", "secret", "a00", DAV_SECRET, value])
    assert stopped.value.code == 2 and value not in capsys.readouterr().err


def test_wrong_or_missing_key_is_a_clear_error(
    tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A secret read with another key, no key or a malformed key: exit 2 naming
    CALLSHEET_SECRET_KEY and the key id needed, never the ciphertext, the key or a traceback."""
    url = pg_server.database()
    config = main_config(tmp_path, url)
    monkeypatch.setenv(KEY_ENV, KEY_A)
    assert store_secret(config, "a00", DAV_SECRET, "pw-123456", monkeypatch) == 0
    monkeypatch.setenv(KEY_ENV, KEY_B)
    with pytest.raises(ConfigError) as caught:
        accounts_db.read_secret(Database(url), "a00", DAV_SECRET, config_path=config)
    message = str(caught.value)
    with psycopg.connect(url, autocommit=True) as conn:
        (token,) = conn.execute("SELECT ciphertext FROM account_secrets").fetchone()  # type: ignore[misc]
    assert KEY_ENV in message and accounts_db.key_id(KEY_A.encode()) in message
    assert token not in message and KEY_A not in message and KEY_B not in message
    capsys.readouterr()
    assert main(["--config", str(config), "accounts", "rotate-secrets"]) == 2
    err = capsys.readouterr().err
    assert KEY_ENV in err and token not in err and "Traceback" not in err
    monkeypatch.delenv(KEY_ENV)
    assert store_secret(config, "a00", "other", "pw", monkeypatch) == 2
    assert f"{KEY_ENV} is not set" in capsys.readouterr().err
    monkeypatch.setenv(KEY_ENV, "not-a-key-at-all")
    assert store_secret(config, "a00", "other", "pw", monkeypatch) == 2
    err = capsys.readouterr().err
    assert "not a Fernet key" in err and "not-a-key-at-all" not in err


def test_rotation_re_encrypts_under_the_first_key(
    tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With "new,old" keys every secret still opens; rotate-secrets re-encrypts them all under the
    new key, after which the old key alone opens none and the new alone opens all."""
    url = pg_server.database()
    config = main_config(tmp_path, url)
    db = Database(url)
    monkeypatch.setenv(KEY_ENV, KEY_A)
    for n in range(3):
        assert store_secret(config, f"a0{n}", DAV_SECRET, f"pw-{n}", monkeypatch) == 0
    monkeypatch.setenv(KEY_ENV, f"{KEY_B}, {KEY_A}")
    assert accounts_db.read_secret(db, "a01", DAV_SECRET, config_path=config) == "pw-1"
    before = every_text(url)
    assert main(["--config", str(config), "accounts", "rotate-secrets"]) == 0
    assert "3 of 3" in capsys.readouterr().out
    ids = {s.key_id for s in accounts_db.stored_secrets(db)}
    assert ids == {accounts_db.key_id(KEY_B.encode())} == {Keys.from_env().primary}
    assert every_text(url) != before
    monkeypatch.setenv(KEY_ENV, KEY_B)
    assert [accounts_db.read_secret(db, f"a0{n}", DAV_SECRET, config_path=config) for n in range(3)] == [
        "pw-0",
        "pw-1",
        "pw-2",
    ]
    monkeypatch.setenv(KEY_ENV, KEY_A)
    with pytest.raises(ConfigError, match=KEY_ENV):
        accounts_db.read_secret(db, "a00", DAV_SECRET, config_path=config)
    monkeypatch.setenv(KEY_ENV, KEY_B)
    assert main(["--config", str(config), "accounts", "rotate-secrets"]) == 0
    assert "0 of 3" in capsys.readouterr().out


def _worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "--config", str(config), "worker", "--tick", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _events(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _done(log: Path, account: str) -> list[float]:
    return [
        float(e["at"])  # type: ignore[arg-type]
        for e in _events(log)
        if e["event"] == "fleet.pass_done" and e.get("account") == account
    ]


def _wait_for(what: object, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if what():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_worker_sees_accounts_added_and_removed_without_restart(tmp_path: Path, pg_server: PgServer) -> None:
    """A running worker passes an account stored after it started (at its next ticks) and stops
    passing one removed from the database, with no restart; it even starts with none."""
    config = main_config(tmp_path, pg_server.database())
    assert main(["--config", str(config), "state", "init"]) == 0  # before any account is stored
    log = tmp_path / "worker.log"
    proc = _worker(config, log)
    try:
        time.sleep(2)
        assert proc.poll() is None, log.read_text()[-2000:]
        assert put(config, "a00", vdir_account(tmp_path, "a00")) == 0
        _wait_for(lambda: _done(log, "a00"))
        assert put(config, "a01", vdir_account(tmp_path, "a01")) == 0
        _wait_for(lambda: len(_done(log, "a01")) >= 2)
        assert main(["--config", str(config), "accounts", "remove", "a00"]) == 0
        removed = time.time()
        time.sleep(6)
        assert len(_done(log, "a01")) >= 4
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert not [at for at in _done(log, "a00") if at > removed + 2]  # at most one pass already under way
    assert all(e.get("status", "ok") == "ok" for e in _events(log) if e["event"] == "fleet.pass_done")
    assert len(list((tmp_path / "out" / "a01" / "calls").iterdir())) == 1


def test_group_loop_sees_a_new_and_a_changed_account(tmp_path: Path, pg_server: PgServer) -> None:
    """`run --every` over database accounts (runner.loop_accounts with the reloader) passes an
    account stored while it runs, and an account changed while it runs as changed."""
    config = main_config(tmp_path, pg_server.database(), every="1s")
    assert put(config, "a00", vdir_account(tmp_path, "a00")) == 0
    from worker.cli import _reloader

    reload = _reloader(config)
    assert reload is not None
    accounts = reload.load()
    stop = runner.Stop()
    loop = threading.Thread(
        target=runner.loop_accounts,
        args=(accounts, timedelta(seconds=1)),
        kwargs={"stop": stop, "reload": reload},
    )
    loop.start()
    try:
        _wait_for(lambda: (tmp_path / "out" / "a00" / "calls").exists())
        assert put(config, "a01", vdir_account(tmp_path, "a01")) == 0
        _wait_for(lambda: (tmp_path / "out" / "a01" / "calls").exists())
        changed = tmp_path / "files" / "a00.toml"  # its calendar moves to a folder that is not there
        changed.write_text(changed.read_text().replace('path = "calendars/a00"', 'path = "calendars/gone"'))
        assert put(config, "a00", changed) == 0
        health = tmp_path / "var" / "a00" / "health.json"
        _wait_for(lambda: health.exists() and json.loads(health.read_text())["outcome"] == "failed")
    finally:
        stop.event.set()
        loop.join(timeout=30)
    assert not loop.is_alive()
    assert len(list((tmp_path / "out" / "a01" / "calls").iterdir())) == 1


def test_caldav_pass_with_a_stored_password(
    tmp_path: Path,
    pg_server: PgServer,
    radicale_auth: DavServer,
    key_a: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A database account whose CalDAV password is a stored secret passes against a Radicale that
    asks for it; its debug logs and output hold neither the password nor the key, the database no
    plaintext; without its secret the pass names the missing secret (exit 2)."""
    url = pg_server.database()
    config = main_config(tmp_path, url, level="debug")
    source = radicale_auth.make_collection()
    events, tasks = radicale_auth.make_collection(), radicale_auth.make_collection(components=("VTODO",))
    source.put("x", vcalendar(vevent("x", "Avery Quinn no show", local("2026-03-06 10:00"))))
    (tmp_path / "clients.toml").write_text(roster_toml(CLIENTS), encoding="utf-8")
    (tmp_path / "clients.toml").chmod(0o600)
    file = tmp_path / "dav.toml"
    file.write_text(
        f'[source]\nkind = "caldav"\nurl = "{source.url}"\nusername = "{USERNAME}"\n'
        f'password_secret = "{DAV_SECRET}"\n\n'
        f'[reminders]\nkind = "caldav"\nevents_url = "{events.url}"\ntasks_url = "{tasks.url}"\n',
        encoding="utf-8",
    )
    capsys.readouterr()
    assert put(config, "dav", file) == 0
    assert "not stored yet" in capsys.readouterr().err
    assert main(["--config", str(config), "run", "--once", "--now", NOW]) == 2
    assert "secret 'caldav' is not in the database" in capsys.readouterr().err
    assert store_secret(config, "dav", DAV_SECRET, PASSWORD, monkeypatch) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "run", "--once", "--now", NOW]) == 0
    assert main(["--config", str(config), "run", "--once", "--now", NOW]) == 0
    seen = capsys.readouterr()
    assert '"event"' in seen.err  # the debug log was captured
    for text in (seen.out, seen.err, every_text(url)):
        assert PASSWORD not in text and key_a not in text
    assert len(events.objects()) == 1  # the no-show's call, written once, through the password


def test_google_token_as_a_stored_secret(
    tmp_path: Path,
    pg_server: PgServer,
    fake: FakeGoogle,
    key_a: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database account whose Google token is a stored secret (`token_secret`, no token file):
    an expired access token is refreshed once and written back encrypted, so the next pass needs
    no refresh; the database never holds the token in plain text."""
    url = pg_server.database()
    gp = google_practice(fake, tmp_path / "google", expired=True)
    head, rest = gp.config.read_text(encoding="utf-8").split("[source]", 1)
    gp.config.write_text(f'state_url = "{url}"\naccounts_from = "database"\n' + head, encoding="utf-8")
    file = tmp_path / "google" / "rivera.toml"
    file.write_text(
        "[source]" + rest.replace('token_file = "secrets/google-token.json"', 'token_secret = "google"'),
        encoding="utf-8",
    )
    assert put(gp.config, "rivera", file) == 0
    assert (
        main(
            [
                "--config",
                str(gp.config),
                "accounts",
                "secret",
                "rivera",
                "google",
                "--file",
                str(gp.token_path),
            ]
        )
        == 0
    )
    gp.token_path.unlink()  # the file is not what the pass reads
    assert main(["--config", str(gp.config), "run", "--once", "--now", SAMPLE_NOW]) == 0
    assert len(fake.calls("oauth.token")) == 1
    saved = json.loads(accounts_db.read_secret(Database(url), "rivera", "google", config_path=gp.config))
    assert saved["token"] != gp.token["token"] and saved["refresh_token"] == gp.token["refresh_token"]
    stored = every_text(url)
    assert saved["token"] not in stored and saved["refresh_token"] not in stored and key_a not in stored
    assert gp.ours()  # the calls reached Google
    fake.clear_log()
    assert main(["--config", str(gp.config), "run", "--once", "--now", "2026-03-18T12:30:00-05:00"]) == 0
    assert fake.calls("oauth.token") == []
    assert not gp.token_path.exists()
