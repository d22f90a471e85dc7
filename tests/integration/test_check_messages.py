"""`callsheet check` against a real CalDAV server: a refused password reads and exits like `run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import PASSWORD, DavServer
from tests.integration.test_caldav_sink import NOW, _auth_practice
from worker.cli import main

pytestmark = pytest.mark.integration


def test_check_with_a_wrong_caldav_password_exits_3_like_run(
    radicale_auth: DavServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong CalDAV password: `check` exits 3 with run's words (username, password_file), never Google's fix."""
    practice = _auth_practice(radicale_auth, tmp_path, "wrong-password-123")
    capsys.readouterr()
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 3
    run_err = capsys.readouterr().err
    assert main(["--config", str(practice.config), "check"]) == 3
    out = capsys.readouterr().out
    assert "[!!] source caldav: authorisation needed:" in out
    assert "check username and password_file / password_env" in out and "check username" in run_err
    assert "re-run the authorisation" not in out and "authorize" not in out
    assert "wrong-password-123" not in out and PASSWORD not in out
