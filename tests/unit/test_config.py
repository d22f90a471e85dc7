"""Config and roster loading: every problem reported at once, with file, line and key."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from worker.cli import main
from worker.config import initials, load_settings
from worker.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
roster = "clients.toml"
state_dir = "var"

[practice]
timezone = "Europe/Berlin"

[source]
kind = "vdir"
path = "calendar"

[reminders]
kind = "vdir"
events_path = "out"
"""

ROSTER = """\
[[clients]]
id = "c1"
name = "Robin Example"

[[clients]]
id = "c2"
name = "Sam Example"
acquainted_with = ["c1"]
"""


def _write(folder: Path, config: str = GOOD, roster: str = ROSTER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(config, encoding="utf-8")
    (folder / "clients.toml").write_text(roster, encoding="utf-8")
    return folder / "config.toml"


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return [str(p) for p in info.value.problems]


def test_example_files_load(tmp_path: Path) -> None:
    """config.example.toml and clients.example.toml load as they ship."""
    shutil.copy(ROOT / "config.example.toml", tmp_path / "config.toml")
    shutil.copy(ROOT / "clients.example.toml", tmp_path / "clients.toml")
    settings = load_settings(tmp_path / "config.toml")
    assert [c.id for c in settings.clients] == ["c014", "c022", "c030"]
    assert settings.clients[2].members == ("c014", "c022")
    assert settings.rules.rebook_within == timedelta(days=7)
    assert settings.source.path == tmp_path / "calendar"
    # acquaintance is symmetric: one side is enough
    assert "c014" in settings.clients[1].acquainted_with


def test_good_config_resolves_paths_and_defaults(tmp_path: Path) -> None:
    """Relative paths are relative to the config file; unset keys take the documented defaults."""
    settings = load_settings(_write(tmp_path))
    assert settings.state_dir == tmp_path / "var"
    assert settings.reminders.events_path == tmp_path / "out"
    assert settings.rules.late_after == timedelta(minutes=15)
    assert settings.clients[0].alias == "R.E."
    assert settings.clients[1].acquainted_with == frozenset({"c1"})


def test_missing_config_is_named(tmp_path: Path) -> None:
    """A missing config file is one problem naming the file."""
    assert _problems(tmp_path / "nope.toml") == [f"{tmp_path / 'nope.toml'}: config file not found"]


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the line."""
    path = _write(tmp_path, GOOD.replace('kind = "vdir"\npath', 'kind = "vdir\npath', 1))
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:8: TOML syntax error")


def test_unknown_key_and_wrong_type_reported_together(tmp_path: Path) -> None:
    """An unknown key and a wrong type are both reported, each with its line and key."""
    config = GOOD.replace('timezone = "Europe/Berlin"', 'timezone = "Europe/Berlin"\ncolour = "blue"')
    config += "\n[rules]\nrebook_within = 7\n"
    problems = _problems(_write(tmp_path, config))
    assert f"{tmp_path / 'config.toml'}:6: unknown key 'practice.colour'" in problems
    assert any(p.startswith(f"{tmp_path / 'config.toml'}:17: rules.rebook_within:") for p in problems)
    assert len(problems) == 2


def test_bad_duration_and_zone(tmp_path: Path) -> None:
    """A duration that is not one and an unknown time zone are explained."""
    config = GOOD.replace("Europe/Berlin", "Mars/Olympus") + '\n[rules]\nlapse_after = "a month"\n'
    problems = _problems(_write(tmp_path, config))
    assert any("unknown time zone 'Mars/Olympus'" in p for p in problems)
    assert any("rules.lapse_after" in p and "not a duration" in p for p in problems)


def test_duplicate_id_and_unknown_acquaintance(tmp_path: Path) -> None:
    """A roster id used twice and an acquainted_with naming nobody are both reported with lines."""
    roster = ROSTER.replace('id = "c2"', 'id = "c1"').replace('["c1"]', '["c9"]')
    problems = _problems(_write(tmp_path, roster=roster))
    roster_path = tmp_path / "clients.toml"
    assert f"{roster_path}:6: clients[2].id: id 'c1' is used twice (first by clients[1])" in problems
    assert f"{roster_path}:8: clients[2].acquainted_with: unknown client id 'c9'" in problems


def test_roster_messages_never_echo_client_data(tmp_path: Path) -> None:
    """A wrong type in the roster names the key, never the value (it may be client data)."""
    roster = ROSTER.replace(
        'name = "Robin Example"', 'name = "Robin Example"\nconsent_to_call = "Robin Example yes"'
    )
    problems = _problems(_write(tmp_path, roster=roster))
    assert len(problems) == 1 and "clients[1].consent_to_call" in problems[0]
    assert "Robin" not in problems[0]


def test_vdir_source_needs_a_path(tmp_path: Path) -> None:
    """A vdir source without a folder is a configuration problem, not a crash later."""
    problems = _problems(_write(tmp_path, GOOD.replace('path = "calendar"\n', "")))
    assert problems == [f"{tmp_path / 'config.toml'}:8: [source] kind = 'vdir' needs path = 'FOLDER'"]


def test_cli_reports_config_problems_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI prints every problem on stderr and exits 2, without a traceback."""
    path = _write(tmp_path, GOOD + "\n[rules]\nrebook_within = 7\nbogus = 1\n")
    assert main(["--config", str(path), "plan", "--json"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "unknown key 'rules.bogus'" in err
    assert "Traceback" not in err


def test_cli_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command and a malformed --now both exit 2 with a message."""
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    path = _write(tmp_path)
    assert main(["--config", str(path), "plan", "--now", "yesterday"]) == 2
    assert "--now 'yesterday' is not an ISO-8601 time" in capsys.readouterr().err


def test_initials() -> None:
    """Aliases default to initials, hyphenated names included."""
    assert initials("Jordan Smith") == "J.S."
    assert initials("Casey Rivera-Ortiz") == "C.R.O."
