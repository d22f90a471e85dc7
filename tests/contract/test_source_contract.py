"""The contract every appointment source keeps, run against the in-memory source and vdir.

The same `SourceContract` class runs on CalDAV (Radicale and Xandikos, in
test_source_contract_caldav.py) and Google (the local fake, in test_source_contract_google.py):
each concrete class provides a `driver` fixture, a `SourceDriver` that changes the calendar
behind the source's back (as the therapist or a sync tool would) and builds the Source.

The cases: first read, idle re-read, a changed object, a deleted object, the window moving (and
moving past a one-off, which still exists), an emptied source (and the runner's source-loss guard,
worker/sync.check_loss, on it, also on the first read of a new day), and hostile objects (not
iCalendar, a recurrence bomb, a rule that never advances: skipped, counted, nothing logged, fast).
The objects are `Appt`s (tests/fakes/google/practice.py), written as iCalendar or as Google events.
A case a connector fails is marked xfail(strict=True) in its module, with the defect as reason.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
import os
import signal
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from connectors.base import Source
from connectors.vdir import VdirSource
from tests.fakes.google.practice import Appt
from tests.fakes.memory import MemorySource
from tests.practice import TZ, Practice, local, vcalendar
from worker.config import load_settings
from worker.errors import SourceLossError
from worker.model import Event, SourceBatch, Window
from worker.object_ids import object_id
from worker.sync import check_loss

WINDOW = Window(start=local("2026-03-01 00:00"), end=local("2026-04-01 00:00"))
# a week later, and two weeks further out: the series gains its April occurrences
LATER = Window(start=local("2026-03-08 00:00"), end=local("2026-04-15 00:00"))
# later still: SINGLE_A (Mar 10) is now older than the window; it still exists
AGED = Window(start=local("2026-03-11 00:00"), end=local("2026-04-15 00:00"))

SINGLE_A = Appt("contract-single-a", "Avery Quinn", local("2026-03-10 10:00"))
SINGLE_B = Appt("contract-single-b", "Blake Rowe", local("2026-03-12 14:00"))
# Mondays from Feb 2 to Apr 20: five in WINDOW (Mar 2..30), six in LATER (Mar 9..Apr 13)
SERIES_C = Appt("contract-series-c", "Cameron Tate", local("2026-02-02 09:00"), weekly=12)
ALL = (SINGLE_A, SINGLE_B, SERIES_C)
# enough one-offs (Mar 13..21) that ALL + MANY is a calendar of twelve objects
MANY = tuple(Appt(f"contract-extra-{i}", "Emery Vance", local(f"2026-03-{13 + i} 15:00")) for i in range(9))

# What a hostile object carries: none of it may reach a log line.
SECRET = "Zelda Hostile 555-0142"
NOT_ICALENDAR = f"{SECRET}\r\nthis is not a calendar at all\r\n".encode()
BOMB = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//callsheet tests//EN\r\n"
    "BEGIN:VEVENT\r\nUID:contract-bomb\r\nDTSTAMP:20260101T000000Z\r\n"
    "DTSTART:00010101T000000Z\r\nDTEND:00010101T001000Z\r\n"
    "RRULE:FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11;BYMINUTE=0,30\r\n"
    f"SUMMARY:{SECRET}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
).encode()
# A rule that never advances: expanding it naively loops for ever.
NEVER_ADVANCING = BOMB.replace(b"00010101", b"20260302").replace(
    b"FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11;BYMINUTE=0,30", b"FREQ=WEEKLY;INTERVAL=0"
)
HOSTILE = {"not_icalendar": NOT_ICALENDAR, "recurrence_bomb": BOMB, "never_advancing": NEVER_ADVANCING}
# A read with a hostile object among three good ones takes well under this (seconds).
READ_LIMIT = 10.0


class Overran(BaseException):
    """A read took longer than READ_LIMIT (a BaseException: no `except Exception` swallows it)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block (main thread, POSIX) when it runs longer than `seconds`: a hang fails."""

    def expire(signum: int, frame: object) -> None:
        raise Overran(f"took longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class SourceDriver(abc.ABC):
    """What a contract case does to one kind of calendar, and how it opens the source."""

    # True when a read lists only the objects that changed; False when a changed calendar is
    # listed whole (the unchanged objects then come back with the same events).
    lists_only_changes: bool = True

    @abc.abstractmethod
    def put(self, appt: Appt) -> None:
        """Store the object (create, or overwrite the one with the same uid)."""

    @abc.abstractmethod
    def delete(self, appt: Appt) -> None:
        """Delete the object as the therapist would."""

    @abc.abstractmethod
    def put_hostile(self, kind: str) -> None:
        """Store one hostile object of this kind (a key of HOSTILE)."""

    @abc.abstractmethod
    def item(self, appt: Appt) -> str:
        """The id the source's batches give the object."""

    def names(self, appt: Appt) -> list[str]:
        """What the calendar calls the object (file name, href, event id, UID): none of it may
        appear in a batch's ids or its cursor, which the state stores (worker.object_ids)."""
        return []

    @abc.abstractmethod
    def source(self) -> Source:
        """The Source reading this calendar, made from a configuration (closed by the caller)."""

    def empty(self, appts: Sequence[Appt] = ALL) -> None:
        """Delete every object of the calendar (the `appts` it holds)."""
        for appt in appts:
            self.delete(appt)


class TextDriver(SourceDriver):
    """A calendar of iCalendar objects, one per name (vdir files, CalDAV resources, memory)."""

    @abc.abstractmethod
    def store(self, name: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def drop(self, name: str) -> None: ...

    def put(self, appt: Appt) -> None:
        self.store(appt.uid, vcalendar(appt.ics()).encode())

    def delete(self, appt: Appt) -> None:
        self.drop(appt.uid)

    def put_hostile(self, kind: str) -> None:
        self.store(f"hostile-{kind}", HOSTILE[kind])


def mondays(events: list[Event]) -> list[str]:
    return [e.start.astimezone(TZ).strftime("%m-%d %H:%M") for e in events]


def vanished(known: set[str], batch: SourceBatch) -> set[str]:
    """The known objects this batch says are gone (removed, or absent from a complete listing)."""
    after = set(batch.changed) if batch.complete else (known - batch.removed) | set(batch.changed)
    return (known - after) | (batch.removed & known)


def summaries(batch: SourceBatch, item: str) -> set[str]:
    return {e.summary for e in batch.changed[item]}


class SourceContract:
    """Behaviour the runner (worker/sync.py) relies on from every source."""

    @pytest.fixture
    def loaded(self, driver: SourceDriver) -> Iterator[tuple[SourceDriver, Source, SourceBatch]]:
        """The calendar holding ALL, its source, and the source's first read."""
        for appt in ALL:
            driver.put(appt)
        source = driver.source()
        try:
            yield driver, source, source.read(WINDOW, None)
        finally:
            source.close()

    def test_first_read_lists_every_object(self, loaded: tuple[SourceDriver, Source, SourceBatch]) -> None:
        """A first read (no cursor) returns every object in the window with its events, and a cursor."""
        driver, _, batch = loaded
        assert set(batch.changed) == {driver.item(a) for a in ALL}
        assert mondays(batch.changed[driver.item(SINGLE_A)]) == ["03-10 10:00"]
        assert mondays(batch.changed[driver.item(SINGLE_B)]) == ["03-12 14:00"]
        series = batch.changed[driver.item(SERIES_C)]
        assert mondays(series) == ["03-02 09:00", "03-09 09:00", "03-16 09:00", "03-23 09:00", "03-30 09:00"]
        assert len({e.uid for e in series}) == 1 and len({e.recurrence_id for e in series}) == 5
        assert batch.removed == set() and batch.bad == 0 and batch.cursor

    def test_ids_and_cursor_never_spell_the_names(
        self, loaded: tuple[SourceDriver, Source, SourceBatch]
    ) -> None:
        """Neither the object ids nor the cursor (both stored) hold a file name, href, event id or UID."""
        driver, source, first = loaded
        driver.delete(SINGLE_B)
        again = source.read(WINDOW, first.cursor)
        assert again.removed == {driver.item(SINGLE_B)}
        stored = json.dumps([sorted(first.changed), first.cursor, sorted(again.removed), again.cursor])
        names = [n for a in ALL for n in driver.names(a)]
        assert [n for n in names if n in stored] == []
        assert all(e.item == driver.item(a) for a in ALL for e in first.changed[driver.item(a)])

    def test_idle_reread_reports_nothing(self, loaded: tuple[SourceDriver, Source, SourceBatch]) -> None:
        """Reading again with the cursor, nothing having changed, returns no changed and no removed object."""
        _, source, first = loaded
        again = source.read(WINDOW, first.cursor)
        assert again.changed == {} and again.removed == set() and not again.complete
        assert again.bad == 0 and again.cursor

    def test_changed_object_comes_back(self, loaded: tuple[SourceDriver, Source, SourceBatch]) -> None:
        """A changed object comes back with its new events, and nothing else changes."""
        driver, source, first = loaded
        driver.put(
            dataclasses.replace(SINGLE_A, summary="Avery Quinn moved", start=local("2026-03-11 11:00"))
        )
        batch = source.read(WINDOW, first.cursor)
        item = driver.item(SINGLE_A)
        assert mondays(batch.changed[item]) == ["03-11 11:00"]
        assert summaries(batch, item) == {"Avery Quinn moved"}
        others = set(batch.changed) - {item}
        if driver.lists_only_changes:
            assert others == set()
        for other in others:  # a source that re-lists a changed calendar: the rest as it was
            assert batch.changed[other] == first.changed[other]
        assert vanished(set(first.changed), batch) == set()

    def test_deleted_object_is_reported(self, loaded: tuple[SourceDriver, Source, SourceBatch]) -> None:
        """A deleted object is reported gone (removed, or absent from a complete listing), never silently."""
        driver, source, first = loaded
        driver.delete(SINGLE_B)
        batch = source.read(WINDOW, first.cursor)
        assert vanished(set(first.changed), batch) == {driver.item(SINGLE_B)}
        assert driver.item(SINGLE_B) not in batch.changed
        again = source.read(WINDOW, batch.cursor)  # and reported once
        assert again.changed == {} and again.removed == set()

    def test_window_move_reexpands_series(self, loaded: tuple[SourceDriver, Source, SourceBatch]) -> None:
        """When the window moves, recurring objects are expanded over the new window; nothing is removed."""
        driver, source, first = loaded
        batch = source.read(LATER, first.cursor)
        series = batch.changed[driver.item(SERIES_C)]
        assert mondays(series) == [
            "03-09 09:00",
            "03-16 09:00",
            "03-23 09:00",
            "03-30 09:00",
            "04-06 09:00",
            "04-13 09:00",
        ]
        assert vanished(set(first.changed), batch) == set()
        for appt in (SINGLE_A, SINGLE_B):  # a one-off listed again is listed as it was
            if driver.item(appt) in batch.changed:
                assert batch.changed[driver.item(appt)] == first.changed[driver.item(appt)]
        again = source.read(LATER, batch.cursor)
        assert again.changed == {} and again.removed == set()

    def test_aged_out_object_is_not_removed(self, loaded: tuple[SourceDriver, Source, SourceBatch]) -> None:
        """An object the window has moved past (older than its start) still exists: it is not reported gone."""
        _, source, first = loaded
        batch = source.read(AGED, first.cursor)
        assert vanished(set(first.changed), batch) == set()

    def test_emptied_source_trips_the_loss_guard(
        self, loaded: tuple[SourceDriver, Source, SourceBatch]
    ) -> None:
        """An emptied calendar reports every object gone, and the runner's source-loss guard refuses it."""
        driver, source, first = loaded
        driver.empty()
        batch = source.read(WINDOW, first.cursor)
        known = set(first.changed)
        assert vanished(known, batch) == known and batch.changed == {}
        with pytest.raises(SourceLossError):
            check_loss(source.name, known, batch)

    def test_emptied_source_on_a_new_day(self, driver: SourceDriver) -> None:
        """A calendar of twelve objects emptied before the window moves: all reported gone, to the runner's guard."""
        for appt in (*ALL, *MANY):
            driver.put(appt)
        source = driver.source()
        try:
            first = source.read(WINDOW, None)
            known = set(first.changed)
            assert len(known) == 12
            driver.empty((*ALL, *MANY))
            batch = source.read(LATER, first.cursor)
        finally:
            source.close()
        assert vanished(known, batch) == known and batch.changed == {}
        with pytest.raises(SourceLossError):  # whose way out is `run --accept-source-loss`
            check_loss(source.name, known, batch)

    @pytest.fixture(params=sorted(HOSTILE))
    def hostile(self, request: pytest.FixtureRequest) -> str:
        """The kinds of hostile object this source can be handed (a driver may narrow them)."""
        return str(request.param)

    def test_hostile_object_is_skipped(self, driver: SourceDriver, hostile: str) -> None:
        """A hostile object is skipped and counted in `bad`, the others are read, and none of its text is logged."""
        for appt in ALL:
            driver.put(appt)
        driver.put_hostile(hostile)
        source = driver.source()
        started = time.monotonic()
        try:
            with capture_logs() as logs, deadline(READ_LIMIT):
                batch = source.read(WINDOW, None)
        except Overran:
            pytest.fail(f"a read with a {hostile} object did not end within {READ_LIMIT}s")
        finally:
            source.close()
        assert time.monotonic() - started < READ_LIMIT
        assert batch.bad == 1
        assert {driver.item(a) for a in ALL} <= set(batch.changed)
        assert [e for events in batch.changed.values() for e in events if SECRET in e.summary] == []
        assert SECRET not in repr(logs) and "Zelda" not in repr(logs)
        assert not (batch.complete and set(batch.changed) != {driver.item(a) for a in ALL})


# -- the in-memory source and vdir ----------------------------------------------------------


class MemoryDriver(TextDriver):
    def __init__(self) -> None:
        self.memory = MemorySource(tz=TZ)

    def store(self, name: str, data: bytes) -> None:
        self.memory.put(name, data)

    def drop(self, name: str) -> None:
        self.memory.remove(name)

    def item(self, appt: Appt) -> str:
        return appt.uid

    def source(self) -> Source:
        return self.memory


class VdirDriver(TextDriver):
    def __init__(self, root: Path) -> None:
        self.practice = Practice(root)
        self._tick = 0

    def store(self, name: str, data: bytes) -> None:
        path = self.practice.calendar / f"{name}.ics"
        path.write_bytes(data)
        # a rewrite within the file system's timestamp granularity must still look changed
        self._tick += 1
        stamp = 1_770_000_000 + self._tick
        os.utime(path, (stamp, stamp))

    def drop(self, name: str) -> None:
        (self.practice.calendar / f"{name}.ics").unlink()

    def item(self, appt: Appt) -> str:
        return object_id(f"{appt.uid}.ics")

    def names(self, appt: Appt) -> list[str]:
        return [f"{appt.uid}.ics", appt.uid]

    def source(self) -> Source:
        settings = load_settings(self.practice.config)
        return VdirSource(settings, settings.source)


class TestMemorySource(SourceContract):
    @pytest.fixture
    def driver(self) -> SourceDriver:
        return MemoryDriver()


class TestVdirSource(SourceContract):
    @pytest.fixture
    def driver(self, tmp_path: Path) -> SourceDriver:
        return VdirDriver(tmp_path / "practice")


def test_memory_source_satisfies_the_protocol() -> None:
    """MemorySource is a connectors.base.Source with the shared optional capabilities."""
    source: Source = MemorySource(default_length=timedelta(minutes=30))
    assert source.describe() == [] and source.name == "memory"


def test_server_backed_contract_modules_are_marked() -> None:
    """Every contract module that starts a server (DAV or the Google fake) is marked `integration`."""
    here = Path(__file__).parent
    for path in here.glob("test_*.py"):
        text = path.read_text(encoding="utf-8")
        if "FakeGoogle" in text or "dav_server" in text:
            assert "pytestmark = pytest.mark.integration" in text, path.name
