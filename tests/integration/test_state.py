"""The state database: schema versions, appointment history, vanished appointments."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.practice import Practice, local, vevent
from worker.cli import main
from worker.errors import StateError
from worker.object_ids import object_id
from worker.state import SCHEMA_VERSION, State

pytestmark = pytest.mark.state_backends  # every test using `practice` runs on both state backends


def test_new_database_is_at_the_current_schema(tmp_path: Path) -> None:
    """A new state.db is created at the current schema version, 0600 in a 0700 folder."""
    state = State.open(tmp_path / "var")
    state.close()
    db = sqlite3.connect(tmp_path / "var" / "state.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert (tmp_path / "var" / "state.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "var").stat().st_mode & 0o777 == 0o700


def test_newer_schema_is_refused_and_kept(tmp_path: Path) -> None:
    """A database written by a newer callsheet is refused with a clear message and left untouched."""
    (tmp_path / "var").mkdir()
    db = sqlite3.connect(tmp_path / "var" / "state.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = (tmp_path / "var" / "state.db").read_bytes()
    with pytest.raises(StateError, match="newer than this callsheet"):
        State.open(tmp_path / "var")
    assert (tmp_path / "var" / "state.db").read_bytes() == before


def _plan(practice: Practice, now: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    capsys.readouterr()
    assert main(["--config", str(practice.config), "plan", "--json", "--now", now]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_vanished_appointment_counts_as_cancelled(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """A booked appointment deleted from the calendar before it starts is a cancellation, dated when noticed."""
    practice.add("avery-last", vevent("avery-last", "Avery Quinn", local("2026-03-03 10:00")))
    practice.add("avery-next", vevent("avery-next", "Avery Quinn", local("2026-03-17 10:00")))
    assert (
        main(["--config", str(practice.config), "run", "--once", "--now", "2026-03-11T12:00:00-05:00"]) == 0
    )
    practice.remove("avery-next")
    assert (
        main(["--config", str(practice.config), "run", "--once", "--now", "2026-03-12T09:00:00-05:00"]) == 0
    )
    lines = _plan(practice, "2026-03-14T10:00:00-05:00", capsys)
    (need,) = [x for x in lines if x["client"] == "c001"]
    assert (need["reason"], need["state"], need["due"]) == (
        "cancelled_not_rebooked",
        "due",
        "2026-03-14T09:00:00-05:00",
    )
    assert need["anchor"] == "avery-next|"


def test_history_outlives_the_calendar(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """A client seen months ago is remembered from state after the object left the calendar's window."""
    practice.add("avery-old", vevent("avery-old", "Avery Quinn", local("2026-01-06 10:00")))
    practice.add("personal", vevent("personal", "Dentist", local("2026-01-08 08:00")))  # stays
    assert (
        main(["--config", str(practice.config), "run", "--once", "--now", "2026-01-07T09:00:00-06:00"]) == 0
    )
    practice.remove("avery-old")  # an archive job removed it; it had already happened
    lines = _plan(practice, "2026-01-14T12:00:00-06:00", capsys)
    assert [(x["client"], x["reason"], x["state"]) for x in lines] == [("c001", "not_rebooked", "due")]


def test_cancellation_without_a_time_dates_from_when_it_was_noticed(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """A booked appointment later marked cancelled without LAST-MODIFIED counts as cancelled when noticed."""
    practice.add("avery-last", vevent("avery-last", "Avery Quinn", local("2026-03-03 10:00")))
    practice.add("avery-next", vevent("avery-next", "Avery Quinn", local("2026-03-20 10:00")))
    assert (
        main(["--config", str(practice.config), "run", "--once", "--now", "2026-03-11T12:00:00-05:00"]) == 0
    )
    practice.add(
        "avery-next", vevent("avery-next", "Avery Quinn", local("2026-03-20 10:00"), status="CANCELLED")
    )
    assert (
        main(["--config", str(practice.config), "run", "--once", "--now", "2026-03-12T09:00:00-05:00"]) == 0
    )
    (need,) = [x for x in _plan(practice, "2026-03-15T10:00:00-05:00", capsys) if x["client"] == "c001"]
    assert (need["reason"], need["state"], need["due"]) == (
        "cancelled_not_rebooked",
        "due",
        "2026-03-14T09:00:00-05:00",
    )


def test_schema_1_migrates_keeping_records_as_the_legacy_generation(tmp_path: Path) -> None:
    """A state written by schema 1 opens at the current schema: records kept (generation 0), objects filled."""
    import sqlite3

    from worker import state as state_mod

    folder = tmp_path / "var"
    folder.mkdir()
    db = sqlite3.connect(folder / "state.db", isolation_level=None)
    step = state_mod._MIGRATIONS[1]
    assert isinstance(step, str)
    for statement in step.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO reminders (key, kind, status, created_at, updated_at) VALUES ('k', 'event', 'tombstone', 't', 't')"
    )
    db.execute(
        "INSERT INTO occurrences (source, id, item, uid, rid, start, end) VALUES ('practice', 'u|', 'a.ics', 'u', '', 's', 'e')"
    )
    db.close()
    state = state_mod.State.open(folder)
    try:
        assert state.conn.execute("PRAGMA user_version").fetchone()[0] == state_mod.SCHEMA_VERSION
        (record,) = state.records().values()
        assert (record.status, record.generation) == ("tombstone", 0)
        assert state.objects("practice") == {object_id("a.ics")}
    finally:
        state.close()
