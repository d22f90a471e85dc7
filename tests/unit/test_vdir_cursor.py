"""The vdir source's cursor: one compact string of names and stamps, and the earlier form still read."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import connectors.vdir
from connectors.vdir import VdirSource, _listing
from tests.practice import Practice, local, vevent
from worker.config import load_settings
from worker.model import Window

TZ = ZoneInfo("America/Chicago")
WINDOW = Window(datetime(2026, 1, 1, tzinfo=TZ), datetime(2026, 9, 1, tzinfo=TZ))
NAMES = ("plain.ics", "with space é.ics", "line\nbreak.ics", "semi;colon,comma.ics")


def _source(tmp_path: Path) -> tuple[VdirSource, Practice]:
    practice = Practice(tmp_path)
    for n, name in enumerate(NAMES):
        practice.add(name.removesuffix(".ics"), vevent(f"u{n}", "Avery Quinn", local("2026-03-03 10:00")))
    settings = load_settings(practice.config)
    return VdirSource(settings, settings.source), practice


def _no_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> bytes:
        raise AssertionError("an unchanged file was read")

    monkeypatch.setattr(connectors.vdir, "read_regular", refuse)


def test_cursor_round_trip_reads_nothing_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any file name survives the cursor; a second read with it reads no file and removes none."""
    source, _ = _source(tmp_path)
    first = source.read(WINDOW, None)
    assert sorted(first.changed) == sorted(NAMES)
    assert isinstance(first.cursor["files"], str)
    assert sorted(_listing(first.cursor["files"])) == sorted(NAMES)
    _no_reading(monkeypatch)
    again = source.read(WINDOW, first.cursor)
    assert again.changed == {} and again.removed == set()


def test_earlier_cursor_form_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cursor written by an earlier version ({name: [size, mtime_ns]}) reads nothing again."""
    source, practice = _source(tmp_path)
    first = source.read(WINDOW, None)
    earlier = {
        **first.cursor,
        "files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in practice.calendar.glob("*.ics")},
    }
    _no_reading(monkeypatch)
    again = source.read(WINDOW, earlier)
    assert again.changed == {} and again.removed == set()


def test_changed_and_removed_files_are_seen(tmp_path: Path) -> None:
    """A rewritten file is read again and a deleted one is reported removed."""
    source, practice = _source(tmp_path)
    first = source.read(WINDOW, None)
    (practice.calendar / NAMES[1]).unlink()
    target = practice.calendar / NAMES[0]
    target.write_bytes(target.read_bytes().replace(b"Avery Quinn", b"Avery Quinn no show"))
    info = target.stat()
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
    again = source.read(WINDOW, first.cursor)
    assert list(again.changed) == [NAMES[0]] and again.removed == {NAMES[1]}
    assert again.changed[NAMES[0]][0].start == local("2026-03-03 10:00")
    assert again.changed[NAMES[0]][0].end - again.changed[NAMES[0]][0].start == timedelta(minutes=50)


@pytest.mark.parametrize("size", [0, 1, 4096, 65536, 65537, 300_000])
def test_read_regular_reads_whole_files(tmp_path: Path, size: int) -> None:
    """A file of any size comes back whole; one over the limit is refused."""
    path = tmp_path / "x.ics"
    data = bytes(i % 251 for i in range(size))
    path.write_bytes(data)
    assert connectors.vdir.read_regular(path) == data
    assert connectors.vdir.read_regular(str(path)) == data
    if size:
        with pytest.raises(connectors.vdir.NotRegularError):
            connectors.vdir.read_regular(path, limit=size - 1)
