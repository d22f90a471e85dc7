"""Start-up (issue 17): a pass on a local folder imports only what a local folder needs.

Google's and CalDAV's libraries are heavy and are imported by the connector registry only when
the config names them (connectors/base.py); onboarding and the recurrence expander are imported
where they are used. Each test runs the real command line in a fresh interpreter and looks at
`sys.modules` when it is done.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.practice import Practice, local, vevent

ROOT = Path(__file__).resolve().parents[2]
NETWORK = ("googleapiclient", "google.auth", "google_auth_oauthlib", "niquests", "lxml", "caldav")

PROBE = """
import json, sys
from worker.cli import main
code = main(["--config", sys.argv[1], "run", "--once", "--now", "2026-03-20T09:00"])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _pass_modules(practice: Practice) -> set[str]:
    """Run one `run --once` pass in a fresh interpreter; the modules it had imported at the end."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(practice.config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-800:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr[-800:]
    return set(result["modules"])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_vdir_pass_imports_no_network_library(tmp_path: Path) -> None:
    """A cold and a warm pass on a folder import none of the Google or CalDAV libraries."""
    practice = Practice(tmp_path / "practice")
    practice.add("a", vevent("a", "Avery Quinn", local("2026-03-03 10:00"), rrule="FREQ=WEEKLY;COUNT=3"))
    for _ in range(2):
        assert _loaded(_pass_modules(practice), NETWORK) == []


def test_warm_vdir_pass_skips_onboarding_and_the_expander(tmp_path: Path) -> None:
    """A pass with nothing changed imports neither onboarding nor recurring_ical_events; a cold one expands."""
    practice = Practice(tmp_path / "practice")
    practice.add("a", vevent("a", "Avery Quinn", local("2026-03-03 10:00"), rrule="FREQ=WEEKLY;COUNT=3"))
    lazy = ("worker.onboarding", "recurring_ical_events", "x_wr_timezone", "click")
    cold = _pass_modules(practice)
    assert "recurring_ical_events" in cold and _loaded(cold, ("worker.onboarding",)) == []
    assert _loaded(_pass_modules(practice), lazy) == []
