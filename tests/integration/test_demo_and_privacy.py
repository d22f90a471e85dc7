"""The demo practice end to end, and that no client data ever reaches the logs."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from worker import commands, demo
from worker import log as logsetup
from worker.cli import main

NOW = datetime(2026, 11, 27, 15, 10, tzinfo=UTC)  # a Friday, 09:10 in Chicago


def _secrets(folder: Path) -> list[str]:
    """Every piece of client data in the demo: names, phones, titles, descriptions."""
    out: list[str] = []
    for _cid, name, *_rest in demo.CLIENTS:
        out += [name, *name.split()]
    out += [f"+1 555 01{cid[-2:]}" for cid, *_ in demo.CLIENTS]
    tz = ZoneInfo(demo.TIMEZONE)
    for ev in demo._events(NOW.astimezone(tz).date(), NOW, tz):
        out.append(ev.summary)
    return [s for s in out if len(s) > 3]


def test_demo_prints_call_sheet_and_twice_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callsheet demo` prints a call sheet covering the seed's situations; a second run adds nothing."""
    folder = tmp_path / "demo"
    assert main(["demo", "--dir", str(folder), "--now", NOW.isoformat()]) == 0
    out = capsys.readouterr().out
    for reason in (
        "missed appointment",
        "did not rebook",
        "cancelled, not rebooked",
        "keeps cancelling",
        "send termination letter",
        "meets an acquaintance",
        "double-booked",
        "late, not arrived",
    ):
        assert reason in out, reason
    assert "no consent" in out and "J.O." not in out  # K.N. has no consent; the discharged client is absent
    files = sorted(p.name for p in (folder / "out").rglob("*.ics"))
    assert len(files) >= 16
    assert main(["demo", "--dir", str(folder), "--now", NOW.isoformat()]) == 0
    again = capsys.readouterr().out
    assert "This pass wrote 0 new calendar items (events and tasks;" in again
    assert f"{out.count(' create')} calls due." in out  # calls and calendar items are counted apart
    assert sorted(p.name for p in (folder / "out").rglob("*.ics")) == files


def test_no_client_data_in_debug_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A whole demo pass plus plan and status at debug level logs ids and counts, never client data."""
    stream = io.StringIO()
    folder = tmp_path / "demo"
    config = demo.create_practice(folder, NOW)
    logsetup.configure("debug", stream=stream, json=True)
    from worker.config import load_settings

    settings = load_settings(config)
    commands.plan(settings, NOW, as_json=True, include_stale=False)
    commands.run_once(settings, NOW, include_stale=False)
    commands.status(settings, NOW, as_json=False)
    logged = stream.getvalue()
    lines = [json.loads(line) for line in logged.splitlines()]
    assert any(line["event"] == "pass.finished" for line in lines)
    assert any(line["event"] == "reminder.created" for line in lines)
    for secret in _secrets(folder):
        assert secret not in logged, secret
    capsys.readouterr()


def test_allow_list_drops_unknown_keys() -> None:
    """A log call with a key outside the allow-list loses that key."""
    stream = io.StringIO()
    logsetup.configure("info", stream=stream, json=True)
    import structlog

    structlog.get_logger().info("test.event", client="c001", name="Avery Quinn", summary="secret")
    line = json.loads(stream.getvalue())
    assert line["client"] == "c001" and "name" not in line and "summary" not in line
