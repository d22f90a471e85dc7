"""The Google source, against the strict fake: an appointment the window moved past ages out of
the cursor (it still exists: never reported removed), while one deleted is removed; a cursor of
version 2 (no ends) is read incrementally, and still tells aged from deleted when the window moves.

Google's rules relied on (research/google-api.md): timeMin is an exclusive lower bound on an
instance's end, so an appointment ending before the window's start is simply not listed ("timeMin /
timeMax semantics"); a sync token cannot carry timeMin, so the "has anything changed?" check is not
window-filtered ("Parameters you cannot combine with syncToken", "Windowing a full sync").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Source
from connectors.google import api
from tests.contract.test_source_contract import AGED, ALL, SERIES_C, SINGLE_A, SINGLE_B, WINDOW
from tests.contract.test_source_contract_google import GoogleDriver
from tests.fakes.google import FakeGoogle
from tests.practice import local
from worker.config import load_settings
from worker.model import SourceBatch, Window
from worker.object_ids import GOOGLE_CURSOR
from worker.roster import Roster
from worker.state import State
from worker.sync import sync_source, window_for

pytestmark = pytest.mark.integration

# a week after AGED: SINGLE_B (Mar 12) is now older than the window too
LATEST = Window(start=local("2026-03-18 00:00"), end=local("2026-04-22 00:00"))


@pytest.fixture
def driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleDriver]:
    monkeypatch.setattr(api, "DEFAULT_RETRY", api.RetryPolicy(budget=5.0, base=0.01, cap=0.05))
    with FakeGoogle() as fake:
        yield GoogleDriver(fake, tmp_path / "google")


@pytest.fixture
def loaded(driver: GoogleDriver) -> Iterator[tuple[GoogleDriver, Source, SourceBatch]]:
    """The calendar holding ALL, its source, and the first read over WINDOW."""
    for appt in ALL:
        driver.put(appt)
    source = driver.source()
    try:
        yield driver, source, source.read(WINDOW, None)
    finally:
        source.close()


def _items(batch: SourceBatch) -> dict[str, Any]:
    calendars = batch.cursor["calendars"]
    assert isinstance(calendars, dict)
    items = calendars["primary"]["items"]
    assert isinstance(items, dict)
    return items


def _version_2(cursor: dict[str, object]) -> dict[str, object]:
    """The cursor as callsheet wrote it before the ends were kept (object ids, a list)."""
    calendars = cursor["calendars"]
    assert isinstance(calendars, dict)
    old = {cid: {"token": c["token"], "items": sorted(c["items"])} for cid, c in calendars.items()}
    return {"v": 2, "window": cursor["window"], "calendars": old}


def _window_listings(driver: GoogleDriver, calendar: str = "primary") -> list[tuple[str | None, str | None]]:
    """(timeMin, timeMax) of each instance listing of `calendar` (its first pages only)."""
    return [
        (c.param("timeMin"), c.param("timeMax"))
        for c in driver.fake.calls("calendar.events.list")
        if c.param("singleEvents") == "true" and c.param("pageToken") is None and c.calendar == calendar
    ]


def test_cursor_keeps_the_last_end_of_each_object(loaded: tuple[GoogleDriver, Source, SourceBatch]) -> None:
    """The cursor maps each object to the end of its last instance in the window (ISO, with offset)."""
    driver, _, first = loaded
    items = _items(first)
    assert first.cursor["v"] == GOOGLE_CURSOR == 3 and first.complete
    assert items[driver.item(SINGLE_A)] == local("2026-03-10 10:50").isoformat()
    assert items[driver.item(SERIES_C)] == local("2026-03-30 09:50").isoformat()


def test_aged_appointment_is_not_removed_while_a_deleted_one_is(
    loaded: tuple[GoogleDriver, Source, SourceBatch],
) -> None:
    """The window moves past SINGLE_A while SINGLE_B is deleted: only SINGLE_B is removed, and A leaves the cursor."""
    driver, source, first = loaded
    driver.delete(SINGLE_B)
    batch = source.read(AGED, first.cursor)
    a, b = driver.item(SINGLE_A), driver.item(SINGLE_B)
    assert batch.removed == {b}
    assert a not in batch.changed and b not in batch.changed
    assert not batch.complete  # an aged object must not be declared gone by omission either
    assert set(_items(batch)) == {driver.item(SERIES_C)}
    # the next day: nothing more is reported about either of them
    again = source.read(LATEST, batch.cursor)
    assert again.removed == set() and not again.complete and set(again.changed) == {driver.item(SERIES_C)}


def test_deleted_before_the_window_moved_past_it_is_removed(
    loaded: tuple[GoogleDriver, Source, SourceBatch],
) -> None:
    """A deletion the pass sees only once the window has moved is still a removal when the object was in the new window."""
    driver, source, first = loaded
    driver.delete(SINGLE_B)
    driver.delete(SINGLE_A)
    batch = source.read(AGED, first.cursor)
    # B (Mar 12) lies in the new window: removed; A (Mar 10) is older than it: history either way
    assert batch.removed == {driver.item(SINGLE_B)}


def test_version_2_cursor_reads_incrementally(loaded: tuple[GoogleDriver, Source, SourceBatch]) -> None:
    """A cursor written before the ends were kept: nothing changed and the same window, so no window listing."""
    driver, source, first = loaded
    driver.fake.clear_log()
    batch = source.read(WINDOW, _version_2(first.cursor))
    assert batch.changed == {} and batch.removed == set() and not batch.complete
    assert _window_listings(driver) == []
    assert batch.cursor["v"] == GOOGLE_CURSOR
    assert set(_items(batch)) == {driver.item(a) for a in ALL}


def test_version_2_cursor_tells_aged_from_deleted_when_the_window_moves(
    loaded: tuple[GoogleDriver, Source, SourceBatch],
) -> None:
    """Ends unknown: the stretch the window left is listed once, so A ages out and deleted B is removed."""
    driver, source, first = loaded
    driver.delete(SINGLE_B)
    driver.fake.clear_log()
    batch = source.read(AGED, _version_2(first.cursor))
    assert batch.removed == {driver.item(SINGLE_B)} and driver.item(SINGLE_A) not in batch.changed
    # the new window, and the stretch it left
    assert _window_listings(driver) == [
        (AGED.start.isoformat(), AGED.end.isoformat()),
        (WINDOW.start.isoformat(), AGED.start.isoformat()),
    ]
    assert set(_items(batch)) == {driver.item(SERIES_C)}
    assert all(end is not None for end in _items(batch).values())
    # with the ends known, the next move costs no extra listing
    driver.fake.clear_log()
    again = source.read(LATEST, batch.cursor)
    assert again.removed == set() and _window_listings(driver) == [
        (LATEST.start.isoformat(), LATEST.end.isoformat())
    ]


def test_the_state_keeps_holding_an_aged_appointment(driver: GoogleDriver) -> None:
    """Through the runner's sync: after the window moved past A, the state still counts A as held, not B (deleted)."""
    settings = load_settings(driver.practice.config)
    for appt in ALL:
        driver.put(appt)
    # the default history is 400 days: these passes' windows start on Mar 9 and Mar 12, 2026
    first, second = (local("2027-04-13 12:00"), local("2027-04-16 12:00"))
    assert window_for(settings, second).start == local("2026-03-12 00:00")
    source = driver.source()
    state = State.open(settings.state_dir)
    try:
        roster = Roster.of(settings.clients)
        sync_source(source, settings, state, roster, first)
        assert state.objects("practice") == {driver.item(a) for a in ALL}
        driver.delete(SINGLE_B)
        sync_source(source, settings, state, roster, second)  # no SourceLossError either
        assert state.objects("practice") == {driver.item(SINGLE_A), driver.item(SERIES_C)}
    finally:
        state.close()
        source.close()


def test_a_state_written_with_a_version_2_cursor_keeps_working(driver: GoogleDriver) -> None:
    """A state whose stored cursor is version 2: the next pass is incremental, the one after the move tells aged from deleted."""
    settings = load_settings(driver.practice.config)
    for appt in ALL:
        driver.put(appt)
    first, same_day, moved = (local(t) for t in ("2027-04-13 12:00", "2027-04-13 18:00", "2027-04-16 12:00"))
    source = driver.source()
    state = State.open(settings.state_dir)
    try:
        roster = Roster.of(settings.clients)
        sync_source(source, settings, state, roster, first)
        stored = state.cursor("practice")
        assert stored is not None
        with state.transaction() as db:
            db.execute("UPDATE cursors SET cursor = ?", (json.dumps(_version_2(stored)),))
        driver.fake.clear_log()
        sync_source(source, settings, state, roster, same_day)
        assert _window_listings(driver) == []  # no cold re-list
        upgraded = state.cursor("practice")
        assert upgraded is not None and upgraded["v"] == GOOGLE_CURSOR
        driver.delete(SINGLE_B)
        sync_source(source, settings, state, roster, moved)
        assert state.objects("practice") == {driver.item(SINGLE_A), driver.item(SERIES_C)}
    finally:
        state.close()
        source.close()
