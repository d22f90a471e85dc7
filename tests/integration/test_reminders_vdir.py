"""Reminders that behave, on the vdir sink and the in-memory sink: state, reconciliation,
tombstones, therapist edits, lost or corrupt state."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from connectors.ical import read_item
from tests.fakes.memory import MemorySink
from tests.integration.state_backends import lose_state
from tests.integration.state_backends import statuses as backend_statuses
from tests.practice import Practice, local, vevent
from worker.cli import main
from worker.config import load_settings
from worker.runner import run_pass

pytestmark = pytest.mark.state_backends  # every test using `practice` runs on both state backends

NOW = "2026-03-11T12:00:00-05:00"


def _setup(practice: Practice) -> None:
    practice.add("avery-last", vevent("avery-last", "Avery Quinn", local("2026-03-03 10:00")))
    practice.add(
        "cameron-missed", vevent("cameron-missed", "Cameron Tate no show", local("2026-03-09 14:00"))
    )
    practice.add("cameron-next", vevent("cameron-next", "Cameron Tate", local("2026-03-16 14:00")))
    practice.add("dentist", vevent("dentist", "Dentist", local("2026-03-11 13:00"), minutes=60))


def _run(practice: Practice, now: str = NOW) -> int:
    return main(["--config", str(practice.config), "run", "--once", "--now", now])


def _plan(practice: Practice, capsys: pytest.CaptureFixture[str], now: str = NOW) -> list[dict[str, str]]:
    capsys.readouterr()
    assert main(["--config", str(practice.config), "plan", "--json", "--now", now]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _items(folder: Path) -> dict[str, object]:
    out = {}
    for path in sorted(folder.glob("callsheet-*.ics")):
        item = read_item(path.read_bytes(), ref=str(path))
        assert item is not None
        out[item.key] = item
    return out


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_second_pass_writes_nothing(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """After one pass, plan shows only keeps and a second pass changes no file."""
    _setup(practice)
    assert _run(practice) == 0
    events, tasks = _items(practice.events_dir), _items(practice.tasks_dir)
    assert len(events) == 2 and len(tasks) == 2
    before = _tree_digest(practice.root / "out")
    lines = _plan(practice, capsys)
    assert {(x["client"], x["reason"], x["action"]) for x in lines if x["state"] == "due"} == {
        ("c001", "not_rebooked", "keep"),
        ("c003", "no_show", "keep"),
    }
    assert _run(practice) == 0
    assert _tree_digest(practice.root / "out") == before


def test_plan_writes_nothing(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """plan --json creates no reminder, no state and does not touch the source."""
    _setup(practice)
    source = _tree_digest(practice.calendar)
    lines = _plan(practice, capsys)
    assert {x["action"] for x in lines if x["state"] == "due"} == {"create"}
    assert not (practice.root / "out").exists()
    assert not (practice.root / "var").exists()
    assert _tree_digest(practice.calendar) == source


def test_source_is_never_written(practice: Practice) -> None:
    """The source folder's bytes are the same after any number of passes."""
    _setup(practice)
    before = _tree_digest(practice.calendar)
    for day in ("2026-03-11T12:00:00-05:00", "2026-03-12T12:00:00-05:00", "2026-03-30T12:00:00-05:00"):
        assert _run(practice, day) == 0
    assert _tree_digest(practice.calendar) == before


def test_deleted_reminder_becomes_tombstone(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """Deleting our event file means handled: never recreated, and its task is closed too."""
    _setup(practice)
    assert _run(practice) == 0
    need = next(x for x in _plan(practice, capsys) if x["reason"] == "no_show")
    (practice.events_dir / f"callsheet-{need['key']}-e1.ics").unlink()
    assert _run(practice) == 0
    assert _run(practice) == 0
    assert need["key"] not in _items(practice.events_dir)
    task = _items(practice.tasks_dir)[need["key"]]
    assert task.status == "completed"  # type: ignore[attr-defined]
    again = next(x for x in _plan(practice, capsys) if x["reason"] == "no_show")
    assert again["action"] == "none"


def test_booking_withdraws_not_rebooked(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """A new future session deletes the future not-rebooked event and completes its task."""
    _setup(practice)
    assert _run(practice) == 0
    need = next(x for x in _plan(practice, capsys) if x["reason"] == "not_rebooked")
    assert need["key"] in _items(practice.events_dir)
    practice.add("avery-next", vevent("avery-next", "Avery Quinn", local("2026-03-17 10:00")))
    lines = _plan(practice, capsys)
    assert {
        "client": "c001",
        "reason": "not_rebooked",
        "state": "resolved",
        "key": need["key"],
        "action": "resolve",
    }.items() <= next(x for x in lines if x["key"] == need["key"]).items()
    assert _run(practice) == 0
    assert need["key"] not in _items(practice.events_dir)
    task = _items(practice.tasks_dir)[need["key"]]
    assert task.status == "completed"  # type: ignore[attr-defined]
    assert "booked" in (practice.tasks_dir / f"callsheet-{need['key']}-t1.ics").read_text()


def test_therapist_moved_reminder_stays(practice: Practice) -> None:
    """A reminder the therapist moved keeps its new time on later passes, even when its text changes."""
    _setup(practice)
    assert _run(practice) == 0
    path = next(p for p in practice.events_dir.glob("*.ics") if "Call A.Q." in p.read_text())
    text = path.read_text()
    import re

    moved = re.sub(r"DTSTART:\d{8}T\d{6}Z", "DTSTART:20260312T200000Z", text)
    moved = re.sub(r"DTEND:\d{8}T\d{6}Z", "DTEND:20260312T201500Z", moved)
    assert moved != text
    path.write_text(moved)
    # a roster change alters the text of every reminder of c001 (the phone number)
    practice.clients = [
        c if c.id != "c001" else type(c)(**{**c.__dict__, "phone": "+1 555 0177"}) for c in practice.clients
    ]
    practice.write_config()
    assert _run(practice) == 0
    after = path.read_text()
    assert "DTSTART:20260312T200000Z" in after and "0177" in after


def test_lost_state_is_rebuilt_by_adopting(practice: Practice) -> None:
    """With state.db deleted, the next pass adopts what the sink holds: no duplicates, no resurrection."""
    _setup(practice)
    assert _run(practice) == 0
    task_key = next(iter(_items(practice.tasks_dir)))
    # the therapist completes a task, then the state is lost
    settings = load_settings(practice.config)
    sink_path = practice.tasks_dir / f"callsheet-{task_key}-t1.ics"
    sink_path.write_text(sink_path.read_text().replace("STATUS:NEEDS-ACTION", "STATUS:COMPLETED"))
    lose_state(settings)
    before = sorted(p.name for p in (practice.root / "out").rglob("*.ics"))
    assert _run(practice) == 0
    assert _run(practice) == 0
    assert sorted(p.name for p in (practice.root / "out").rglob("*.ics")) == before
    assert "STATUS:COMPLETED" in sink_path.read_text()
    statuses = backend_statuses(settings)
    assert statuses[(task_key, "task")] == "tombstone"
    # the completed task's event sibling was withdrawn (left alone: it is not ahead of now)
    assert sorted(statuses.values()) == ["open", "open", "tombstone", "withdrawn"]


@pytest.mark.sqlite_only
def test_corrupt_state_is_moved_aside(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """A corrupt state.db is renamed (never overwritten), said in the log, and rebuilt from the sink."""
    _setup(practice)
    assert _run(practice) == 0
    settings = load_settings(practice.config)
    for name in ("state.db-wal", "state.db-shm"):
        (settings.state_dir / name).unlink(missing_ok=True)
    (settings.state_dir / "state.db").write_bytes(b"this is not a database" * 100)
    capsys.readouterr()
    assert _run(practice) == 0
    err = capsys.readouterr().err
    assert "state.corrupt" in err
    (aside,) = settings.state_dir.glob("state.db.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    assert len(list((practice.root / "out").rglob("*.ics"))) == 4


@pytest.mark.sqlite_only
def test_state_files_are_private(practice: Practice) -> None:
    """The state folder is 0700 and its files 0600."""
    _setup(practice)
    assert _run(practice) == 0
    state_dir = load_settings(practice.config).state_dir
    assert state_dir.stat().st_mode & 0o777 == 0o700
    for path in state_dir.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path.name


def test_memory_sink_second_pass_calls_no_write(practice: Practice) -> None:
    """On the in-memory sink a second pass lists once and writes nothing."""
    _setup(practice)
    settings = load_settings(practice.config)
    sink = MemorySink()
    run_pass(settings, local("2026-03-11 12:00"), sink=sink)
    assert sink.calls["create"] == 4
    sink.calls.clear()
    run_pass(settings, local("2026-03-11 12:05"), sink=sink)
    assert dict(sink.calls) == {"list": 1}


def test_memory_sink_completed_task_tombstones(practice: Practice) -> None:
    """Completing our task on the sink closes the need for good: its event goes, nothing returns."""
    _setup(practice)
    settings = load_settings(practice.config)
    sink = MemorySink()
    outcome = run_pass(settings, local("2026-03-11 08:00"), sink=sink)
    key = next(n.key for n in outcome.plan.needs if n.reason.value == "no_show")
    sink.therapist_completes(key)
    run_pass(settings, local("2026-03-11 08:05"), sink=sink)
    sink.calls.clear()
    run_pass(settings, local("2026-03-11 08:10"), sink=sink)
    assert dict(sink.calls) == {"list": 1}  # the third pass wrote nothing
    kinds = {i.kind: i.status for i in sink.managed() if i.key == key}
    # the event was still ahead (placed at 09:00): deleted
    assert kinds == {"task": "completed"}


def test_empty_sink_is_not_mass_tombstoned(practice: Practice, capsys: pytest.CaptureFixture[str]) -> None:
    """When the reminders folder suddenly holds none of many reminders, the pass fails instead of
    marking them all handled."""
    for n in range(6):
        practice.add(
            f"missed-{n}", vevent(f"missed-{n}", "Avery Quinn DNA", local(f"2026-03-0{n + 2} 10:00"))
        )
    assert _run(practice) == 0
    import shutil

    shutil.rmtree(practice.root / "out")
    assert _run(practice) == 1
    assert "holds none of the" in capsys.readouterr().err


def test_exact_double_booking_offers_only_free_times(practice: Practice) -> None:
    """Two clients booked at the very same time: the alternatives offered never overlap the other one."""
    practice.add(
        "avery-thu",
        vevent("avery-thu", "Avery Quinn", local("2026-03-12 10:00"), created=local("2026-03-01 09:00")),
    )
    practice.add(
        "cameron-thu",
        vevent("cameron-thu", "Cameron Tate", local("2026-03-12 10:00"), created=local("2026-03-02 09:00")),
    )
    assert _run(practice, "2026-03-10T08:00:00-05:00") == 0
    (path,) = [p for p in practice.events_dir.glob("*.ics") if "double-booked" in p.read_text()]
    text = path.read_text().replace("\n ", "").replace("\\n", "\n").replace("\\;", ";")
    assert "Write to C.T. — double-booked" in text  # C.T. has no call consent: the title says so
    offered = next(line for line in text.splitlines() if "Free times to offer" in line)
    # spread over days and half-days; Thursday's 10:00-10:50 (the other client) is never offered
    assert "Thursday 12 March at 09:00; Friday 13 March at 12:00; Monday 16 March at 09:00" in offered


def test_far_future_booking_is_seen_when_the_window_reaches_it(
    practice: Practice, capsys: pytest.CaptureFixture[str]
) -> None:
    """A one-off booked beyond the expansion window is read again once the window reaches it."""
    practice.add("avery-last", vevent("avery-last", "Avery Quinn", local("2026-03-03 10:00")))
    practice.add("avery-far", vevent("avery-far", "Avery Quinn", local("2026-10-06 10:00")))
    assert _run(practice, "2026-03-04T09:00:00-06:00") == 0  # 216 days ahead: outside the window
    lines = _plan(practice, capsys, "2026-04-20T09:00:00-05:00")  # the window now reaches October
    assert [(x["client"], x["reason"]) for x in lines] == []  # booked: no not_rebooked call


def test_time_zone_blocks_do_not_make_a_file_recurring(practice: Practice) -> None:
    """A one-off carrying a VTIMEZONE (with its own RRULEs) is not re-parsed when the window moves."""
    from connectors.ical import placement as _placement
    from worker.model import Window

    tzblock = (
        "BEGIN:VTIMEZONE\r\nTZID:America/Chicago\r\nBEGIN:STANDARD\r\nDTSTART:19701101T020000\r\n"
        "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\nTZOFFSETFROM:-0500\r\nTZOFFSETTO:-0600\r\n"
        "END:STANDARD\r\nEND:VTIMEZONE\r\n"
    )
    one_off = vevent("x", "Avery Quinn", local("2026-03-03 10:00"))
    data = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + tzblock + one_off + "\r\nEND:VCALENDAR\r\n").encode()
    window = Window(local("2025-01-01 00:00"), local("2026-09-01 00:00"))
    assert _placement(data, window) == "inside"
    assert _placement(data, Window(local("2026-06-01 00:00"), local("2027-01-01 00:00"))) == "before"


def test_stopping_mid_pass_keeps_state_consistent(practice: Practice) -> None:
    """A pass told to stop after two writes records exactly those two; the next pass does the rest."""
    _setup(practice)
    settings = load_settings(practice.config)
    sink = MemorySink()
    calls = iter([False, False, True])
    outcome = run_pass(settings, local("2026-03-11 08:00"), sink=sink, should_stop=lambda: next(calls, True))
    assert outcome.counts["created"] == 2 and len(sink.items) == 2
    assert list(backend_statuses(settings).values()).count("open") == 2
    again = run_pass(settings, local("2026-03-11 08:05"), sink=sink)
    assert again.counts["created"] == 2 and len(sink.items) == 4
