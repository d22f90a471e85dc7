"""The guards a trusted worker needs (issue 11): each accident of the security review and the
field trial, on a local-folder practice (and the in-memory sink where a server must refuse).

Every test here failed on the code before the guards: the reproducers are in
`shared/research/security-review.md` and `field-trial.md`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from connectors.ical import read_item
from tests.fakes.memory import MemorySink
from tests.practice import ClientSpec, Practice, local, vevent
from worker import state as state_mod
from worker.cli import main
from worker.config import load_settings
from worker.errors import ClockError, MassDeletionError, SourceLossError
from worker.identity import parse_file_name
from worker.runner import Accept, run_pass

pytestmark = pytest.mark.state_backends  # every test using `practice` runs on both state backends

ROOT = Path(__file__).resolve().parents[2]
NOW = local("2026-03-11 12:00")  # a Wednesday
CLIENTS = tuple(ClientSpec(f"c{n:03d}", f"Client{n} Person{n}") for n in range(1, 8))


def _missed(practice: Practice) -> None:
    """Seven clients, each with a missed appointment on Monday: 14 reminders, 7 source files."""
    for n in range(1, 8):
        start = local("2026-03-09 09:00") + timedelta(hours=n)
        practice.add(f"missed-{n}", vevent(f"missed-{n}", f"Client{n} Person{n} no show", start))


@pytest.fixture
def big(tmp_path: Path, state_url: str) -> Practice:
    practice = Practice(tmp_path / "practice", clients=CLIENTS, state_url=state_url)
    _missed(practice)
    return practice


def _run(practice: Practice, now: datetime = NOW, *flags: str) -> int:
    return main(["--config", str(practice.config), "run", "--once", "--now", now.isoformat(), *flags])


def _plan(
    practice: Practice, capsys: pytest.CaptureFixture[str], now: datetime = NOW
) -> list[dict[str, str]]:
    capsys.readouterr()
    assert main(["--config", str(practice.config), "plan", "--json", "--now", now.isoformat()]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _open_items(folder: Path) -> list[object]:
    files = [p for p in folder.glob("*.ics") if p.is_file() and not p.is_symlink()]
    items = [read_item(p.read_bytes(), ref=str(p), name=parse_file_name(p.name)) for p in files]
    return [i for i in items if i is not None and i.status == "open"]


# -- 1. an emptied or vanished source -------------------------------------------------------------


def test_an_emptied_source_changes_nothing_and_names_the_way_out(
    big: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every file moved away (an unmounted share): the pass fails, names the flag, changes nothing."""
    assert _run(big) == 0
    before = _digest(big.root / "out")
    away = big.root / "away"
    big.calendar.rename(away)
    big.calendar.mkdir()
    capsys.readouterr()
    for days in (0, 2, 3):
        assert _run(big, NOW + timedelta(days=days)) == 1
    err = capsys.readouterr().err
    assert "7 of the 7 calendar objects" in err and "--accept-source-loss" in err
    assert _digest(big.root / "out") == before  # no reminder withdrawn, no false call written
    shutil.rmtree(big.calendar)
    away.rename(big.calendar)
    assert _run(big, NOW + timedelta(days=3)) == 0
    lines = _plan(big, capsys, NOW + timedelta(days=3))
    assert "cancelled_not_rebooked" not in {x["reason"] for x in lines}  # no false cancellation
    assert len(_open_items(big.tasks_dir)) == 7  # no task was completed for good


def test_losing_most_of_the_source_at_once_is_refused_until_accepted(
    big: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """Five of seven objects gone at once fails; `run --accept-source-loss` then takes it."""
    assert _run(big) == 0
    for n in range(1, 6):
        big.remove(f"missed-{n}")
    capsys.readouterr()
    assert _run(big) == 1
    assert "5 of the 7" in capsys.readouterr().err
    assert _run(big, NOW, "--accept-source-loss") == 0
    assert _run(big) == 0  # accepted once; the next pass is ordinary


def test_losing_a_few_objects_is_ordinary(big: Practice) -> None:
    """Two of seven files removed is everyday editing, not a source loss."""
    assert _run(big) == 0
    big.remove("missed-1")
    big.remove("missed-2")
    assert _run(big) == 0


# -- 2. a need that comes back ----------------------------------------------------------------------


def test_a_returning_need_is_placed_in_office_hours_with_a_fresh_task(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """A double booking resolved and back again is placed like a new call, never at 03:00."""
    practice.add("avery", vevent("avery", "Avery Quinn", local("2026-03-13 10:00")))
    practice.add("cameron", vevent("cameron", "Cameron Tate", local("2026-03-13 10:00")))
    assert _run(practice, local("2026-03-11 08:00")) == 0
    practice.add("cameron", vevent("cameron", "Cameron Tate", local("2026-03-13 14:00")))  # moved
    assert _run(practice, local("2026-03-11 08:30")) == 0
    assert _open_items(practice.events_dir) == []
    practice.add("cameron", vevent("cameron", "Cameron Tate", local("2026-03-13 10:00")))  # back
    night = local("2026-03-12 03:00")
    (need,) = [x for x in _plan(practice, capsys, night) if x["state"] == "due"]
    assert need["reason"] == "double_booked" and need["action"] == "create"
    assert _run(practice, night) == 0
    (event,) = _open_items(practice.events_dir)
    assert event.start == local("2026-03-12 09:00")  # type: ignore[attr-defined]
    (task,) = _open_items(practice.tasks_dir)
    assert task.generation == 2 and task.start == event.start  # type: ignore[attr-defined]
    assert len(list(practice.tasks_dir.glob("*.ics"))) == 2  # the old task stays completed


# -- 3. events and tasks in one folder ----------------------------------------------------------


def test_events_and_tasks_in_one_folder_keep_their_own_names(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """With events_path == tasks_path both items are written, and kept, under names of their own."""
    practice.reminders = 'kind = "vdir"\nevents_path = "out/both"\ntasks_path = "out/both"\n'
    practice.write_config()
    practice.add(
        "cameron-missed", vevent("cameron-missed", "Cameron Tate no show", local("2026-03-09 14:00"))
    )
    assert _run(practice) == 0
    names = sorted(p.name for p in (practice.root / "out" / "both").glob("*.ics"))
    assert len(names) == 2 and names[0].endswith("-e1.ics") and names[1].endswith("-t1.ics")
    assert _run(practice) == 0
    lines = _plan(practice, capsys)
    assert [(x["state"], x["action"]) for x in lines if x["state"] == "due"] == [("due", "keep")]


# -- 4. items that are not ours ------------------------------------------------------------------


def test_items_that_are_not_ours_are_left_alone_byte_for_byte(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy of a reminder, a note named like ours, a key with a foreign UID: never changed."""
    practice.add(
        "cameron-missed", vevent("cameron-missed", "Cameron Tate no show", local("2026-03-09 14:00"))
    )
    assert _run(practice) == 0
    (ours,) = practice.events_dir.glob("*.ics")
    text = ours.read_text()
    copy = practice.events_dir / "copy-of-call.ics"
    copy.write_text(text.replace("UID:callsheet-", "UID:copy-"))
    note = practice.events_dir / "callsheet-mynote.ics"
    note.write_text(text.replace("UID:callsheet-", "UID:note-"))
    stranger = practice.events_dir / ours.name.replace("-e1.ics", "-e7.ics")
    stranger.write_text(text.replace("-e1", "-e7").replace("X-CALLSHEET-OWNER:", "X-CALLSHEET-OWNER:f"))
    before = {p: p.read_bytes() for p in (copy, note, stranger)}
    practice.add("cameron-next", vevent("cameron-next", "Cameron Tate", local("2026-03-16 14:00")))
    assert _run(practice) == 0
    assert main(["--config", str(practice.config), "purge", "--yes"]) == 0
    # the copy is not even named like ours; the note and the stranger are, and are counted
    assert "2 items of another installation or copies were left alone" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in (copy, note, stranger)} == before
    assert not ours.exists()


# -- 5. never write a source, by identity ------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["calendar/./", "./calendar//", "linked"])
def test_a_sink_spelled_differently_from_the_source_is_still_refused(
    practice: Practice, spelling: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`calendar/./`, `//`, or a link to the folder: a config error (exit 2), nothing written."""
    if spelling == "linked":
        (practice.root / "linked").symlink_to(practice.calendar)
    practice.reminders = f'kind = "vdir"\nevents_path = "{spelling}"\n'
    practice.write_config()
    practice.add(
        "cameron-missed", vevent("cameron-missed", "Cameron Tate no show", local("2026-03-09 14:00"))
    )
    before = _digest(practice.calendar)
    capsys.readouterr()
    assert _run(practice) == 2
    assert "would be written into the appointment calendar" in capsys.readouterr().err
    assert _digest(practice.calendar) == before


# -- 6. two workers on one reminders calendar ---------------------------------------------------


def test_two_workers_sharing_a_reminders_folder_never_touch_each_other(tmp_path: Path) -> None:
    """Different sources and states, one reminders folder: each keeps only its own reminders."""
    shared = tmp_path / "shared-calls"
    first, second = Practice(tmp_path / "one"), Practice(tmp_path / "two")
    for p, who in ((first, "Avery Quinn"), (second, "Blake Rowe")):
        p.reminders = f'kind = "vdir"\nevents_path = "{shared}"\n'
        p.write_config()
        p.add("missed", vevent("missed", f"{who} no show", local("2026-03-09 14:00")))
    assert _run(first) == 0
    assert _run(second) == 0
    assert _run(first) == 0
    assert _run(second) == 0
    assert len(_open_items(shared)) == 2
    owners = {i.owner for i in _open_items(shared)}  # type: ignore[attr-defined]
    assert len(owners) == 2


# -- 7. a clock far in the past ------------------------------------------------------------------


def test_a_clock_far_behind_the_last_pass_writes_nothing(
    big: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """A board booting in 1970 (or a wrong --now) fails with both times named; nothing changes."""
    assert _run(big) == 0
    before = _digest(big.root / "out")
    capsys.readouterr()
    assert _run(big, datetime.fromisoformat("1970-01-01T00:00:00+00:00")) == 1
    err = capsys.readouterr().err
    assert "1970-01-01" in err and "2026-03-11" in err
    assert _digest(big.root / "out") == before
    assert _run(big, NOW - timedelta(minutes=30)) == 0  # a small step back is tolerated


def test_clock_guard_is_a_named_error() -> None:
    """ClockError, SourceLossError and MassDeletionError each carry their way out."""
    assert "accept-source-loss" in SourceLossError.way_out
    assert "accept-deletions" in MassDeletionError.way_out
    assert "clock" in ClockError.way_out


# -- 8. a transient database error is not corruption ------------------------------------------------


@pytest.mark.sqlite_only
def test_a_locked_state_database_is_left_in_place(
    big: Practice, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "database is locked" past the busy timeout fails the pass naming the path; nothing moved aside."""
    assert _run(big) == 0
    monkeypatch.setattr(state_mod, "BUSY_TIMEOUT", 0.2)
    db = big.root / "var" / "state.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        capsys.readouterr()
        assert _run(big) == 1
        err = capsys.readouterr().err
        assert str(db) in err and "locked" in err
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not list(db.parent.glob("state.db.corrupt-*"))
    assert _run(big) == 0


@pytest.mark.sqlite_only
def test_a_damaged_database_is_still_moved_aside(big: Practice) -> None:
    """A file that is not a database is moved aside and rebuilt from the sink (as before)."""
    assert _run(big) == 0
    db = big.root / "var" / "state.db"
    for side in db.parent.glob("state.db-*"):
        side.unlink()
    db.write_bytes(b"not a database at all" * 100)
    assert _run(big) == 0
    assert list(db.parent.glob("state.db.corrupt-*"))


# -- 9. one refused write never stops the others --------------------------------------------------


def test_a_refused_item_never_stops_the_others(big: Practice) -> None:
    """The server refusing every task still lets every event through; the failure is counted."""
    settings = load_settings(big.config)
    sink = MemorySink()
    sink.refuse.add("task/")
    outcome = run_pass(settings, NOW, sink=sink)
    assert outcome.counts["created"] == 7 and outcome.counts["failed"] == 7
    assert outcome.counts["failed_refused"] == 7
    again = run_pass(settings, NOW + timedelta(minutes=5), sink=sink)
    assert again.counts["deferred"] == 7 and sink.calls["create"] == 14  # not retried every pass
    sink.refuse.clear()
    later = run_pass(settings, NOW + timedelta(days=1, minutes=10), sink=sink)
    assert later.counts["created"] == 7  # retried after a day


def test_refused_items_exit_1_and_say_so(big: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """`run --once` writes what it can, then exits 1 with the count and the class."""
    big.reminders = 'kind = "vdir"\nevents_path = "out/calls"\ntasks_path = "out/call-tasks"\n'
    big.write_config()
    big.tasks_dir.parent.mkdir(parents=True, exist_ok=True)
    big.tasks_dir.write_text("a file where the tasks folder should be")
    capsys.readouterr()
    assert _run(big) == 1
    err = capsys.readouterr().err
    assert "7 reminders could not be written" in err
    assert len(_open_items(big.events_dir)) == 7


# -- 10. the way out of the mass-deletion guard ---------------------------------------------------


def test_clearing_every_reminder_has_a_named_way_out(
    big: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """All reminders removed by hand: the pass refuses, names --accept-deletions, which tombstones them."""
    assert _run(big) == 0
    for path in [*big.events_dir.glob("*.ics"), *big.tasks_dir.glob("*.ics")]:
        path.unlink()
    capsys.readouterr()
    assert _run(big) == 1
    assert "--accept-deletions" in capsys.readouterr().err
    assert _run(big, NOW, "--accept-deletions") == 0
    assert _run(big) == 0
    assert not list(big.events_dir.glob("*.ics"))  # handled: never written again
    assert {x["state"] for x in _plan(big, capsys) if x["reason"] == "no_show"} == {"handled"}


def test_purge_forgets_what_it_removed(big: Practice) -> None:
    """`purge --yes` while the worker keeps running: the next pass is not blocked by the guard."""
    assert _run(big) == 0
    assert main(["--config", str(big.config), "purge", "--yes"]) == 0
    assert _run(big) == 0
    assert len(_open_items(big.events_dir)) == 7


# -- 11. special files in the reminders folder --------------------------------------------------


def test_special_files_in_the_reminders_folder_never_hang_the_pass(practice: Practice) -> None:
    """A FIFO and a link to /dev/zero named like our items are skipped; the pass finishes."""
    practice.add(
        "cameron-missed", vevent("cameron-missed", "Cameron Tate no show", local("2026-03-09 14:00"))
    )
    practice.events_dir.mkdir(parents=True)
    os.mkfifo(practice.events_dir / "callsheet-fifo.ics")
    (practice.events_dir / "callsheet-zero.ics").symlink_to("/dev/zero")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "--config",
            str(practice.config),
            "run",
            "--once",
            "--now",
            NOW.isoformat(),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(_open_items(practice.events_dir)) == 1


# -- 12. a recurrence bomb ---------------------------------------------------------------------


def test_a_recurrence_bomb_is_skipped_not_paid_for_every_day(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """One tiny event from year 1 with 24 occurrences a day is skipped with a warning, fast."""
    practice.add(
        "cameron-missed", vevent("cameron-missed", "Cameron Tate no show", local("2026-03-09 14:00"))
    )
    bomb = (
        "BEGIN:VEVENT\r\nUID:bomb\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:00010101T000000Z\r\n"
        "DTEND:00010101T001000Z\r\nRRULE:FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11;BYMINUTE=0,30\r\n"
        "SUMMARY:x\r\nEND:VEVENT"
    )
    practice.add("bomb", bomb)
    settings = load_settings(practice.config)
    sink = MemorySink()
    for day in range(3):  # the window moves every day: the bomb is never expanded
        outcome = run_pass(settings, NOW + timedelta(days=day), sink=sink)
        assert outcome.duration_ms < 5000
        if day == 0:
            assert outcome.plan.counts["bad"] == 1  # skipped, with a warning naming its hash
    assert outcome.plan.counts["due"] >= 1


def test_accept_flags_exist_on_run_only() -> None:
    """The named ways out are flags of `run` (docs/commands.md)."""
    assert Accept(source_loss=True).source_loss and not Accept().deletions


def test_check_names_the_guard_that_stopped_the_last_pass_and_its_way_out(
    big: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the loop hit the source-loss guard, check fails and prints the flag that accepts it."""
    from worker import runner

    settings = load_settings(big.config)
    runner.loop(settings, timedelta(minutes=5), clock=lambda: NOW, max_passes=1, stop=runner.Stop())
    for path in big.calendar.glob("*.ics"):
        path.unlink()
    runner.loop(
        settings,
        timedelta(minutes=5),
        clock=lambda: NOW + timedelta(minutes=5),
        max_passes=1,
        stop=runner.Stop(),
    )
    capsys.readouterr()
    assert main(["--config", str(big.config), "check"]) == 1
    out = capsys.readouterr().out
    assert "[!!] source vdir: holds appointments" in out  # an empty source fails the check
    assert "stopped by a guard" in out and "--accept-source-loss" in out


def test_check_warns_about_another_installations_items(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """Items with our key but another owner mark are counted by check as left alone."""
    practice.add(
        "cameron-missed", vevent("cameron-missed", "Cameron Tate no show", local("2026-03-09 14:00"))
    )
    assert _run(practice) == 0
    (ours,) = practice.events_dir.glob("*.ics")
    other = practice.events_dir / ours.name.replace("-e1.ics", "-e2.ics")
    other.write_text(
        ours.read_text().replace("-e1", "-e2").replace("X-CALLSHEET-OWNER:", "X-CALLSHEET-OWNER:0")
    )
    capsys.readouterr()
    main(["--config", str(practice.config), "check"])
    assert (
        "[warn] reminders: 1 items carry callsheet's key but are not this installation's"
        in capsys.readouterr().out
    )


@pytest.mark.sqlite_only  # the state is lost by removing its folder
def test_items_written_by_the_previous_version_are_adopted_not_duplicated(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callsheet-<key>.ics` items without an owner mark (the earlier form) are recognised and kept."""
    import re

    practice.add(
        "cameron-missed", vevent("cameron-missed", "Cameron Tate no show", local("2026-03-09 14:00"))
    )
    assert _run(practice) == 0
    for folder in (practice.events_dir, practice.tasks_dir):
        (path,) = folder.glob("*.ics")
        text = re.sub(r"(callsheet-[0-9a-v]{26})-[et]1", r"\1", path.read_text())
        text = re.sub(r"X-CALLSHEET-OWNER:[0-9a-f]+\r?\n", "", text)
        path.unlink()
        (folder / re.sub(r"-[et]1\.ics$", ".ics", path.name)).write_text(text)
    shutil.rmtree(practice.root / "var")  # as if state were rebuilt on upgrade
    assert _run(practice) == 0
    assert len(list(practice.events_dir.glob("*.ics"))) == 1  # adopted, not written again
    assert len(list(practice.tasks_dir.glob("*.ics"))) == 1
    (need,) = [x for x in _plan(practice, capsys) if x["state"] == "due"]
    assert need["action"] == "keep"


@pytest.mark.sqlite_only  # the state is lost by removing its folder
def test_an_empty_source_with_a_lost_state_still_withdraws_nothing(
    big: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """State gone and the folder unmounted at once: the standing reminders keep the guard's memory."""
    assert _run(big) == 0
    before = _digest(big.root / "out")
    shutil.rmtree(big.root / "var")
    big.calendar.rename(big.root / "away")
    big.calendar.mkdir()
    capsys.readouterr()
    assert _run(big) == 1
    assert "holds 14 open reminders of ours" in capsys.readouterr().err
    assert _digest(big.root / "out") == before


def test_appointments_that_age_out_of_the_window_are_no_source_loss(practice: Practice) -> None:
    """A source that lists by window (as Google does) leaves out old objects: that is not a loss."""
    from tests.fakes.memory import MemorySource
    from tests.practice import vcalendar
    from worker.roster import Roster
    from worker.state import State
    from worker.sync import sync_source, window_for

    class Windowed(MemorySource):
        def read(self, window, cursor):  # type: ignore[no-untyped-def]
            batch = super().read(window, cursor)
            batch.changed = {k: v for k, v in batch.changed.items() if v}  # outside the window: not listed
            batch.complete = True
            return batch

    settings = load_settings(practice.config)
    source = Windowed("practice", tz=settings.practice.tz)
    old = NOW - settings.rules.history + timedelta(days=5)
    for n in range(6):
        source.put(
            f"old-{n}", vcalendar(vevent(f"old-{n}", "Avery Quinn", old + timedelta(hours=n))).encode()
        )
    for n in range(2):
        source.put(
            f"new-{n}", vcalendar(vevent(f"new-{n}", "Avery Quinn", NOW + timedelta(days=n + 1))).encode()
        )
    state = State.open(settings.state_dir)
    try:
        roster = Roster.of(settings.clients)
        sync_source(source, settings, state, roster, NOW)
        later = NOW + timedelta(days=30)  # the six old ones now lie before the window
        assert all(
            not v
            for k, v in source.read(window_for(settings, later), None).changed.items()
            if k.startswith("old")
        )
        counts = sync_source(source, settings, state, roster, later)  # no SourceLossError
        assert counts["objects"] == 2
    finally:
        state.close()
