"""scripts/authorize_google.py end to end against the fake: consent URL printed, the loopback
redirect driven from the test, token file 0600 with the scopes asked for, calendar and task list
made once, and a pass that works with what the script wrote."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from connectors.google.auth import SCOPE_CALLS_CALENDAR, SCOPE_READ_CALENDARS, SCOPE_READ_EVENTS, SCOPE_TASKS
from tests.fakes.google import SAMPLE_NOW, FakeGoogle, sample_calendars, seed
from tests.practice import Practice
from tests.servers import free_port
from worker.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "authorize_google.py"


def _practice(fake: FakeGoogle, root: Path) -> Practice:
    (root / "secrets").mkdir(parents=True)
    (root / "secrets" / "client_secrets.json").write_text(json.dumps(fake.client_secrets()), encoding="utf-8")
    source = (
        'kind = "google"\ncalendar_id = "primary"\ntoken_file = "secrets/token.json"\n'
        f'client_secrets_file = "secrets/client_secrets.json"\napi_endpoint = "{fake.url}"\n'
    )
    return Practice(root, source=source, reminders='kind = "google"\n')


class Setup:
    """The script running in a subprocess, its output read line by line."""

    def __init__(self, config: Path, *args: str) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("OAUTHLIB_INSECURE_TRANSPORT", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                "--config",
                str(config),
                "--port",
                str(self.port),
                "--timeout",
                "30",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=config.parent,
        )
        self.lines: list[str] = []

    def consent_url(self) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("http") and "/o/oauth2/auth?" in line:
                return line.strip()
        raise AssertionError("no consent URL printed:\n" + "".join(self.lines) + self._stderr())

    def _stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def consent(self) -> str:
        """Open the URL as the browser would: the fake redirects to the script's loopback listener."""
        return _browse(self.consent_url())

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, "".join(self.lines) + out, err


def _browse(url: str) -> str:
    """What the browser does: GET the consent URL and follow the redirect to the loopback listener."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


def _run_setup(config: Path, *args: str) -> tuple[int, str, str, str]:
    setup = Setup(config, *args)
    try:
        page = setup.consent()
        code, out, err = setup.finish()
    finally:
        if setup.proc.poll() is None:
            setup.proc.kill()
            setup.proc.communicate()
    return code, out, err, page


def test_setup_prints_the_url_writes_a_0600_token_and_makes_the_calendar_and_task_list(
    fake: FakeGoogle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The consent URL is printed, the redirect completes, and the ids to configure are printed."""
    practice = _practice(fake, tmp_path / "p")
    code, out, err, page = _run_setup(practice.config)
    assert code == 0, err
    assert "callsheet is authorised" in page
    assert "Testing" in out and "7 days" in out
    token_path = practice.root / "secrets" / "token.json"
    assert stat.S_IMODE(os.stat(token_path).st_mode) == 0o600
    token = json.loads(token_path.read_text(encoding="utf-8"))
    assert set(token["scopes"]) == {SCOPE_READ_EVENTS, SCOPE_CALLS_CALENDAR, SCOPE_TASKS}
    assert token["refresh_token"] in fake.refresh_tokens
    consent = fake.consents[-1]
    assert consent["prompt"] == "consent" and consent["access_type"] == "offline"
    assert consent["redirect_uri"].startswith("http://localhost:") and consent["code_challenge"]
    calendars = [c for c in fake.calendars.values() if c.summary == "Client calls"]
    assert len(calendars) == 1 and calendars[0].app_created
    assert fake.tasklist_titles().count("Client calls") == 1
    assert f'calendar_id = "{calendars[0].id}"' in out
    side = practice.root / "google-ids.json"
    assert json.loads(side.read_text(encoding="utf-8"))["calendar_id"] == calendars[0].id
    assert stat.S_IMODE(os.stat(side).st_mode) == 0o600
    # what the script printed is all a pass needs
    first, _ = sample_calendars()
    seed(fake, "primary", first, "America/Chicago")
    text = practice.config.read_text(encoding="utf-8").replace(
        '[reminders]\nkind = "google"\n', f'[reminders]\nkind = "google"\ncalendar_id = "{calendars[0].id}"\n'
    )
    practice.config.write_text(text, encoding="utf-8")
    assert main(["--config", str(practice.config), "run", "--once", "--now", SAMPLE_NOW]) == 0
    assert len(fake.events(calendars[0].id)) >= 2
    assert len(fake.tasks("Client calls")) >= 2


def test_running_setup_again_reuses_the_calendar_and_the_task_list(fake: FakeGoogle, tmp_path: Path) -> None:
    """A second consent (e.g. after invalid_grant) keeps the same calls calendar and task list."""
    practice = _practice(fake, tmp_path / "p")
    assert _run_setup(practice.config)[0] == 0
    first_token = (practice.root / "secrets" / "token.json").read_text(encoding="utf-8")
    code, out, err, _ = _run_setup(practice.config, "--read-scope", "calendars")
    assert code == 0, err
    assert "Created" not in out
    assert [c.summary for c in fake.calendars.values()].count("Client calls") == 1
    assert fake.tasklist_titles().count("Client calls") == 1
    token = json.loads((practice.root / "secrets" / "token.json").read_text(encoding="utf-8"))
    assert SCOPE_READ_CALENDARS in token["scopes"] and SCOPE_READ_EVENTS not in token["scopes"]
    assert token != json.loads(first_token)


def test_setup_times_out_cleanly_when_nobody_answers(fake: FakeGoogle, tmp_path: Path) -> None:
    """Without a browser answering within --timeout the script exits 1 and writes no token."""
    practice = _practice(fake, tmp_path / "p")
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--config",
            str(practice.config),
            "--port",
            str(free_port()),
            "--timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "no answer from the browser" in proc.stderr
    assert "/o/oauth2/auth?" in proc.stdout
    assert not (practice.root / "secrets" / "token.json").exists()


def test_setup_refuses_a_partial_grant(fake: FakeGoogle, tmp_path: Path) -> None:
    """When the user unticks a scope on the consent screen the script says so and writes no token."""
    practice = _practice(fake, tmp_path / "p")
    setup = Setup(practice.config)
    try:
        url = setup.consent_url()
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query["scope"] = " ".join(s for s in query["scope"].split() if not s.endswith("/tasks"))
        page = _browse(f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}")
        code, _, err = setup.finish()
    finally:
        if setup.proc.poll() is None:
            setup.proc.kill()
            setup.proc.communicate()
    assert "callsheet is authorised" in page  # the redirect reached the script
    assert code == 1 and "did not grant tasks" in err
    assert not (practice.root / "secrets" / "token.json").exists()


def test_help_documents_the_headless_recipes() -> None:
    """--help explains the SSH tunnel, the laptop recipe and the 7-day Testing trap."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "ssh -L 8765:127.0.0.1:8765" in proc.stdout
    assert "copy the token file" in proc.stdout
    assert "7 days" in proc.stdout and "In production" in proc.stdout
