"""Unattended operation: the loop, SIGTERM, the heartbeat, the attention alert, status, purge."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.ical import read_item
from tests.practice import ClientSpec, Practice, local, vevent
from worker import runner
from worker.cli import main
from worker.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _setup(practice: Practice) -> None:
    practice.add("avery-last", vevent("avery-last", "Avery Quinn", local("2026-03-03 10:00")))
    practice.add(
        "cameron-missed", vevent("cameron-missed", "Cameron Tate no show", local("2026-03-09 14:00"))
    )
    practice.add("blake-next", vevent("blake-next", "Blake Rowe", local("2026-03-20 10:00")))


def _read_lines(stream: object, until: str, timeout: float = 30) -> list[dict[str, object]]:
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = stream.readline()  # type: ignore[attr-defined]
        if not raw:
            break
        lines.append(json.loads(raw))
        if lines[-1].get("event") == until:
            return lines
    raise AssertionError(f"{until} not seen in {lines}")


def test_loop_runs_passes_and_stops_on_sigterm(practice: Practice) -> None:
    """`run --every 1s` runs pass after pass; SIGTERM mid-pass finishes that pass and exits 0."""
    today = (
        datetime.now(UTC)
        .astimezone(local("2026-01-01 00:00").tzinfo)
        .replace(hour=10, minute=0, second=0, microsecond=0)
    )
    practice.add("avery-last", vevent("avery-last", "Avery Quinn", today - timedelta(days=9)))
    practice.add(
        "cameron-missed", vevent("cameron-missed", "Cameron Tate no show", today - timedelta(days=2))
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "--config", str(practice.config), "run", "--every", "1s"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = _read_lines(proc.stderr, "pass.finished")
        assert first[-1]["created"] == 4
        _read_lines(proc.stderr, "source.read")  # the second pass has started
        proc.send_signal(signal.SIGTERM)
        rest = _read_lines(proc.stderr, "loop.stopped", timeout=10)
        assert rest[-1]["signal"] == "SIGTERM"
        assert any(line["event"] == "pass.finished" for line in rest)  # the pass was finished, not cut
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    beat = runner.read_health(load_settings(practice.config).state_dir)
    assert beat is not None and beat["outcome"] == "ok"


def test_loop_survives_a_failing_pass(practice: Practice) -> None:
    """A failed pass is logged and recorded in health.json; the loop goes on to the next one."""
    settings = load_settings(practice.config)
    practice.calendar.rmdir()  # the source folder is gone: every pass fails
    clock = iter([datetime(2026, 3, 11, 15, tzinfo=UTC), datetime(2026, 3, 11, 15, 5, tzinfo=UTC)])
    stop = runner.Stop()
    assert (
        runner.loop(settings, timedelta(seconds=0.01), clock=lambda: next(clock), stop=stop, max_passes=2)
        == 0
    )
    beat = runner.read_health(settings.state_dir)
    assert beat is not None and beat["outcome"] == "failed" and beat["error"] == "ConnectorError"
    assert beat["time"] == "2026-03-11T15:05:00+00:00"  # the second pass ran and failed too
    assert beat["failing_since"] == "2026-03-11T15:00:00+00:00"


def test_check_health(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """check --health fails with no good pass, passes after one, fails when it is older than three intervals."""
    _setup(practice)
    settings = load_settings(practice.config)
    assert main(["--config", str(practice.config), "check", "--health"]) == 1
    assert main(["--config", str(practice.config), "run", "--once"]) == 0
    assert main(["--config", str(practice.config), "check", "--health"]) == 0
    old = datetime.now(UTC) - 3 * settings.run.every - timedelta(seconds=5)
    runner.write_health(settings.state_dir, now=old, outcome="ok", counts={})
    capsys.readouterr()
    assert main(["--config", str(practice.config), "check", "--health"]) == 1
    assert "unhealthy: last good pass" in capsys.readouterr().out
    beat = json.loads((settings.state_dir / "health.json").read_text())
    assert set(beat) >= {"time", "outcome", "last_ok", "counts", "error"}
    assert (settings.state_dir / "health.json").stat().st_mode & 0o777 == 0o600


def _loop_pass(settings: object, now: datetime) -> None:
    """One pass of the scheduled loop at a given clock time (the loop records health; --now does not)."""
    runner.loop(settings, timedelta(minutes=5), clock=lambda: now, max_passes=1, stop=runner.Stop())  # type: ignore[arg-type]


def test_attention_alert_appears_once_and_clears(practice: Practice) -> None:
    """Failing longer than alert_after writes one "needs attention" reminder; a good pass removes it."""
    _setup(practice)
    settings = load_settings(practice.config)
    t0 = local("2026-03-11 09:00")
    _loop_pass(settings, t0)
    saved = practice.calendar.rename(practice.root / "calendar-away")
    for minutes in (5, 60, 125, 130, 200):
        _loop_pass(settings, t0 + timedelta(minutes=minutes))
        assert runner.read_health(settings.state_dir)["outcome"] == "failed"  # type: ignore[index]
    alerts = [p for p in practice.events_dir.glob("*.ics") if "callsheet needs attention" in p.read_text()]
    assert len(alerts) == 1
    text = alerts[0].read_text()
    assert "last complete pass was Wed 11 Mar 09:00" in text
    assert "Error" not in text  # the cause in words, never a Python class name
    saved.rename(practice.calendar)
    _loop_pass(settings, t0 + timedelta(hours=4))
    assert not [p for p in practice.events_dir.glob("*.ics") if "callsheet needs attention" in p.read_text()]
    items = [read_item(p.read_bytes(), ref=str(p)) for p in practice.events_dir.glob("*.ics")]
    assert len(items) == 2


def test_second_incident_gets_a_fresh_alert(practice: Practice) -> None:
    """A second failing stretch writes its alert as a new item (servers reserve deleted names)."""
    _setup(practice)
    settings = load_settings(practice.config)
    t0 = local("2026-03-11 09:00")
    _loop_pass(settings, t0)
    names = []
    for start in (t0 + timedelta(hours=1), t0 + timedelta(hours=6)):
        away = practice.calendar.rename(practice.root / "calendar-away")
        for minutes in (0, 150):
            _loop_pass(settings, start + timedelta(minutes=minutes))
        names += [p.name for p in practice.events_dir.glob("*.ics") if "needs attention" in p.read_text()]
        away.rename(practice.calendar)
        _loop_pass(settings, start + timedelta(hours=3))
    assert len(names) == 2 and names[0] != names[1]


def test_simulated_now_is_not_a_pass_in_health(practice: Practice) -> None:
    """`run --now` is a simulation: health.json never records its time as the last pass."""
    _setup(practice)
    assert (
        main(["--config", str(practice.config), "run", "--once", "--now", "2026-03-11T12:00:00-05:00"]) == 0
    )
    assert runner.read_health(load_settings(practice.config).state_dir) is None


def test_status_table_and_json(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """status lists every client, who needs attention first, as a table and as JSON lines."""
    _setup(practice)
    now = "2026-03-11T12:00:00-05:00"
    capsys.readouterr()
    assert main(["--config", str(practice.config), "status", "--json", "--now", now]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["client"] for r in rows] == ["c003", "c001", "c002", "c004"]
    by_id = {r["client"]: r for r in rows}
    assert by_id["c001"]["open_calls"] == 1 and by_id["c001"]["days_since_contact"] == 8
    assert by_id["c002"]["next_booked"] == "2026-03-20T10:00:00-05:00"
    assert main(["--config", str(practice.config), "status", "--now", now]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == [
        "Client",
        "Last",
        "attended",
        "Next",
        "booked",
        "Open",
        "calls",
        "Days",
        "since",
        "Next",
        "call",
        "Status",
        "Rhythm",
        "Pause",
    ]
    assert "Avery" not in table  # aliases only
    # a call due later shows today (Cameron missed Monday and has nothing booked)
    assert [c["reason"] for c in by_id["c003"]["upcoming_calls"]] == ["not_rebooked"]
    assert "(did not rebook)" in table


def test_plan_table_shows_what_a_pass_does_and_what_is_coming(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan table lists every need a pass would write (stale ones with --include-stale) and the upcoming ones."""
    _setup(practice)
    practice.add("avery-old", vevent("avery-old", "Devon Ueda", local("2025-12-01 10:00")))
    old = ClientSpec("c005", "Emery Vance")
    practice.clients = (*practice.clients, old)
    practice.write_config()
    practice.add("emery-old", vevent("emery-old", "Emery Vance no show", local("2026-01-05 10:00")))
    now = "2026-03-11T12:00:00-05:00"
    capsys.readouterr()
    assert main(["--config", str(practice.config), "plan", "--now", now]) == 0
    plain = capsys.readouterr().out
    assert "Coming up" in plain and "stale" in plain and "(stale)" not in plain
    assert main(["--config", str(practice.config), "plan", "--include-stale", "--now", now]) == 0
    stale = capsys.readouterr().out
    assert "(stale)" in stale
    assert main(["--config", str(practice.config), "plan", "--include-stale", "--json", "--now", now]) == 0
    creates = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    created = [x for x in creates if x["action"] == "create"]
    table_rows = [line for line in stale.split("\n\n")[0].splitlines()[2:] if line.strip()]
    assert len(table_rows) == len(created)  # the table hides nothing the pass would write


def test_purge_touches_only_our_items(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """purge --dry-run lists, purge --yes removes only files carrying our key."""
    _setup(practice)
    assert (
        main(["--config", str(practice.config), "run", "--once", "--now", "2026-03-11T12:00:00-05:00"]) == 0
    )
    mine = practice.events_dir / "my-own-note.ics"
    mine.write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:20260311T150000Z\r\nSUMMARY:mine\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    capsys.readouterr()
    assert main(["--config", str(practice.config), "purge", "--dry-run"]) == 0
    assert "4 items would be removed" in capsys.readouterr().out
    assert len(list((practice.root / "out").rglob("callsheet-*.ics"))) == 4
    assert main(["--config", str(practice.config), "purge", "--yes"]) == 0
    assert list((practice.root / "out").rglob("callsheet-*.ics")) == []
    assert mine.exists()
    assert sorted(p.name for p in practice.calendar.iterdir()) == [
        "avery-last.ics",
        "blake-next.ics",
        "cameron-missed.ics",
    ]


def test_check_lists_every_check_and_the_fix(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """check proves read and write access, leaves nothing behind, and names the fix for a loose roster."""
    _setup(practice)
    capsys.readouterr()
    assert main(["--config", str(practice.config), "check", "--write-probe"]) == 0
    out = capsys.readouterr().out
    assert "[ok] reminders: can write events" in out and "[ok] reminders: can write tasks" in out
    assert "all checks passed" in out
    assert list((practice.root / "out").rglob("*.ics")) == []  # the write probes were removed
    (practice.root / "clients.toml").chmod(0o644)
    assert main(["--config", str(practice.config), "check"]) == 1
    out = capsys.readouterr().out
    assert (
        "is readable by others (mode 644)" in out
        and f"fix: chmod 600 {practice.root / 'clients.toml'}" in out
    )
    practice.calendar.rename(practice.root / "gone")
    assert main(["--config", str(practice.config), "check"]) == 1
    assert "source vdir: the source folder" in capsys.readouterr().out


def test_run_once_records_any_failure_in_health(
    practice: Practice, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under cron, a failing `run --once` (even an unexpected error) is recorded, so the alert can fire."""
    _setup(practice)

    def broken(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run_pass", broken)
    assert main(["--config", str(practice.config), "run", "--once"]) == 1
    beat = runner.read_health(load_settings(practice.config).state_dir)
    assert beat is not None and beat["outcome"] == "failed" and beat["error"] == "RuntimeError"
    assert "boom" not in json.dumps(beat)  # the class, never the message


def test_check_health_follows_the_loops_interval(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check --health` judges the age of the last good pass by the interval the loop runs at."""
    _setup(practice)
    settings = load_settings(practice.config)
    now = datetime.now(UTC)
    runner.write_health(
        settings.state_dir, now=now - timedelta(minutes=40), outcome="ok", counts={}, every=timedelta(hours=1)
    )
    assert main(["--config", str(practice.config), "check", "--health"]) == 0  # 40 min < 3 x 1 h
    runner.write_health(
        settings.state_dir,
        now=now - timedelta(minutes=40),
        outcome="ok",
        counts={},
        every=timedelta(minutes=5),
    )
    assert main(["--config", str(practice.config), "check", "--health"]) == 1  # 40 min > 3 x 5 min
