"""Group practice: several clinicians (accounts) in one config, one practice roster, one
waiting room. Each scenario writes two calendars and compares the exact `plan --json` lines of
each account (the seed's warning: two clients who know each other booked back to back with two
clinicians meet in the waiting room, and no single calendar shows it).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.practice import TZ, TZ_NAME, ClientSpec, local, roster_toml, vcalendar, vevent
from worker.cli import main

CLIENTS = (
    ClientSpec("c001", "Avery Quinn"),
    ClientSpec("c002", "Blake Rowe", acquainted_with=("c001",)),
    ClientSpec("c003", "Cameron Tate"),
)
NOW = "2026-03-09T09:00:00"  # a Monday; the appointments are on Tuesday 10 March


def group(root: Path, *, room_b: str = "main-office", broken: bool = False) -> Path:
    """Two accounts, rivera and okafor, sharing clients.toml; returns the config path."""
    for name in ("rivera", "okafor"):
        (root / "calendars" / name).mkdir(parents=True, exist_ok=True)
    okafor_path = "calendars/missing" if broken else "calendars/okafor"
    text = (
        'roster = "clients.toml"\nstate_dir = "var"\n\n'
        f'[practice]\ntimezone = "{TZ_NAME}"\ntherapist_name = "Group"\ncallback_number = "+1 555 0100"\n\n'
        '[[accounts]]\nname = "rivera"\nwaiting_room = "main-office"\n'
        '[accounts.source]\nkind = "vdir"\npath = "calendars/rivera"\n'
        '[accounts.reminders]\nkind = "vdir"\nevents_path = "out/rivera/calls"\ntasks_path = "out/rivera/tasks"\n\n'
        f'[[accounts]]\nname = "okafor"\nwaiting_room = "{room_b}"\n'
        f'[accounts.source]\nkind = "vdir"\npath = "{okafor_path}"\n'
        '[accounts.reminders]\nkind = "vdir"\nevents_path = "out/okafor/calls"\ntasks_path = "out/okafor/tasks"\n'
    )
    config = root / "config.toml"
    config.write_text(text, encoding="utf-8")
    fd = os.open(root / "clients.toml", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(roster_toml(CLIENTS))
    return config


def book(root: Path, account: str, uid: str, title: str, start: str, minutes: int = 50) -> None:
    folder = root / "calendars" / account
    (folder / f"{uid}.ics").write_text(
        vcalendar(vevent(uid, title, local(start), minutes=minutes)), encoding="utf-8"
    )


def lines(
    capsys: pytest.CaptureFixture[str], config: Path, *extra: str
) -> tuple[int, list[dict[str, object]]]:
    capsys.readouterr()
    code = main(["--config", str(config), "plan", "--json", "--now", NOW, *extra])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def run_once(capsys: pytest.CaptureFixture[str], config: Path, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--config", str(config), "run", "--once", "--now", NOW, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_acquaintances_back_to_back_with_two_clinicians_call_goes_to_the_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two acquaintances booked 5 minutes apart with two clinicians sharing a waiting room: the
    clinician of the later appointment gets one acquainted_conflict need, the other none."""
    config = group(tmp_path)
    book(tmp_path, "rivera", "appt-r1", "Avery Quinn", "2026-03-10 10:00")
    book(tmp_path, "okafor", "appt-o1", "Blake Rowe", "2026-03-10 10:55")
    assert run_once(capsys, config)[0] == 0  # every account reads its calendar once
    code, okafor = lines(capsys, config, "--account", "okafor")
    assert code == 0
    assert [(x["client"], x["reason"], x["state"], x["due"]) for x in okafor] == [
        ("c002", "acquainted_conflict", "due", "2026-03-09T09:00:00-05:00")
    ]
    assert okafor[0]["anchor"] == "appt-o1|"
    code, rivera = lines(capsys, config, "--account", "rivera")
    assert (code, rivera) == (0, [])
    # without --account: every account's lines, each naming its account
    code, both = lines(capsys, config)
    assert code == 0
    assert [(x["account"], x["client"], x["reason"]) for x in both] == [
        ("okafor", "c002", "acquainted_conflict")
    ]
    # the next pass writes the reminder into okafor's calendar only
    assert run_once(capsys, config)[0] == 0
    assert len(list((tmp_path / "out" / "okafor" / "calls").glob("*.ics"))) == 1
    assert list((tmp_path / "out" / "rivera" / "calls").glob("*.ics")) == []


def test_the_later_appointment_decides_whichever_calendar_holds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Swapped times: the later appointment is rivera's, so rivera gets the call and okafor none."""
    config = group(tmp_path)
    book(tmp_path, "rivera", "appt-r1", "Avery Quinn", "2026-03-10 11:00")
    book(tmp_path, "okafor", "appt-o1", "Blake Rowe", "2026-03-10 10:00")
    run_once(capsys, config)
    _, both = lines(capsys, config)
    assert [(x["account"], x["client"], x["reason"], x["anchor"]) for x in both] == [
        ("rivera", "c001", "acquainted_conflict", "appt-r1|")
    ]


def test_other_waiting_rooms_and_strangers_meet_nobody(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Acquaintances in two different waiting rooms, or strangers in one, make no call; and a
    gap of acquainted_gap or more is no conflict."""
    config = group(tmp_path, room_b="annex")
    book(tmp_path, "rivera", "appt-r1", "Avery Quinn", "2026-03-10 10:00")
    book(tmp_path, "okafor", "appt-o1", "Blake Rowe", "2026-03-10 10:55")
    run_once(capsys, config)
    assert lines(capsys, config)[1] == []
    other = group(tmp_path / "strangers")
    book(tmp_path / "strangers", "rivera", "appt-r1", "Avery Quinn", "2026-03-10 10:00")
    book(
        tmp_path / "strangers", "rivera", "appt-r3", "Cameron Tate", "2026-03-10 10:55"
    )  # a stranger to c002
    book(tmp_path / "strangers", "okafor", "appt-o2", "Blake Rowe", "2026-03-10 11:05")  # 15m after 10:50
    run_once(capsys, other)
    assert lines(capsys, other)[1] == []


def test_a_client_who_moved_to_another_clinician_is_one_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seen by rivera last week, booked with okafor next week: nobody is asked to rebook them."""
    config = group(tmp_path)
    book(tmp_path, "rivera", "appt-r0", "Cameron Tate", "2026-02-27 10:00")
    run_once(capsys, config)
    _, alone = lines(capsys, config, "--account", "rivera")
    assert [(x["client"], x["reason"]) for x in alone] == [("c003", "not_rebooked")]
    book(tmp_path, "okafor", "appt-o9", "Cameron Tate", "2026-03-12 14:00")
    run_once(capsys, config, "--account", "okafor")  # okafor's pass stores the booking
    _, moved = lines(capsys, config)
    # rivera's call would be withdrawn (its event and its task), and okafor has nothing to call about
    assert [(x["account"], x["client"], x["reason"], x["state"]) for x in moved] == [
        ("rivera", "c003", "not_rebooked", "resolved")
    ] * 2
    code, out, _ = run_once(capsys, config)
    assert code == 0 and "rivera: 0 calls due; 0 reminders written, 0 updated, 2 withdrawn" in out
    assert lines(capsys, config)[1] == []


def test_one_at_a_time_every_pass_sees_the_peers_calendar_of_this_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Passes one after the other (rivera first): rivera's pass already knows the booking okafor's
    calendar got since the last pass, so the moved client's call is withdrawn in that same run."""
    config = group(tmp_path)
    config.write_text(config.read_text(encoding="utf-8") + "\n[run]\nconcurrency = 1\n", encoding="utf-8")
    book(tmp_path, "rivera", "appt-r0", "Cameron Tate", "2026-02-27 10:00")
    run_once(capsys, config)
    book(tmp_path, "okafor", "appt-o9", "Cameron Tate", "2026-03-12 14:00")
    code, out, _ = run_once(capsys, config)
    assert code == 0 and "rivera: 0 calls due; 0 reminders written, 0 updated, 2 withdrawn" in out
    assert lines(capsys, config)[1] == []


def test_a_broken_account_never_reaches_the_healthy_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """okafor's calendar folder is missing: its pass fails and its health.json says so, while
    rivera's reminders are written and rivera's health.json knows nothing of the error; the
    exit code is the worst of the two (1)."""
    config = group(tmp_path, broken=True)
    seen = (datetime.now(TZ) - timedelta(days=10)).strftime("%Y-%m-%d 10:00")  # a real pass: the real clock
    book(tmp_path, "rivera", "appt-r0", "Cameron Tate", seen)
    capsys.readouterr()
    code = main(["--config", str(config), "run", "--once"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "rivera:" in out and "okafor:" in err
    rivera = json.loads((tmp_path / "var" / "rivera" / "health.json").read_text())
    okafor = json.loads((tmp_path / "var" / "okafor" / "health.json").read_text())
    assert rivera["outcome"] == "ok" and not rivera.get("error") and not rivera.get("failing_since")
    assert okafor["outcome"] == "failed" and okafor["error"]
    assert len(list((tmp_path / "out" / "rivera" / "calls").glob("*.ics"))) == 1
    assert not (tmp_path / "var" / "state.db").exists()  # each account's state is in its own folder
    assert (tmp_path / "var" / "rivera" / "state.db").exists()
    # check --health covers every account: one unhealthy account makes it fail
    capsys.readouterr()
    assert main(["--config", str(config), "check", "--health"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("rivera: healthy")
    assert out.splitlines()[1].startswith("okafor: unhealthy")
    assert main(["--config", str(config), "check", "--health", "--account", "rivera"]) == 0


def test_summary_lines_come_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`plan` and `status` without --account print one summary line per account, then each
    account's own output under its name."""
    config = group(tmp_path)
    book(tmp_path, "rivera", "appt-r0", "Cameron Tate", "2026-02-27 10:00")
    run_once(capsys, config)
    capsys.readouterr()
    assert main(["--config", str(config), "plan", "--now", NOW]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["rivera: 1 calls due", "okafor: 0 calls due"]
    assert "== rivera ==" in out and "== okafor ==" in out
    assert main(["--config", str(config), "status", "--now", NOW]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["rivera: 1 clients in the caseload", "okafor: 0 clients in the caseload"]


def test_unknown_account_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--account naming no account exits 2 and lists the accounts there are."""
    config = group(tmp_path)
    capsys.readouterr()
    assert main(["--config", str(config), "plan", "--account", "nobody", "--now", NOW]) == 2
    assert "rivera, okafor" in capsys.readouterr().err


def test_reminders_into_another_accounts_calendar_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """rivera's reminders folder is okafor's appointment folder: rivera's pass is refused (exit 2,
    nothing written there) and okafor's pass runs."""
    config = group(tmp_path)
    text = config.read_text().replace('events_path = "out/rivera/calls"', 'events_path = "calendars/okafor"')
    config.write_text(text)
    book(tmp_path, "okafor", "appt-o0", "Cameron Tate", "2026-02-27 10:00")
    code, out, err = run_once(capsys, config)
    assert code == 2
    assert "rivera: configuration problem" in err and "of account 'okafor'" in err
    assert out.startswith("okafor: 1 calls due; 2 reminders written")
    assert sorted(p.name for p in (tmp_path / "calendars" / "okafor").iterdir()) == ["appt-o0.ics"]


def test_a_single_calendar_config_prints_as_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one-calendar config: no account names in the output, no "account" key in plan --json,
    state in state_dir itself, and --account default is the same account."""
    from tests.practice import Practice

    practice = Practice(tmp_path / "solo", clients=CLIENTS)
    practice.add("seen", vevent("appt-s", "Cameron Tate", local("2026-02-27 10:00")))
    capsys.readouterr()
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 0
    assert capsys.readouterr().out.startswith("1 calls due; 2 reminders written")
    assert (practice.root / "var" / "state.db").exists() and not (practice.root / "var" / "default").exists()
    assert main(["--config", str(practice.config), "plan", "--json", "--now", NOW]) == 0
    plain = capsys.readouterr().out
    assert (
        main(["--config", str(practice.config), "plan", "--json", "--now", NOW, "--account", "default"]) == 0
    )
    assert capsys.readouterr().out == plain
    [line] = [json.loads(x) for x in plain.splitlines()]
    assert "account" not in line and line["reason"] == "not_rebooked"


def test_roster_suggest_takes_an_account(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`roster suggest` of a group config needs --account (exit 2 naming the accounts), and reads that account's calendar."""
    config = group(tmp_path)
    book(tmp_path, "okafor", "appt-x", "Sam Unknown", "2026-03-10 10:00")
    capsys.readouterr()
    assert main(["--config", str(config), "roster", "suggest", "--now", NOW]) == 2
    assert "name one with --account" in capsys.readouterr().err
    assert main(["--config", str(config), "roster", "suggest", "--account", "okafor", "--now", NOW]) == 0
