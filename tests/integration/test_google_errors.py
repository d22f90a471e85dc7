"""Failures against the fake Google: rate limits and 5xx are retried within the budget, quota and
other 4xx end the pass, refused tokens stop with exit code 3 and the fix, and nothing leaks."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from connectors.google import api
from tests.fakes.google import (
    AUTH,
    SAMPLE_NOW,
    FakeGoogle,
    GooglePractice,
    google_practice,
    sample_clients,
)
from worker.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("google_fast_retries")]

LATER = "2026-03-18T12:30:00-05:00"


def _run(gp: GooglePractice, now: str = SAMPLE_NOW) -> int:
    return main(["--config", str(gp.config), "run", "--once", "--now", now])


def _state(gp: GooglePractice) -> tuple[object, ...]:
    db = gp.practice.root / "var" / "state.db"
    if not db.exists():
        return ()
    with sqlite3.connect(db) as conn:
        return tuple(
            conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("cursors", "occurrences", "reminders")
        )


def test_rate_limits_server_errors_and_timeouts_are_retried_and_the_pass_succeeds(gp: GooglePractice) -> None:
    """429 (with Retry-After), 403 rate limits, 500/503 and a timeout are retried; nothing is duplicated."""
    fake = gp.fake
    fake.inject("calendar.events.list", status=429, reason="rateLimitExceeded", retry_after=0)
    fake.inject("calendar.events.list", status=403, reason="rateLimitExceeded")
    fake.inject("calendar.events.list", status=403, reason="userRateLimitExceeded")
    fake.inject("calendar.events.list", status=500, reason="backendError")
    fake.inject("calendar.events.insert", status=503, reason="backendError")
    fake.inject("tasks.tasklists.list", status=0, delay=1.5)  # longer than the 1 s client timeout
    assert _run(gp) == 0
    statuses = [c.status for c in fake.calls("calendar.events.list")]
    assert statuses[:5] == [429, 403, 403, 500, 200]
    assert [c.status for c in fake.calls("calendar.events.insert")].count(503) == 1
    assert len(gp.ours()) == 3 and len(gp.tasks()) == 3
    assert all(f.times == 0 for f in fake.faults)


def test_an_answer_cut_off_is_retried(gp: GooglePractice) -> None:
    """An answer that breaks off before its announced length is retried like a dropped connection."""
    gp.fake.inject("calendar.events.list", status=0, truncate=True)
    gp.fake.inject("tasks.tasklists.list", status=0, truncate=True)
    assert _run(gp) == 0
    assert len(gp.ours()) == 3 and len(gp.tasks()) == 3
    assert all(f.times == 0 for f in gp.fake.faults)


def test_quota_exceeded_ends_the_pass_without_retrying(
    gp: GooglePractice, capsys: pytest.CaptureFixture[str]
) -> None:
    """403 quotaExceeded is not retried: the pass fails (exit 1) and says the quota is used up."""
    gp.fake.inject("calendar.events.list", status=403, reason="quotaExceeded", times=10)
    assert _run(gp) == 1
    assert len(gp.fake.calls("calendar.events.list")) == 1
    assert "quota" in capsys.readouterr().err


def test_other_client_errors_are_permanent(gp: GooglePractice, capsys: pytest.CaptureFixture[str]) -> None:
    """A 400 or a permission 403 is not retried: one request, the pass fails with exit 1."""
    gp.fake.inject("calendar.events.list", status=400, reason="badRequest", times=10)
    assert _run(gp) == 1
    assert len(gp.fake.calls("calendar.events.list")) == 1
    gp.fake.faults.clear()
    gp.fake.clear_log()
    gp.fake.inject("calendar.events.list", status=403, reason="forbidden", times=10)
    assert _run(gp) == 1
    assert len(gp.fake.calls("calendar.events.list")) == 1


def test_transient_errors_give_up_within_the_budget(
    gp: GooglePractice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Google that keeps answering 503 is retried until the budget or the attempts run out, then exit 1."""
    monkeypatch.setattr(api, "DEFAULT_RETRY", api.RetryPolicy(budget=0.5, base=0.05, cap=0.2, attempts=50))
    gp.fake.inject("calendar.events.list", status=503, times=10_000)
    assert _run(gp) == 1
    tries = len(gp.fake.calls("calendar.events.list"))
    assert 2 <= tries < 50


def test_an_expired_access_token_is_refreshed_and_saved_0600(fake: FakeGoogle, tmp_path: Path) -> None:
    """An expired access token is refreshed once and written back atomically with mode 0600."""
    gp = google_practice(fake, tmp_path / "google", expired=True)
    assert _run(gp) == 0
    saved = json.loads(gp.token_path.read_text(encoding="utf-8"))
    assert saved["token"] != gp.token["token"]
    assert saved["refresh_token"] == gp.token["refresh_token"]
    assert stat.S_IMODE(os.stat(gp.token_path).st_mode) == 0o600
    assert len(fake.calls("oauth.token")) == 1  # the sink reads the refreshed file, no second refresh
    assert not [p for p in gp.token_path.parent.iterdir() if p.name.endswith(".tmp")]
    fake.clear_log()
    assert _run(gp, LATER) == 0
    assert fake.calls("oauth.token") == []


def test_invalid_grant_stops_with_exit_3_and_says_how_to_fix_it(
    fake: FakeGoogle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A revoked refresh token: exit 3, one message naming the setup command; token and state untouched."""
    gp = google_practice(fake, tmp_path / "google")
    assert _run(gp) == 0
    token = json.loads(gp.token_path.read_text(encoding="utf-8"))
    token["expiry"] = "2026-01-01T00:00:00Z"
    gp.token_path.write_text(json.dumps(token), encoding="utf-8")
    os.chmod(gp.token_path, 0o600)
    fake.revoke(token["refresh_token"])
    before_token = gp.token_path.read_bytes()
    before_state = _state(gp)
    capsys.readouterr()
    assert _run(gp, LATER) == 3
    err = capsys.readouterr().err
    assert f"python scripts/authorize_google.py --config {gp.config}" in err
    assert "invalid_grant" in err and "In production" in err
    assert err.count("authorisation needed") == 1
    assert gp.token_path.read_bytes() == before_token
    assert _state(gp) == before_state
    assert [c.method for c in fake.log if c.status and c.status >= 400] == ["oauth.token"]


def test_a_missing_token_file_is_exit_3_with_the_same_advice(
    fake: FakeGoogle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No token file yet: exit 3, and the message says to run the setup script."""
    gp = google_practice(fake, tmp_path / "google")
    gp.token_path.unlink()
    assert _run(gp) == 3
    err = capsys.readouterr().err
    assert "does not exist" in err and "authorize_google.py --config" in err
    assert not gp.token_path.exists()
    assert fake.log == []


def test_a_token_without_the_tasks_scope_is_exit_3(
    fake: FakeGoogle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token minted without a scope the config needs stops before any request, with exit 3."""
    gp = google_practice(
        fake, tmp_path / "google", scopes=(AUTH + "calendar.events.readonly", AUTH + "calendar.app.created")
    )
    assert _run(gp) == 3
    assert "'tasks' permission" in capsys.readouterr().err
    assert not [c for c in fake.log if c.http_method != "GET"]


def test_least_scopes_cannot_write_the_practice_calendar(fake: FakeGoogle, tmp_path: Path) -> None:
    """With calendar.app.created the token can write only calendars callsheet made (the fake enforces it)."""
    gp = google_practice(fake, tmp_path / "google")
    assert _run(gp) == 0
    from connectors.google.api import Account, GoogleApi
    from connectors.google.auth import READ_SCOPES
    from worker.errors import ConnectorError

    session = GoogleApi(
        Account(gp.token_path, fake.url, timedelta(seconds=2), True, gp.config, timedelta(minutes=5)),
        source="probe",
        scopes=[READ_SCOPES],
    )
    try:
        body = {
            "summary": "x",
            "start": {"dateTime": "2026-03-20T10:00:00Z"},
            "end": {"dateTime": "2026-03-20T11:00:00Z"},
        }
        with pytest.raises(ConnectorError):
            session.call(session.calendar.events().insert(calendarId="primary", body=body), operation="probe")
        made = session.call(
            session.calendar.events().insert(calendarId=gp.calls_calendar, body=body), operation="probe"
        )
        assert made["summary"] == "x"
    finally:
        session.close()


def test_no_client_data_reaches_logs_or_messages(
    fake: FakeGoogle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Debug logs of passes with retries, a 409, a 410 and a failure name no client, email or title."""
    gp = google_practice(fake, tmp_path / "google", timeout="1s", extra_config='[run]\nlog_level = "debug"\n')
    fake.inject("calendar.events.list", status=429, reason="rateLimitExceeded")
    fake.inject("calendar.events.insert", status=0, delay=1.5, apply=True)
    assert _run(gp) == 0
    fake.expire_sync_tokens()
    assert _run(gp, LATER) == 0
    fake.inject("calendar.events.list", status=400, reason="badRequest", times=5)
    assert _run(gp, LATER) == 1
    logs = capsys.readouterr().err
    words = ["Appointment", "Dentist", "Conference", "example.org", "+1 555 0199", "no show"]
    for client in sample_clients():
        words += [client.name, *client.name.split(), client.id + " "]
    assert [w for w in words if w in logs] == []
    assert '"connector.retry"' in logs and '"level": "debug"' in logs and "badRequest" in logs


def test_check_reaches_both_google_apis_and_writes_nothing(
    gp: GooglePractice, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callsheet check` reads the calendars and lists our items, and sends no write at all."""
    assert main(["--config", str(gp.config), "check"]) == 0
    out = capsys.readouterr().out
    assert "[ok] source google" in out and "[ok] reminders google" in out
    assert "can write" not in out
    assert [c.method for c in gp.fake.log if c.http_method != "GET" and c.method != "oauth.token"] == []
    assert "Client calls" not in gp.fake.tasklist_titles()


def test_check_write_probe_proves_writes_every_time_with_fresh_ids(
    gp: GooglePractice, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check --write-probe` twice: each run writes an event and a task under ids never used before and removes them."""
    for _ in range(2):
        assert main(["--config", str(gp.config), "check", "--write-probe"]) == 0
        out = capsys.readouterr().out
        assert "[ok] reminders: can write events" in out and "[ok] reminders: can write tasks" in out
    inserts = gp.fake.calls("calendar.events.insert")
    assert [c.status for c in inserts] == [200, 200]
    assert len({c.body["id"] for c in inserts}) == 2
    assert [c.status for c in gp.fake.calls("calendar.events.delete")] == [204, 204]
    assert gp.ours() == [] and gp.tasks() == []


def test_a_token_file_that_cannot_be_written_is_a_clear_error_naming_it(
    fake: FakeGoogle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An expired token whose file cannot be saved (read-only mount): exit 3 naming the file and the fix, no crash."""
    from connectors.google import auth

    gp = google_practice(fake, tmp_path / "google", expired=True)

    def refuse(path: Path, data: str) -> None:
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(auth, "write_private", refuse)
    capsys.readouterr()
    assert _run(gp) == 3
    err = capsys.readouterr().err
    assert f"{gp.token_path} cannot be written" in err and "state volume" in err
    assert "unexpected error" not in err and "could not be reached" not in err


def test_a_dead_token_says_the_attention_reminder_cannot_reach_google_either(
    fake: FakeGoogle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """invalid_grant names the setup command and says that not even the alert reaches Google."""
    gp = google_practice(fake, tmp_path / "google", expired=True)
    fake.revoke(gp.token["refresh_token"])
    capsys.readouterr()
    assert _run(gp) == 3
    err = capsys.readouterr().err
    assert "the Google token is dead" in err and "needs attention" in err and "check --health" in err
    assert "authorize_google.py --config" in err


def test_retries_are_logged_with_status_and_reason(
    gp: GooglePractice, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each retry logs the operation, the attempt, the HTTP status and Google's reason code."""
    gp.fake.inject("calendar.events.list", status=403, reason="userRateLimitExceeded")
    assert _run(gp) == 0
    retries = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if '"connector.retry"' in line
    ]
    assert [(r["operation"], r["attempt"], r["status"], r["reason"]) for r in retries] == [
        ("events.list(token)", 1, 403, "userRateLimitExceeded")
    ]


def test_a_config_without_token_file_is_a_config_error(
    fake: FakeGoogle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No token_file in the config is exit 2 (fix the config), not exit 3."""
    gp = google_practice(fake, tmp_path / "google")
    lines = gp.config.read_text(encoding="utf-8").splitlines()
    gp.config.write_text(
        "\n".join(ln for ln in lines if not ln.startswith("token_file")) + "\n", encoding="utf-8"
    )
    assert _run(gp) == 2
    assert "needs token_file" in capsys.readouterr().err
    assert fake.log == []
