"""The vdir source's cursor: one compact string of object ids and stamps, and the earlier forms still read."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import connectors.vdir
from connectors.vdir import VdirSource
from tests.practice import Practice, local, vevent
from worker.config import load_settings
from worker.model import Window
from worker.object_ids import object_id, unpack_stamps

TZ = ZoneInfo("America/Chicago")
WINDOW = Window(datetime(2026, 1, 1, tzinfo=TZ), datetime(2026, 9, 1, tzinfo=TZ))
NAMES = ("plain.ics", "with space é.ics", "line\nbreak.ics", "semi;colon,comma.ics")
IDS = {name: object_id(name) for name in NAMES}


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
    assert sorted(first.changed) == sorted(IDS.values())
    assert isinstance(first.cursor["files"], str)
    assert sorted(unpack_stamps(first.cursor["files"])) == sorted(IDS.values())
    _no_reading(monkeypatch)
    again = source.read(WINDOW, first.cursor)
    assert again.changed == {} and again.removed == set()


@pytest.mark.parametrize("form", ["names", "ids"])
def test_earlier_cursor_form_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    """A cursor written by an earlier version ({name: [size, mtime_ns]} before schema 3, then
    {id: [size, mtime_ns]}) reads nothing again."""
    source, practice = _source(tmp_path)
    first = source.read(WINDOW, None)
    files = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in practice.calendar.glob("*.ics")}
    if form == "names":
        earlier = {k: v for k, v in first.cursor.items() if k != "v"} | {"files": files}
    else:
        earlier = {**first.cursor, "files": {object_id(name): stamp for name, stamp in files.items()}}
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
    changed, gone = IDS[NAMES[0]], IDS[NAMES[1]]
    assert list(again.changed) == [changed] and again.removed == {gone}
    assert again.changed[changed][0].start == local("2026-03-03 10:00")
    assert again.changed[changed][0].end - again.changed[changed][0].start == timedelta(minutes=50)


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
