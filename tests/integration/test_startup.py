"""Start-up (issue 17): a pass on a local folder imports only what a local folder needs.

Google's and CalDAV's libraries are heavy and are imported by the connector registry only when
the config names them (connectors/base.py); onboarding and the recurrence expander are imported
where they are used; icalendar only when a calendar or reminder file changed (the vdir sink
remembers what its files said, connectors/vdir.py). Each test runs the real command line in a
fresh interpreter and looks at `sys.modules` (and the environment) when it is done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.practice import Practice, local, vevent

ROOT = Path(__file__).resolve().parents[2]
NETWORK = ("googleapiclient", "google.auth", "google_auth_oauthlib", "niquests", "lxml", "caldav")

PROBE = """
import json, os, sys
from worker.cli import main
code = main(["--config", sys.argv[1], "run", "--once", "--now", "2026-03-20T09:00"])
loader = sys.modules.get("pydantic.plugin._loader")
print(json.dumps({
    "code": code,
    "modules": sorted(sys.modules),
    "plugins": os.environ.get("PYDANTIC_DISABLE_PLUGINS"),
    "scanned": loader is not None and loader._plugins is not None,
}))
"""


def _pass(practice: Practice) -> dict[str, object]:
    """Run one `run --once` pass in a fresh interpreter; what it had imported at the end."""
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(practice.config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-800:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr[-800:]
    return result


def _pass_modules(practice: Practice) -> set[str]:
    """Run one `run --once` pass in a fresh interpreter; the modules it had imported at the end."""
    modules = _pass(practice)["modules"]
    assert isinstance(modules, list)
    return set(modules)


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_vdir_pass_imports_no_network_library(tmp_path: Path) -> None:
    """A cold and a warm pass on a folder import none of the Google or CalDAV libraries."""
    practice = Practice(tmp_path / "practice")
    practice.add("a", vevent("a", "Avery Quinn", local("2026-03-03 10:00"), rrule="FREQ=WEEKLY;COUNT=3"))
    for _ in range(2):
        assert _loaded(_pass_modules(practice), NETWORK) == []


def test_warm_vdir_pass_skips_onboarding_and_the_expander(tmp_path: Path) -> None:
    """A pass with nothing changed imports neither onboarding, the expander nor difflib; a cold one expands."""
    practice = Practice(tmp_path / "practice")
    practice.add("a", vevent("a", "Avery Quinn", local("2026-03-03 10:00"), rrule="FREQ=WEEKLY;COUNT=3"))
    lazy = ("worker.onboarding", "recurring_ical_events", "x_wr_timezone", "click", "difflib")
    cold = _pass_modules(practice)
    assert "recurring_ical_events" in cold and _loaded(cold, ("worker.onboarding",)) == []
    assert _loaded(_pass_modules(practice), lazy) == []


def test_warm_pass_parses_no_reminder_and_imports_no_icalendar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the reminder files are remembered, a pass with nothing changed never imports icalendar."""
    practice = Practice(tmp_path / "practice")
    practice.add("a", vevent("a", "Avery Quinn no show", local("2026-03-09 10:00")))
    memo = practice.root / "var" / "vdir-reminders.json"
    assert "icalendar" in _pass_modules(practice)  # writes the reminders
    assert not memo.exists()  # written within the last two seconds: not remembered yet
    time.sleep(2.1)
    assert "icalendar" in _pass_modules(practice)  # reads them once more, and remembers them
    written = sorted(str(p) for p in (practice.root / "out").rglob("callsheet-*.ics"))
    assert written and sorted(json.loads(memo.read_text())["files"]) == written
    assert _loaded(_pass_modules(practice), ("icalendar",)) == []


def test_pydantic_plugin_scan_is_off(tmp_path: Path) -> None:
    """A pass turns pydantic's plugin discovery off (no scan of every distribution's entry points)."""
    practice = Practice(tmp_path / "practice")
    practice.add("a", vevent("a", "Avery Quinn", local("2026-03-03 10:00")))
    result = _pass(practice)
    assert result["plugins"] == "__all__" and result["scanned"] is False
