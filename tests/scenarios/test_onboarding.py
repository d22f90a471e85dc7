"""Onboarding a first-name-only calendar: `roster suggest --write`, then a pass.

The calendar titles sessions the way many therapists do ("Liam", "Liam 2pm", "Maya -
cancelled"); the draft roster `roster suggest` writes must find the same calls as a roster
written by hand with full names and one-word match phrases.
"""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from tests.practice import ClientSpec, local, vevent
from tests.scenarios.conftest import make_practice
from worker.cli import main

NOW = "2026-03-20T09:00"
HAND = (
    ClientSpec("c001", "Liam Park", match=("Liam",)),
    ClientSpec("c002", "Maya Ortiz", match=("Maya",)),
    ClientSpec("c003", "Noah Berg", match=("Noah",)),
    ClientSpec("c004", "Zoe Kim", match=("Zoe K",)),
)


def _calendar(practice) -> None:
    practice.add(
        "liam",
        vevent("fn-liam", "Liam", local("2026-01-06 10:00"), rrule="FREQ=WEEKLY;UNTIL=20260310T160000Z"),
    )
    practice.add("liam-extra", vevent("fn-liam-2", "Liam 2pm", local("2026-02-12 14:00")))
    practice.add(
        "maya",
        vevent("fn-maya", "Maya", local("2026-01-07 11:00"), rrule="FREQ=WEEKLY;UNTIL=20260311T170000Z"),
    )
    practice.add(
        "maya-cxl",
        vevent(
            "fn-maya-2",
            "Maya - cancelled",
            local("2026-03-18 11:00"),
            last_modified=local("2026-03-16 09:30"),
        ),
    )
    practice.add("noah", vevent("fn-noah", "Noah", local("2026-01-05 15:00"), rrule="FREQ=WEEKLY;INTERVAL=2"))
    practice.add("noah-miss", vevent("fn-noah-2", "Noah no-show", local("2026-03-09 15:00")))
    practice.add("zoe", vevent("fn-zoe", "Zoe K", local("2026-01-09 13:00"), rrule="FREQ=WEEKLY"))
    practice.add("gym", vevent("fn-gym", "Gym", local("2026-01-05 06:30"), rrule="FREQ=DAILY"))
    practice.add("dentist", vevent("fn-dentist", "Dentist", local("2026-03-12 12:00")))


def _plan(config: Path, capsys) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["--config", str(config), "plan", "--json", "--now", NOW]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def _by_phrase(roster: Path) -> dict[str, str]:
    """client id -> its (first) match phrase."""
    data = tomllib.loads(roster.read_text(encoding="utf-8"))
    return {c["id"]: c["match"][0] for c in data.get("clients", [])}


def _comparable(lines, phrases):
    return sorted(
        (phrases[str(o["client"])], o["reason"], o["state"], o["due"], o["anchor"], o["action"])
        for o in lines
    )


def test_suggest_then_a_pass_finds_what_a_hand_written_roster_finds(tmp_path, capsys):
    """The draft from `roster suggest --write` gives the same calls as the hand-written roster."""
    by_hand = make_practice(tmp_path / "hand", clients=HAND)
    _calendar(by_hand)
    expected = _plan(by_hand.config, capsys)
    assert {(o["reason"], o["state"]) for o in expected} == {
        ("not_rebooked", "due"),
        ("cancelled_not_rebooked", "due"),
        ("no_show", "due"),
    }

    fresh = make_practice(tmp_path / "fresh", clients=())
    _calendar(fresh)
    roster = fresh.root / "clients.toml"
    roster.unlink()  # a newcomer has no roster yet
    assert (
        main(["--config", str(fresh.config), "roster", "suggest", "--write", str(roster), "--now", NOW]) == 0
    )
    shown = capsys.readouterr().out
    assert "Liam" in shown and "Dentist" in shown and "Gym" not in shown
    assert stat.S_IMODE(roster.stat().st_mode) == 0o600
    data = tomllib.loads(roster.read_text(encoding="utf-8"))
    assert sorted(c["match"][0] for c in data["clients"]) == ["Liam", "Maya", "Noah", "Zoe K"]
    assert all(c["consent_to_call"] is False and c["voicemail_ok"] is False for c in data["clients"])

    found = _plan(fresh.config, capsys)
    assert _comparable(found, _by_phrase(roster)) == _comparable(
        expected, _by_phrase(by_hand.root / "clients.toml")
    )


def test_suggest_never_overwrites_a_file(tmp_path, capsys):
    """--write names an existing file: exit 2 and the file is untouched."""
    practice = make_practice(tmp_path / "p", clients=HAND[:1])
    _calendar(practice)
    target = practice.root / "draft.toml"
    target.write_text("mine\n", encoding="utf-8")
    assert (
        main(["--config", str(practice.config), "roster", "suggest", "--write", str(target), "--now", NOW])
        == 2
    )
    assert target.read_text(encoding="utf-8") == "mine\n"
    assert "already exists" in capsys.readouterr().err


def test_suggest_proposes_a_first_name_for_the_one_entry_that_carries_it(tmp_path, capsys):
    """Roster has "Maya Ortiz" without a match phrase: suggest proposes adding "Maya" to c002."""
    practice = make_practice(tmp_path / "p", clients=(ClientSpec("c002", "Maya Ortiz"),))
    _calendar(practice)
    assert main(["--config", str(practice.config), "roster", "suggest", "--now", NOW]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Maya "))
    assert "c002 (M.O.)" in row and "add match phrase to c002" in row


@pytest.mark.parametrize("personal", ["Liam's birthday dinner"])
def test_a_first_name_also_in_personal_events_is_not_proposed(tmp_path, capsys, personal):
    """'Liam' also titles an evening event: suggest lists it but does not propose the phrase."""
    practice = make_practice(tmp_path / "p", clients=())
    _calendar(practice)
    practice.add("dinner", vevent("fn-dinner", personal, local("2026-03-14 19:00"), minutes=120))
    assert main(["--config", str(practice.config), "roster", "suggest", "--now", NOW]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Liam "))
    assert "not proposed: the word also appears in personal events" in row


def test_check_fails_when_nothing_matches_and_shows_coverage(tmp_path, capsys):
    """A roster that matches none of the appointments is a failed check, pointing at roster suggest."""
    practice = make_practice(tmp_path / "p", clients=(ClientSpec("c009", "Someone Else"),))
    _calendar(practice)
    assert main(["--config", str(practice.config), "check"]) == 1
    out = capsys.readouterr().out
    assert "[!!] 0 of " in out and "roster suggest" in out


def test_check_passes_and_counts_coverage(tmp_path, capsys):
    """With the hand-written roster only the dentist is unmatched; its title shows on the terminal."""
    practice = make_practice(tmp_path / "p", clients=HAND)
    _calendar(practice)
    main(["--config", str(practice.config), "check"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "appointment-like events" in x)
    assert line.startswith("[ok] ") and "1 did not" in line
    assert "most frequent unmatched titles: 'Dentist' x1" in out


def test_check_warns_about_shared_and_personal_one_word_phrases(tmp_path, capsys):
    """Two entries with match "Liam", and "Noah" in an evening event: check warns about both, by id."""
    clients = (*HAND, ClientSpec("c005", "Liam Hart", match=("Liam",)))
    practice = make_practice(tmp_path / "p", clients=clients)
    _calendar(practice)
    practice.add("party", vevent("fn-party", "Noah party", local("2026-03-14 19:00"), minutes=120))
    main(["--config", str(practice.config), "check"])
    out = capsys.readouterr().out
    assert "warning: the one-word phrase 'liam' belongs to c001, c005: it matches none of them" in out
    assert "warning: the one-word phrase 'Noah' also appears in personal events" in out
