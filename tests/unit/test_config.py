"""Config and roster loading: every problem reported at once, with file, line and key."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from worker.cli import main
from worker.config import ReminderSettings, SourceSettings, VdirSource, initials, load_settings
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
    """A missing config file is one problem naming the file and where callsheet looks for one."""
    (problem,) = _problems(tmp_path / "nope.toml")
    assert problem.startswith(f"{tmp_path / 'nope.toml'}: config file not found (callsheet reads --config")
    assert "$CALLSHEET_CONFIG" in problem and "./callsheet.toml" in problem


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
    assert (
        f"{roster_path}:8: clients[2].acquainted_with[1]: not a client id in the roster "
        '(list ids such as "c014", not names)'
    ) in problems


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


def _config_problems(tmp_path: Path, config: str) -> list[str]:
    return [p.removeprefix(str(tmp_path / "config.toml")) for p in _problems(_write(tmp_path, config))]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[rules]\nslot = "0m"\n', ":16: rules.slot: must be longer than 0, e.g. '15m'"),
        ('[rules]\nslot = "7m"\n', ":16: rules.slot: must divide a day evenly, e.g. '5m', '15m', '30m'"),
        ('[rules]\ndefault_length = "0m"\n', ":16: rules.default_length: must be longer than 0, e.g. '15m'"),
        ('[run]\nevery = "0s"\n', ":16: run.every: must be at least 1s, e.g. '5m'"),
        (
            '[run]\nevery = "3h"\n',
            ":15: run.alert_after: shorter than run.every (3h); it must span at least one pass",
        ),
    ],
)
def test_values_that_cannot_work_are_config_errors(tmp_path: Path, extra: str, expected: str) -> None:
    """A zero slot or length, a zero interval, an alert shorter than the interval: exit 2 with file:line and key."""
    assert _config_problems(tmp_path, GOOD + "\n" + extra) == [expected]


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        ("9h", ":14: reminders.length: longer than the office day (8h); a call must fit in office hours"),
        ("0m", ":14: reminders.length: must be longer than 0, e.g. '15m'"),
    ],
)
def test_reminder_length_must_fit_the_office_day(tmp_path: Path, length: str, expected: str) -> None:
    """A reminder longer than the office day (or of no length) is rejected, not placed before office hours."""
    config = GOOD.replace('events_path = "out"', f'events_path = "out"\nlength = "{length}"')
    assert _config_problems(tmp_path, config) == [expected]


def test_no_pydantic_jargon(tmp_path: Path) -> None:
    """Wrong types and patterns are explained in words, never "Input should be a valid tuple"."""
    config = GOOD.replace('events_path = "out"', 'events_path = "out"\nwrite = "event"')
    roster = ROSTER.replace('id = "c2"', 'id = "c 2"')
    problems = _problems(_write(tmp_path, config, roster))
    assert f'{tmp_path / "config.toml"}:14: reminders.write: must be a list, e.g. ["a", "b"]' in problems
    assert (
        f"{tmp_path / 'clients.toml'}:6: clients[2].id: may use only letters, digits, '_', '.' and '-'"
        in problems
    )
    assert not [p for p in problems if "Input should" in p or "String should" in p or "pattern" in p]


def test_unknown_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    """A misspelt key is reported with the key it was probably meant to be."""
    config = GOOD.replace('timezone = "Europe/Berlin"', 'timezone = "Europe/Berlin"\ntherapist_nam = "X"')
    assert _config_problems(tmp_path, config) == [
        ":6: unknown key 'practice.therapist_nam'; did you mean 'therapist_name'?"
    ]


def test_missing_timezone_is_an_error(tmp_path: Path) -> None:
    """Without [practice] timezone callsheet does not silently use UTC."""
    config = GOOD.replace('timezone = "Europe/Berlin"\n', 'therapist_name = "X"\n')
    (problem,) = _config_problems(tmp_path, config)
    assert "[practice] timezone is missing" in problem


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            'kind = "caldav"\n',
            ":8: [source] kind = 'caldav' needs url = 'https://…/calendar/' (or urls = [...])",
        ),
        ('kind = "outlook"\n', ":8: source.kind: must be one of 'vdir', 'caldav', 'google' (got 'outlook')"),
        ('path = "calendar"\n', None),
    ],
)
def test_source_kinds_are_types(tmp_path: Path, source: str, expected: str | None) -> None:
    """Each [source] kind is its own model: CalDAV needs a url, an unknown kind is named, kind defaults to vdir."""
    config = GOOD.replace('kind = "vdir"\npath = "calendar"\n', source)
    if expected is None:
        settings = load_settings(_write(tmp_path, config))
        assert isinstance(settings.source, VdirSource) and settings.source.path == tmp_path / "calendar"
    else:
        assert _config_problems(tmp_path, config) == [expected]


def test_caldav_reminders_need_a_collection(tmp_path: Path) -> None:
    """[reminders] kind = caldav without events_url or tasks_url is a config error naming the key."""
    config = GOOD.replace('kind = "vdir"\nevents_path = "out"', 'kind = "caldav"')
    assert _config_problems(tmp_path, config) == [
        ":12: [reminders] kind = 'caldav' needs events_url = 'https://…/calls/' (and/or tasks_url), "
        "or events_calendar = 'Client calls' with url = the server"
    ]


def test_same_full_name_twice_is_reported(tmp_path: Path) -> None:
    """Two clients with the same full name are reported (by position, never by name)."""
    roster = ROSTER.replace("Sam Example", "robin  example")
    (problem,) = _problems(_write(tmp_path, roster=roster))
    assert problem.startswith(
        f"{tmp_path / 'clients.toml'}:7: clients[2].name: the same full name as clients[1]"
    )
    assert "Robin" not in problem and "robin" not in problem


def test_acquaintance_named_by_name_is_not_echoed(tmp_path: Path) -> None:
    """An acquainted_with that names a person instead of an id never echoes that name."""
    roster = ROSTER.replace('["c1"]', '["Robin Example"]')
    (problem,) = _problems(_write(tmp_path, roster=roster))
    assert "Robin" not in problem and "clients[2].acquainted_with[1]: not a client id" in problem


def test_acquainted_with_itself_has_a_line(tmp_path: Path) -> None:
    """An acquainted_with naming the client itself is reported with its line."""
    roster = ROSTER.replace('["c1"]', '["c2"]')
    assert _problems(_write(tmp_path, roster=roster)) == [
        f"{tmp_path / 'clients.toml'}:8: clients[2].acquainted_with: names the client itself"
    ]


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x85"])
def test_control_characters_in_the_roster_are_refused(tmp_path: Path, char: str) -> None:
    """NUL or ESC in a roster value is refused by validation, and the value is never printed."""
    roster = ROSTER.replace("Sam Example", f"Sam\\u{ord(char):04x}[31mExample")
    (problem,) = _problems(_write(tmp_path, roster=roster))
    code = f"U+{ord(char):04X}"
    assert (
        problem
        == f"{tmp_path / 'clients.toml'}:7: clients[2].name: contains a control character ({code}); remove it"
    )


def test_policy_defaults_match_the_settings() -> None:
    """rules.Policy and placement.Hours defaults equal the [rules] defaults: one truth for every default."""
    from worker import placement, rules
    from worker.config import RuleSettings

    policy, settings = rules.Policy(), RuleSettings()
    shared = [name for name in RuleSettings.model_fields if hasattr(policy, name)]
    assert len(shared) >= 8
    assert {n: getattr(policy, n) for n in shared} == {n: getattr(settings, n) for n in shared}
    assert placement.Hours.__dataclass_fields__["slot"].default == settings.slot


def _example_values(text: str) -> dict[str, object]:
    """Every key config.example.toml shows, set or commented out, as dotted name -> raw TOML value."""
    import re
    import tomllib

    out: dict[str, object] = {}
    table = ""
    for line in text.splitlines():
        bare = line.lstrip("# ").rstrip()
        header = re.fullmatch(r"\[([a-z_.]+)\]", bare)
        if header:
            table = header.group(1)
            continue
        found = re.fullmatch(r"([a-z_]+) = (.+)", bare)
        if found:
            name = f"{table}.{found.group(1)}" if table else found.group(1)
            out.setdefault(name, tomllib.loads(f"v = {found.group(2)}")["v"])
    return out


def test_example_config_shows_the_real_defaults() -> None:
    """config.example.toml shows every key, and every value it shows is the real default."""
    from worker.config import (
        CALENDAR_NAME,
        MarkerSettings,
        OfficeHours,
        PracticeSettings,
        RuleSettings,
        RunSettings,
        _Account,
        _ConfigFile,
    )

    shown = _example_values((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    # values that are examples, not defaults (a path, a URL, a name): only their presence is checked
    examples = {"timezone", "therapist_name", "callback_number", "path", "url", "urls", "username"}
    examples |= {"password_file", "password_env", "token_file", "client_secrets_file", "api_endpoint"}
    examples |= {"password_secret", "token_secret"}
    examples |= {"calendar_id", "calendar_ids", "events_path", "tasks_path", "events_url", "tasks_url"}
    examples |= {"calendar", "events_calendar", "tasks_calendar"}  # display names
    examples |= {"state_url", "state_password_env"}  # a database of one's own
    models: dict[str, type] = {
        "practice": PracticeSettings,
        "source": SourceSettings,
        "reminders": ReminderSettings,
        "rules": RuleSettings,
        "markers": MarkerSettings,
        "run": RunSettings,
    }
    checked = 0
    for table, model in {"": _ConfigFile, **models}.items():
        for name, field in model.model_fields.items():
            if name in models and not table:
                continue
            if table == "reminders" and name in _Account.model_fields:
                continue  # documented as "may be set here too; falls back to [source]"
            dotted = f"{table}.{name}" if table else name
            assert dotted in shown, f"config.example.toml does not show {dotted}"
            if name in examples or field.is_required() or name == "office_hours":
                continue
            value = model.model_validate({name: shown[dotted]}).__getattribute__(name) if table else None
            if not table:
                value = Path(str(shown[dotted]))
            assert value == field.get_default(call_default_factory=True), f"{dotted} shows {shown[dotted]!r}"
            checked += 1
    assert checked >= 30
    assert OfficeHours.model_validate(shown["practice.office_hours"]) == OfficeHours()
    assert shown["reminders.calendar_name"] == CALENDAR_NAME
