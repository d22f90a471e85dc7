"""Scenario fixtures: a practice on disk and the real CLI run in-process.

Every scenario writes a small calendar (or copies a golden file from tests/data/), runs
`callsheet --config X plan --json --now T` through `worker.cli.main`, and compares the exact
lines it prints: (client, reason, state, due). The test practice's zone is America/Chicago;
in 2026 its clocks go forward on Sunday 8 March and back on Sunday 1 November, so dues on
or before 7 March read -06:00 and the rest of March -05:00.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.practice import DEFAULT_CLIENTS, ClientSpec, Practice
from worker.cli import main

DATA = Path(__file__).resolve().parent.parent / "data"

Line = tuple[str, str, str, str]


def make_practice(
    root: Path,
    *,
    check_in: bool = False,
    clients: Sequence[ClientSpec] = DEFAULT_CLIENTS,
    rules: dict[str, str] | None = None,
    markers: dict[str, object] | None = None,
) -> Practice:
    """A practice with the default roster; `check_in` sets markers.arrived = ["arrived"]."""
    wanted: dict[str, object] = dict(markers or {})
    if check_in:
        wanted.setdefault("arrived", ["arrived"])
    return Practice(root, clients=clients, rules=dict(rules or {}), markers=wanted)


def copy_golden(practice: Practice, name: str) -> None:
    """Put tests/data/<name>.ics into the practice's calendar folder."""
    shutil.copyfile(DATA / f"{name}.ics", practice.calendar / f"{name}.ics")


@pytest.fixture
def practice(tmp_path: Path) -> Practice:
    """The default practice (no check-in markers)."""
    return make_practice(tmp_path / "practice")


@pytest.fixture
def plan_json(capsys: pytest.CaptureFixture[str]) -> Callable[..., list[dict[str, object]]]:
    """Run `plan --json --now T` against a practice; return the printed objects."""

    def run(practice: Practice, now: str, *extra: str) -> list[dict[str, object]]:
        capsys.readouterr()
        code = main(["--config", str(practice.config), "plan", "--json", "--now", now, *extra])
        out = capsys.readouterr().out
        assert code == 0, out
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    return run


@pytest.fixture
def plan(plan_json: Callable[..., list[dict[str, object]]]) -> Callable[..., list[Line]]:
    """Run `plan --json --now T`; return (client, reason, state, due) per line, in order."""

    def run(practice: Practice, now: str, *extra: str) -> list[Line]:
        return [
            (str(o["client"]), str(o["reason"]), str(o["state"]), str(o["due"]))
            for o in plan_json(practice, now, *extra)
        ]

    return run


@pytest.fixture
def run_once(capsys: pytest.CaptureFixture[str]) -> Callable[[Practice, str], None]:
    """Run `run --once --now T` (writes reminders into the practice's out/ folders)."""

    def run(practice: Practice, now: str) -> None:
        code = main(["--config", str(practice.config), "run", "--once", "--now", now])
        out = capsys.readouterr()
        assert code == 0, out.err

    return run


def written(folder: Path) -> list[dict[str, object]]:
    """The reminders a pass wrote into a vdir folder: client, reason, start, title, description."""
    from icalendar import Calendar

    out: list[dict[str, object]] = []
    for path in sorted(folder.glob("*.ics")) if folder.is_dir() else []:
        for component in Calendar.from_ical(path.read_bytes()).walk():
            if component.name not in ("VEVENT", "VTODO"):
                continue
            moment = component.get("DTSTART") or component.get("DUE")
            out.append(
                {
                    "client": str(component.get("X-CALLSHEET-CLIENT")),
                    "reason": str(component.get("X-CALLSHEET-REASON")),
                    "start": moment.dt if moment is not None else None,
                    "title": str(component.get("SUMMARY")),
                    "description": str(component.get("DESCRIPTION")),
                }
            )
    return sorted(out, key=lambda r: (str(r["client"]), str(r["reason"])))
