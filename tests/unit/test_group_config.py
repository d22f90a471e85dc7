"""Group practice configuration: [[accounts]] tables and accounts_dir files, shared defaults an
account overrides, per-account state folders, and errors that name the file, line, account and key."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from tests.practice import ClientSpec, Practice, roster_toml
from worker.config import DEFAULT_ACCOUNT, load_accounts, load_settings
from worker.errors import ConfigError

HEAD = 'roster = "clients.toml"\nstate_dir = "var"\n\n[practice]\ntimezone = "America/Chicago"\n\n[rules]\nlookahead = "7d"\n'


def account(name: str, *, extra: str = "", source: str = "") -> str:
    return (
        f'\n[[accounts]]\nname = "{name}"\nwaiting_room = "front"\n{extra}'
        f'[accounts.source]\nkind = "vdir"\npath = "cal/{name}"\n{source}'
        f'[accounts.reminders]\nkind = "vdir"\nevents_path = "out/{name}"\n'
    )


def write(
    root: Path, text: str, clients: tuple[ClientSpec, ...] = (ClientSpec("c001", "Avery Quinn"),)
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.toml").write_text(text, encoding="utf-8")
    fd = os.open(root / "clients.toml", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(roster_toml(clients))
    return root / "config.toml"


def problems(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_accounts(config)
    return [str(p) for p in caught.value.problems]


def test_accounts_tables_share_defaults_and_get_their_own_state(tmp_path: Path) -> None:
    """Two [[accounts]]: shared practice and rules, one override, state in state_dir/NAME."""
    config = write(
        tmp_path, HEAD + account("rivera") + account("okafor", extra='[accounts.rules]\nlookahead = "3d"\n')
    )
    rivera, okafor = load_accounts(config)
    assert (rivera.account, okafor.account) == ("rivera", "okafor")
    assert rivera.state_dir == tmp_path / "var" / "rivera" and okafor.state_dir == tmp_path / "var" / "okafor"
    assert rivera.rules.lookahead == timedelta(days=7) and okafor.rules.lookahead == timedelta(days=3)
    assert okafor.rules.acquainted_gap == rivera.rules.acquainted_gap  # the rest stays shared
    assert rivera.practice.timezone == okafor.practice.timezone == "America/Chicago"
    assert rivera.source.path == tmp_path / "cal" / "rivera"
    assert rivera.waiting_room == "front" and rivera.roster_path == okafor.roster_path
    assert len(rivera.clients) == 1


def test_the_single_calendar_config_is_one_account_with_its_state_where_it_was(tmp_path: Path) -> None:
    """The config of one calendar loads as one account named "default" whose state stays in state_dir itself."""
    practice = Practice(tmp_path / "solo")
    (only,) = load_accounts(practice.config)
    assert only.account == DEFAULT_ACCOUNT and only.state_dir == practice.root / "var"
    assert load_settings(practice.config) == only
    assert load_settings(practice.config, account="default") == only


def test_accounts_dir_reads_one_file_per_account(tmp_path: Path) -> None:
    """accounts_dir = "accounts/": each NAME.toml is an account; problems name that file and line."""
    config = write(tmp_path, 'accounts_dir = "accounts"\n' + HEAD)
    folder = tmp_path / "accounts"
    folder.mkdir()
    body = account("a").replace("[[accounts]]\n", "").replace("[accounts.", "[")
    (folder / "a.toml").write_text(body, encoding="utf-8")
    (folder / "b.toml").write_text(body.replace('"a"', '"b"').replace("cal/a", "cal/b"), encoding="utf-8")
    assert [a.account for a in load_accounts(config)] == ["a", "b"]
    (folder / "b.toml").write_text(
        body.replace('"a"', '"b"').replace('kind = "vdir"\npath', 'knd = "vdir"\npath')
    )
    [message] = problems(config)
    line = (folder / "b.toml").read_text().splitlines().index('knd = "vdir"') + 1
    assert message.startswith(f"{folder / 'b.toml'}:{line}:") or message.startswith(
        f"{folder / 'b.toml'}:{line} "
    )
    assert "account 'b'" in message and "'source.knd'" in message and "did you mean 'kind'" in message


def test_a_bad_key_in_the_second_account_names_its_line(tmp_path: Path) -> None:
    """A mistyped key inside the second [[accounts]] is reported at its own line, with the account."""
    text = HEAD + account("rivera") + account("okafor", source="timeout = 5\n")
    config = write(tmp_path, text)
    [message] = problems(config)
    line = text.splitlines().index("timeout = 5") + 1
    assert f"config.toml:{line}" in message and "account 'okafor'" in message and "source.timeout" in message


def test_names_and_shared_sections_are_checked(tmp_path: Path) -> None:
    """A missing or repeated name, a top-level [source] beside accounts, and an empty accounts_dir are errors."""
    text = HEAD + account("rivera") + account("rivera").replace("cal/rivera", "cal/x")
    second = [n for n, line in enumerate(text.splitlines(), start=1) if line == 'name = "rivera"'][1]
    assert any(
        f"config.toml:{second}:" in p and "'rivera' names two accounts" in p
        for p in problems(write(tmp_path / "twice", text))
    )
    nameless = HEAD + account("x").replace('name = "x"\n', "")
    assert any("accounts[1].name: required" in p for p in problems(write(tmp_path / "nameless", nameless)))
    shared = HEAD.replace("[rules]", '[source]\npath = "cal"\n\n[rules]') + account("a")
    assert any("[source] belongs in each account" in p for p in problems(write(tmp_path / "shared", shared)))
    (tmp_path / "empty" / "accounts").mkdir(parents=True)
    empty = write(tmp_path / "empty", 'accounts_dir = "accounts"\n' + HEAD)
    assert any("holds no account files" in p for p in problems(empty))


def test_several_accounts_need_a_name_to_load_one(tmp_path: Path) -> None:
    """load_settings of a group config without an account names the accounts; with one, gives it."""
    config = write(tmp_path, HEAD + account("rivera") + account("okafor"))
    with pytest.raises(ConfigError, match="several accounts \\(rivera, okafor\\)"):
        load_settings(config)
    assert load_settings(config, account="okafor").account == "okafor"
    with pytest.raises(ConfigError, match="no account named 'x'"):
        load_settings(config, account="x")


def test_a_roster_clinician_must_be_an_account(tmp_path: Path) -> None:
    """`clinician` in a shared roster names an account; a typo is reported at its roster line."""
    clients = (
        ClientSpec("c001", "Avery Quinn", raw={"clinician": '"rivera"'}),
        ClientSpec("c002", "Blake Rowe", raw={"clinician": '"okafr"'}),
    )
    config = write(tmp_path, HEAD + account("rivera") + account("okafor"), clients)
    [message] = problems(config)
    assert "clients.toml:" in message and "clients[2].clinician: not an account" in message
    assert "okafr" not in message.split("accounts:")[0]  # the value itself is not echoed before the list


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    """run.concurrency must be a whole number from 1 to 64."""
    config = write(tmp_path, HEAD + "\n[run]\nconcurrency = 0\n" + account("a"))
    assert any("run.concurrency: must be at least 1" in p for p in problems(config))
