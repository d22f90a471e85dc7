"""The Google connector end to end, through google-api-python-client against the local fake:
same needs as vdir, reminders written once, cheap passes when nothing changed, the 410 path."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from connectors.google.convert import KEY_PROP, MARK_PROP
from tests.fakes.google import (
    SAMPLE_NOW,
    Appt,
    FakeGoogle,
    GooglePractice,
    google_id,
    google_practice,
    seed,
    vdir_twin,
)
from tests.practice import local
from worker.cli import main
from worker.config import load_settings
from worker.runner import window_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("google_fast_retries")]

LATER = "2026-03-18T12:30:00-05:00"
SOON = "2026-03-18T12:05:00-05:00"  # before the calls placed at 12:15 and 12:30
NEXT_DAY = "2026-03-19T12:00:00-05:00"


@pytest.fixture
def gp(fake: FakeGoogle, tmp_path: Path) -> GooglePractice:
    return google_practice(fake, tmp_path / "google")


def _plan(config: Path, capsys: pytest.CaptureFixture[str], now: str = SAMPLE_NOW) -> list[dict[str, str]]:
    capsys.readouterr()
    assert main(["--config", str(config), "plan", "--json", "--now", now]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _run(config: Path, now: str = SAMPLE_NOW) -> int:
    return main(["--config", str(config), "run", "--once", "--now", now])


def _needs(lines: list[dict[str, str]]) -> list[tuple[str, str, str, str]]:
    return sorted((x["client"], x["reason"], x["state"], x["due"]) for x in lines)


def _writes(fake: FakeGoogle) -> list[str]:
    return [
        c.method
        for c in fake.log
        if c.http_method in ("POST", "PATCH", "PUT", "DELETE") and c.method != "oauth.token"
    ]


def test_google_practice_plans_the_same_needs_as_its_vdir_twin(
    gp: GooglePractice, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A practice with series, moved, re-titled and cancelled instances, a declined attendee, a
    foreign offset, an all-day and a deleted event gives the same needs on Google as on vdir."""
    google = _needs(_plan(gp.config, capsys))
    twin = _needs(_plan(vdir_twin(tmp_path / "vdir").config, capsys))
    assert google == twin
    assert {(c, r, s) for c, r, s, _ in google} == {
        ("c001", "no_show", "due"),  # the re-titled instance of a series that crosses DST
        ("c003", "cancelled_not_rebooked", "due"),  # a cancelled instance, minimal on Google
        ("c006", "double_booked", "due"),  # across the two calendars
        ("c002", "cancelled_not_rebooked", "upcoming"),  # the client attendee declined
    }
    assert not _writes(gp.fake)  # plan writes nothing, not even the task list
    assert "Client calls" not in gp.fake.tasklist_titles()


def test_anchor_keeps_the_recurrence_id_of_a_series_instance(
    gp: GooglePractice, capsys: pytest.CaptureFixture[str]
) -> None:
    """An instance's anchor is its series id plus its original start in UTC, as on vdir."""
    lines = {x["reason"] + x["client"]: x for x in _plan(gp.config, capsys)}
    uid, rid = lines["no_showc001"]["anchor"].split("|")
    assert rid == "20260223T160000Z"
    assert uid and "_" not in uid  # the series id, not the instance id
    assert lines["double_bookedc006"]["anchor"].endswith("|")


def test_reminders_and_tasks_are_written_once_and_a_second_pass_writes_nothing(gp: GooglePractice) -> None:
    """The first pass writes one event and one task per due need; the second writes nothing."""
    assert _run(gp.config) == 0
    events = gp.ours()
    tasks = gp.tasks()
    assert len(events) == 3 and len(tasks) == 3
    assert sorted(e["extendedProperties"]["private"]["x-callsheet-reason"] for e in events) == [
        "cancelled_not_rebooked",
        "double_booked",
        "no_show",
    ]
    for event in events:
        private = event["extendedProperties"]["private"]
        assert event["id"] == f"{private[KEY_PROP]}e1"  # identity.google_event_id(key, 1)
        assert private[MARK_PROP] == "callsheet"
        assert set(private) >= {
            "x-callsheet-key",
            "x-callsheet-reason",
            "x-callsheet-client",
            "x-callsheet-hash",
        }
        assert event["visibility"] == "private" and event["transparency"] == "transparent"
        assert event["reminders"] == {"useDefault": False, "overrides": [{"method": "popup", "minutes": 0}]}
        assert "attendees" not in event
    inserts = gp.fake.calls("calendar.events.insert")
    assert {c.param("sendUpdates") for c in inserts} == {"none"}
    for task in tasks:
        assert task["notes"].splitlines()[-2] == "-- callsheet --"
        assert task["notes"].splitlines()[-1].startswith("callsheet-key: ")
        assert task["due"].endswith("T00:00:00.000Z")
    gp.fake.clear_log()
    assert _run(gp.config) == 0
    assert _writes(gp.fake) == []
    assert len(gp.ours()) == 3 and len(gp.tasks()) == 3


def test_nothing_changed_costs_one_request_per_calendar_plus_the_sink_listing(gp: GooglePractice) -> None:
    """With nothing changed, a pass asks each calendar once (sync token) and lists our events and tasks: 4."""
    assert _run(gp.config) == 0
    gp.fake.clear_log()
    assert _run(gp.config, LATER) == 0
    methods = [c.method for c in gp.fake.log]
    sync = gp.fake.calls("calendar.events.list")
    source_calls = [c for c in sync if c.param("privateExtendedProperty") is None]
    assert len(source_calls) == 2  # one per calendar
    assert all(c.param("syncToken") and c.param("singleEvents") is None for c in source_calls)
    assert {c.calendar for c in source_calls} == {"primary", "second.fake@group.calendar.google.com"}
    assert all(c.param("fields") == "nextPageToken,nextSyncToken,items(id)" for c in source_calls)
    # the task list's id is kept from the first pass: no tasklists.list
    assert sorted(methods) == sorted(["calendar.events.list"] * 3 + ["tasks.tasks.list"])
    assert len(methods) == 4


def test_a_change_is_seen_and_only_its_calendar_is_relisted(
    gp: GooglePractice, capsys: pytest.CaptureFixture[str]
) -> None:
    """A change on one calendar re-lists that calendar's window, all pages, and nothing else."""
    assert _run(gp.config) == 0
    # the therapist books Cameron again: the cancelled_not_rebooked need resolves
    seed(
        gp.fake,
        "primary",
        [Appt("single-cameron-new", "Cameron Tate", local("2026-03-24 09:00"))],
        "America/Chicago",
    )
    gp.fake.clear_log()
    assert _run(gp.config, SOON) == 0
    windowed = [c for c in gp.fake.calls("calendar.events.list") if c.param("singleEvents") == "true"]
    assert windowed and all(c.calendar == "primary" for c in windowed)
    assert len(windowed) > 1  # the window is paged (small pages in the fake) and every page is read
    assert all(
        c.param("showDeleted") == "true" and c.param("timeMin") and c.param("timeMax") for c in windowed
    )
    reasons = {x["client"] + x["reason"] for x in _plan(gp.config, capsys, SOON)}
    assert "c003cancelled_not_rebooked" not in reasons
    # its future reminder event was withdrawn (deleted) and its task completed with a note
    live = {e["extendedProperties"]["private"]["x-callsheet-client"] for e in gp.ours()}
    assert "c003" not in live
    done = [t for t in gp.tasks() if "client=c003" in t["notes"]]
    assert done and done[0]["status"] == "completed" and "callsheet: closed" in done[0]["notes"]
    assert done[0]["notes"].splitlines()[-1].startswith("callsheet-key: ")


def test_an_expired_sync_token_answers_410_and_forces_a_full_read(
    gp: GooglePractice, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 410 drops the token and re-lists the window; what vanished meanwhile is acted on."""
    assert _run(gp.config) == 0
    finley = next(e for e in gp.fake.events(gp.second_calendar) if e["summary"] == "Finley Wu")
    gp.fake.expire_sync_tokens()
    gp.fake.delete_event(gp.second_calendar, finley["id"])
    gp.fake.clear_log()
    assert _run(gp.config, SOON) == 0
    gone = [c for c in gp.fake.calls("calendar.events.list") if c.status == 410]
    assert len(gone) == 2
    relisted = [c for c in gp.fake.calls("calendar.events.list") if c.param("singleEvents") == "true"]
    assert {c.calendar for c in relisted} == {"primary", "second.fake@group.calendar.google.com"}
    reasons = {x["client"] + x["reason"] for x in _plan(gp.config, capsys, SOON)}
    assert "c006double_booked" not in reasons
    assert "c006" not in {e["extendedProperties"]["private"]["x-callsheet-client"] for e in gp.ours()}
    gp.fake.clear_log()
    assert _run(gp.config, SOON) == 0  # and the next pass is cheap again with the new tokens
    assert len([c for c in gp.fake.calls("calendar.events.list") if c.param("syncToken")]) == 2
    assert not [c for c in gp.fake.calls("calendar.events.list") if c.param("singleEvents")]


def test_a_failed_read_after_a_410_leaves_state_and_cursor_unchanged(gp: GooglePractice) -> None:
    """When the full read after a 410 fails, the pass fails (exit 1) and nothing is half-stored."""
    assert _run(gp.config) == 0
    db = gp.practice.root / "var" / "state.db"

    def snapshot() -> tuple[object, ...]:
        with sqlite3.connect(db) as conn:
            return (
                conn.execute("SELECT cursor FROM cursors").fetchall(),
                conn.execute("SELECT * FROM occurrences ORDER BY source, id").fetchall(),
            )

    before = snapshot()
    gp.fake.expire_sync_tokens()
    gp.fake.inject("calendar.events.list", status=500, times=1000)
    assert _run(gp.config, LATER) == 1
    assert snapshot() == before
    gp.fake.faults.clear()
    assert _run(gp.config, LATER) == 0
    assert snapshot()[0] != before[0]


def test_the_window_moving_relists_without_a_changed_calendar(gp: GooglePractice) -> None:
    """When the day changes (the window moves) every calendar's window is listed again."""
    assert _run(gp.config) == 0
    gp.fake.clear_log()
    assert _run(gp.config, NEXT_DAY) == 0
    windowed = [c for c in gp.fake.calls("calendar.events.list") if c.param("singleEvents") == "true"]
    assert {c.calendar for c in windowed} == {"primary", "second.fake@group.calendar.google.com"}
    window = window_for(load_settings(gp.config), datetime.fromisoformat(NEXT_DAY))
    assert {(c.param("timeMin"), c.param("timeMax")) for c in windowed} == {
        (window.start.isoformat(), window.end.isoformat())
    }


def _occurrences(gp: GooglePractice, uid: str) -> list[tuple[str, int]]:
    with sqlite3.connect(gp.practice.root / "var" / "state.db") as conn:
        rows = conn.execute("SELECT start, cancelled FROM occurrences WHERE uid = ? ORDER BY start", (uid,))
        return [(str(start), int(cancelled)) for start, cancelled in rows]


def test_a_deleted_series_is_absent_on_a_cold_start_not_a_run_of_cancellations(gp: GooglePractice) -> None:
    """Google lists a deleted series as cancelled instances; its series is cancelled, so none of them is read."""
    assert _run(gp.config) == 0
    windowed = [c for c in gp.fake.calls("calendar.events.list") if c.param("singleEvents") == "true"]
    assert windowed  # the fake did list the old series' cancelled instances (showDeleted + singleEvents)
    assert _occurrences(gp, google_id("series-blake-old")) == []
    assert gp.fake.calls("calendar.events.get")  # the series itself was asked


def test_deleting_a_live_series_keeps_its_past_as_history(gp: GooglePractice) -> None:
    """Emery's series deleted between passes: sessions already held stay attended, the future ones are cancelled."""
    assert _run(gp.config) == 0
    uid = google_id("series-emery")
    before = _occurrences(gp, uid)
    assert before and all(cancelled == 0 for _, cancelled in before)
    gp.fake.delete_event(gp.second_calendar, uid, at="2026-03-18T17:01:00Z")
    assert _run(gp.config, SOON) == 0
    after = dict(_occurrences(gp, uid))
    now = datetime.fromisoformat(SOON)
    past = [s for s in after if datetime.fromisoformat(s) < now]
    future = [s for s in after if datetime.fromisoformat(s) >= now]
    assert past and all(after[s] == 0 for s in past)
    assert future and all(after[s] == 1 for s in future)


def test_the_window_listing_asks_only_for_event_types_that_matter(gp: GooglePractice) -> None:
    """Every listing of the practice calendars sends eventTypes default, focusTime, outOfOffice (no birthdays)."""
    assert _run(gp.config) == 0
    source = [c for c in gp.fake.calls("calendar.events.list") if c.param("privateExtendedProperty") is None]
    assert source and all(
        sorted(c.query["eventTypes"]) == ["default", "focusTime", "outOfOffice"] for c in source
    )


def test_colour_names_mark_a_no_show_like_their_ids(
    fake: FakeGoogle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """no_show_colors = ["Tomato"] reads an appointment coloured "11" as a no-show."""
    gp = google_practice(fake, tmp_path / "google")
    text = gp.config.read_text(encoding="utf-8").replace(
        "[markers]\n", '[markers]\nno_show_colors = ["Tomato"]\n'
    )
    gp.config.write_text(text, encoding="utf-8")
    fake.add_event(
        gp.second_calendar,
        {
            "summary": "Emery Vance",
            "colorId": "11",
            "start": {"dateTime": "2026-03-17T15:00:00-05:00", "timeZone": "America/Chicago"},
            "end": {"dateTime": "2026-03-17T15:50:00-05:00", "timeZone": "America/Chicago"},
        },
    )
    reasons = {(x["client"], x["reason"]) for x in _plan(gp.config, capsys)}
    assert ("c005", "no_show") in reasons


def _single(summary: str, start: str, **extra: object) -> dict[str, object]:
    begin = datetime.fromisoformat(start)
    return {
        "summary": summary,
        "start": {"dateTime": begin.isoformat(), "timeZone": "America/Chicago"},
        "end": {"dateTime": (begin + timedelta(minutes=50)).isoformat(), "timeZone": "America/Chicago"},
        "created": "2026-03-01T12:00:00Z",
        **extra,
    }


def test_a_deleted_appointment_counts_only_while_google_shows_its_details(gp: GooglePractice) -> None:
    """Deleted before its start with its details: cancelled at the deletion; once the details are gone: absent."""
    ident = gp.fake.add_event(
        "primary", _single("Blake Rowe", "2026-03-20T10:00:00-05:00", id="blakedeleted1")
    )
    gp.fake.delete_event("primary", ident, at="2026-03-15T14:00:00Z")
    assert _run(gp.config) == 0
    assert _occurrences(gp, ident) == [("2026-03-20T15:00:00+00:00", 1)]
    cold = google_practice(gp.fake, gp.practice.root.parent / "cold", seeded=False)
    gp.fake.forget_details("primary", ident)
    assert _run(cold.config) == 0
    assert _occurrences(cold, ident) == []


def test_a_deleted_copy_of_a_moved_appointment_is_not_a_cancellation(gp: GooglePractice) -> None:
    """The same event live in one calendar and deleted in another was moved: it stays booked."""
    body = _single("Blake Rowe", "2026-03-20T10:00:00-05:00", id="blakemoved001")
    gp.fake.add_event("primary", body)
    gp.fake.add_event(gp.second_calendar, body)
    gp.fake.delete_event(gp.second_calendar, "blakemoved001", at="2026-03-15T14:00:00Z")
    assert _run(gp.config) == 0
    assert _occurrences(gp, "blakemoved001") == [("2026-03-20T15:00:00+00:00", 0)]
