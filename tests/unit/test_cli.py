"""The command line as a helper and a therapist meet it: usage, errors, check, purge, demo, setup."""

from __future__ import annotations

import errno
import io
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.practice import Practice, local, vevent
from worker import checks, demo, runner
from worker.cli import main
from worker.errors import AuthError

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-03-10T12:00"


@pytest.fixture
def practice(tmp_path: Path) -> Practice:
    p = Practice(tmp_path / "practice")
    p.add("a", vevent("cs-1", "Cameron Tate DNA", local("2026-03-10 10:00")))
    p.add("b", vevent("cs-2", "Avery Quinn DNA", local("2026-03-10 09:00")))
    return p


def test_now_with_every_names_now(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """`run --every 2s --now X` says that --now runs a single pass, not "use --once or --every"."""
    assert main(["--config", str(practice.config), "run", "--every", "2s", "--now", NOW]) == 2
    err = capsys.readouterr().err
    assert "--now runs a single pass; it cannot be combined with --every" in err
    assert "--once" not in err


def test_mistyped_flag_shows_the_subcommand_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """`plan --jsn` prints the usage of `plan`, not the top-level usage, and exits 2."""
    with pytest.raises(SystemExit) as info:
        main(["plan", "--jsn"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: callsheet plan ") and "unrecognized arguments: --jsn" in err


@pytest.mark.parametrize(
    ("command", "flag", "words"),
    [("plan", "--include-stale", "max_age"), ("plan", "--json", "JSON"), ("status", "--json", "JSON")],
)
def test_every_flag_has_help(command: str, flag: str, words: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`plan --include-stale`, `plan --json` and `status --json` explain themselves in --help."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    line = " ".join(out.split(flag, 2)[-1].split()[:20])
    assert words in line


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (OSError(errno.EROFS, "Read-only file system", "/srv/var/state.db"), 1, "file system is read-only"),
        (PermissionError(errno.EACCES, "Permission denied", "/srv/var"), 1, "permission denied"),
        (FileExistsError(errno.EEXIST, "File exists", "/srv/statefile"), 2, "is a file, not a folder"),
        (OSError(errno.ENOSPC, "No space left on device", "/srv/var/state.db"), 1, "the disk is full"),
    ],
)
def test_file_system_errors_name_the_path_and_the_fix(
    practice: Practice,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: OSError,
    code: int,
    words: str,
) -> None:
    """A read-only, unwritable, file-not-folder or full state_dir is a message with the path and a fix, never "unexpected error"."""

    def fail(*_: object, **__: object) -> None:
        raise error

    monkeypatch.setattr(runner, "run_pass", fail)
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == code
    err = capsys.readouterr().err
    assert "unexpected error" not in err and str(error.filename) in err and words in err
    assert "fix:" in err


def test_state_dir_that_is_a_file(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """state_dir naming an existing file is exit 2 with the path, end to end."""
    (practice.root / "statefile").write_text("x")
    practice.config.write_text(
        practice.config.read_text().replace('state_dir = "var"', 'state_dir = "statefile"')
    )
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 2
    err = capsys.readouterr().err
    assert "statefile is a file, not a folder" in err and "unexpected" not in err


def test_readonly_state_database(
    practice: Practice, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """sqlite's "attempt to write a readonly database" names state.db and the fix."""

    def fail(*_: object, **__: object) -> None:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(runner, "run_pass", fail)
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 1
    err = capsys.readouterr().err
    assert "state.db" in err and "readonly database" in err and "unexpected" not in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_shows_no_log_lines_at_info(
    practice: Practice, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan` and `run --once` on a terminal print the table, not log lines, at the default level."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["--config", str(practice.config), "plan", "--now", NOW]) == 0
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 0
    assert "source.read" not in terminal.getvalue() and "pass.finished" not in terminal.getvalue()
    assert "C.T." in capsys.readouterr().out


def test_check_wrong_password_exits_3_with_runs_words(
    practice: Practice, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused password in `check` exits 3 with the message `run` prints, not Google's "re-run the authorisation"."""

    def refuse(*_: object, **__: object) -> None:
        raise AuthError("the server refused the username or password for https://dav.test/cal/ (HTTP 401)")

    monkeypatch.setattr(checks, "open_source", refuse)
    assert main(["--config", str(practice.config), "check"]) == 3
    out = capsys.readouterr().out
    assert "[!!] source vdir: authorisation needed: the server refused the username or password" in out
    assert "re-run the authorisation" not in out


def test_check_names_the_time_zone(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """`check` says which time zone it uses."""
    main(["--config", str(practice.config), "check"])
    assert "[ok] time zone America/Chicago" in capsys.readouterr().out


def test_purge_dry_run_lists_alias_reason_and_date(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """`purge --dry-run` names alias, reason and date; with --yes it does not say "run with --yes"."""
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 0
    capsys.readouterr()
    assert main(["--config", str(practice.config), "purge", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "C.T." in out and "missed appointment" in out and "Tue 10 Mar 2026" in out
    assert "4 items would be removed; run with --yes" in out
    assert main(["--config", str(practice.config), "purge", "--dry-run", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "run with --yes" not in out and "nothing was removed" in out
    for name in ("Cameron", "Tate", "Avery", "555 01"):
        assert name not in out


def test_purge_says_one_item(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """One item is "1 item", and a purge says to delete the state folder before the next pass."""
    practice.remove("b")
    practice.reminders = 'kind = "vdir"\nevents_path = "out/calls"\nwrite = ["event"]\n'
    practice.write_config()
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 0
    capsys.readouterr()
    assert main(["--config", str(practice.config), "purge", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 item;" in out and "state forgot them" in out


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        ("2026-11-30 03:54", "2026-11-30 10:30"),  # Monday night: that morning
        ("2026-11-30 13:20", "2026-11-30 13:20"),  # inside office hours: the clock
        ("2026-12-04 17:30", "2026-12-07 10:30"),  # Friday evening: Monday
        ("2026-12-05 12:00", "2026-12-07 10:30"),  # Saturday: Monday
    ],
)
def test_demo_is_anchored_in_office_hours(clock: str, expected: str) -> None:
    """`demo` never builds its practice around 03:54: it uses the next office-hours day."""
    tz = ZoneInfo(demo.TIMEZONE)
    got = demo.anchor(datetime.fromisoformat(clock).replace(tzinfo=tz))
    assert got == datetime.fromisoformat(expected).replace(tzinfo=tz)


def test_authorize_google_is_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    """`callsheet authorize-google --help` shows the setup's options under its own name."""
    with pytest.raises(SystemExit) as info:
        main(["authorize-google", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: callsheet authorize-google") and "--token-only" in out


def test_setup_script_without_the_venv_says_what_works() -> None:
    """The script run by a Python without callsheet's packages names the command that works, no traceback."""
    done = subprocess.run(
        [sys.executable, "-S", "-I", str(ROOT / "scripts" / "authorize_google.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "callsheet authorize-google --config PATH" in done.stderr and ".venv/bin/python" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("clock", ["2026-11-30 10:30", "2026-12-01 10:30", "2026-12-04 13:00"])
def test_demo_sessions_stay_on_their_side_of_today(clock: str) -> None:
    """On a Monday the demo's "missed yesterday" is the Friday before, never later today; all are weekdays."""
    tz = ZoneInfo(demo.TIMEZONE)
    now = datetime.fromisoformat(clock).replace(tzinfo=tz)
    events = {ev.uid: ev for ev in demo._events(now.date(), now, tz)}
    assert events["demo-c011-missed"].start < now and events["demo-c003-missed"].start < now
    assert events["demo-c003-next"].start > now and events["demo-c008-next"].start > now
    assert all(ev.start.weekday() < 5 for ev in events.values())
    assert events["demo-c001-weekly"].start.weekday() != now.weekday()  # A.M. is never "late" at the anchor
