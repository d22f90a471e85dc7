"""The config keys of accounts kept in the database (no database needed: `stored` stands in for
its rows): accounts_from, password_secret beside password_file / password_env, the refusals and
their messages, and the Fernet keys of CALLSHEET_SECRET_KEY."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_group_config import HEAD, account, write
from worker.accounts_db import KEY_ENV, Keys, key_id, place_of
from worker.config import load_accounts
from worker.errors import ConfigError

URL = "postgresql://callsheet@127.0.0.1:5432/callsheet"
DB_HEAD = f'state_url = "{URL}"\naccounts_from = "database"\n' + HEAD


def stored(name: str, extra: str = "", source: str = "") -> tuple[str, str]:
    """An account's text as `accounts put` stores it (an accounts_dir file)."""
    return name, (
        f'name = "{name}"\n{extra}\n[source]\nkind = "vdir"\npath = "cal/{name}"\n{source}\n'
        f'[reminders]\nkind = "vdir"\nevents_path = "out/{name}"\n'
    )


def problems(config: Path, rows: list[tuple[str, str]] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_accounts(config, stored=rows)
    return [str(p) for p in caught.value.problems]


def test_stored_accounts_load_like_files(tmp_path: Path) -> None:
    """Stored accounts share the main config's defaults, get state_dir/NAME, and are marked as
    coming from the database; a stored text without `name` takes the row's."""
    config = write(tmp_path, DB_HEAD)
    name, text = stored("okafor")
    rows = [
        stored("rivera", extra='[rules]\nlookahead = "3d"\n'),
        (name, text.replace('name = "okafor"\n', "")),
    ]
    rivera, okafor = load_accounts(config, stored=rows)
    assert (rivera.account, okafor.account) == ("rivera", "okafor")
    assert rivera.state_dir == tmp_path / "var" / "rivera" and rivera.state_url == URL
    assert rivera.rules.lookahead.days == 3 and okafor.rules.lookahead.days == 7
    assert rivera.source.path == tmp_path / "cal" / "rivera"
    assert rivera.accounts_from == okafor.accounts_from == "database"


def test_stored_account_errors_name_the_account_key_and_line(tmp_path: Path) -> None:
    """A stored account's mistake names the account, the key and its line in the stored text."""
    config = write(tmp_path, DB_HEAD)
    found = problems(config, [stored("rivera", source='url = "x"\npasword_env = "X"\n')])
    assert any("database:rivera:7" in p and "account 'rivera'" in p and "pasword_env" in p for p in found)


def test_stored_accounts_may_not_move_the_state_database(tmp_path: Path) -> None:
    """state_url belongs to the main config: a stored account that sets it is refused."""
    config = write(tmp_path, DB_HEAD)
    found = problems(config, [stored("rivera", extra=f'state_url = "{URL}2"')])
    assert any("state_url" in p and "main config" in p for p in found)


def test_database_accounts_need_postgresql(tmp_path: Path) -> None:
    """accounts_from = "database" with the SQLite state is refused, saying the SQLite state is
    file-based; [[accounts]] beside it are refused too; an unknown value is named."""
    config = write(tmp_path, 'accounts_from = "database"\n' + HEAD)
    assert any("SQLite state is file-based" in p for p in problems(config, []))
    config = write(tmp_path, DB_HEAD + account("rivera"))
    assert any("remove accounts" in p for p in problems(config, []))
    config = write(tmp_path, 'accounts_from = "files"\n' + HEAD + account("rivera"))
    assert any("accounts_from" in p for p in problems(config))


def test_empty_database_is_an_error_unless_allowed(tmp_path: Path) -> None:
    """No stored account: commands say how to store one; a worker (allow_empty) waits."""
    config = write(tmp_path, DB_HEAD)
    assert any("accounts put" in p for p in problems(config, []))
    assert load_accounts(config, stored=[], allow_empty=True) == ()


def test_password_secret_is_one_of_three(tmp_path: Path) -> None:
    """password_secret, password_file and password_env: at most one per section, named."""
    config = write(tmp_path, DB_HEAD)
    found = problems(config, [stored("rivera", source='password_secret = "dav"\npassword_env = "DAV"\n')])
    assert any("password_env and password_secret" in p and "account 'rivera'" in p for p in found)


def test_password_secret_needs_the_postgresql_state(tmp_path: Path) -> None:
    """A password_secret in an [[accounts]] table on the SQLite state is refused (secrets live in
    the PostgreSQL state database)."""
    config = write(tmp_path, HEAD + account("rivera", source='password_secret = "dav"\n'))
    with pytest.raises(ConfigError, match="password_secret: secrets are stored in the PostgreSQL"):
        load_accounts(config)


def test_reminders_keep_their_own_password(tmp_path: Path) -> None:
    """[reminders] of the same kind inherit [source]'s password_secret, unless they name a
    password of their own (then none of [source]'s)."""
    config = write(tmp_path, DB_HEAD)
    source = 'password_secret = "dav"\n'
    (same,) = load_accounts(config, stored=[stored("rivera", source=source)])
    assert same.reminders.password_secret == "dav"
    name, text = stored("okafor", source=source)
    text += 'password_env = "OTHER"\n'
    (own,) = load_accounts(config, stored=[(name, text)])
    assert own.reminders.password_secret is None and own.reminders.password_env == "OTHER"


def test_keys_from_the_environment() -> None:
    """Comma-separated keys: the first encrypts, each decrypts; a bad or missing key is a
    ConfigError naming the variable and never the value."""
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    keys = Keys.from_env({KEY_ENV: f"{new}, {old}"})
    assert keys.ids == (key_id(new.encode()), key_id(old.encode())) and keys.primary == key_id(new.encode())
    token = Keys.from_env({KEY_ENV: old}).encrypt("pw", "a/p")
    assert keys.decrypt(token, key_id(old.encode()), "x", "a/p") == "pw"
    assert Keys.from_env({KEY_ENV: new}).decrypt(keys.rotate(token, "x", "x", "a/p"), "x", "x", "a/p") == "pw"
    with pytest.raises(ConfigError, match=f"{KEY_ENV} is not set"):
        Keys.from_env({})
    with pytest.raises(ConfigError) as caught:
        Keys.from_env({KEY_ENV: f"{new},short-and-wrong"})
    assert "key 2 of 2" in str(caught.value) and "short-and-wrong" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        Keys.from_env({KEY_ENV: new}).decrypt(
            Keys.from_env({KEY_ENV: old}).encrypt("pw", "a/p"), "abcd", "the secret", "a/p"
        )
    assert "abcd" in str(caught.value) and new not in str(caught.value)


def test_a_secret_copied_to_another_row_does_not_decrypt() -> None:
    """A ciphertext is bound to its account and name: moved to another row it is refused,
    without the value in the message."""
    keys = Keys.from_env({KEY_ENV: Fernet.generate_key().decode()})
    token = keys.encrypt("hunter2", place_of("rivera", "caldav"))
    assert keys.decrypt(token, keys.primary, "x", place_of("rivera", "caldav")) == "hunter2"
    for elsewhere in (place_of("chen", "caldav"), place_of("rivera", "google")):
        with pytest.raises(ConfigError, match="encrypted for another account") as caught:
            keys.decrypt(token, keys.primary, "the secret", elsewhere)
        assert "hunter2" not in str(caught.value)


def test_token_secret_is_one_of_two_and_needs_postgresql(tmp_path: Path) -> None:
    """token_secret and token_file together are refused; token_secret on the SQLite state too."""
    config = write(tmp_path, DB_HEAD)
    found = problems(config, [stored("rivera", source='token_secret = "g"\ntoken_file = "t.json"\n')])
    assert any("token_file or token_secret, not both" in p for p in found)
    config = write(tmp_path, HEAD + account("rivera", source='token_secret = "g"\n'))
    with pytest.raises(ConfigError, match="token_secret: secrets are stored in the PostgreSQL"):
        load_accounts(config)


_KEY_POOL = [Fernet.generate_key().decode() for _ in range(3)]


@given(value=st.text(min_size=1), order=st.permutations(range(3)))
@settings(max_examples=40, deadline=None)
def test_any_secret_survives_encryption_and_rotation(value: str, order: list[int]) -> None:
    """Any text encrypted under one key reads back the same under any key list holding that key,
    and after rotation under the first key alone, which the old key alone no longer opens."""
    first, *rest = (_KEY_POOL[i] for i in order)
    old = rest[-1]
    token = Keys.from_env({KEY_ENV: old}).encrypt(value, "a/p")
    both = Keys.from_env({KEY_ENV: ",".join([first, *rest])})
    assert both.decrypt(token, key_id(old.encode()), "x", "a/p") == value
    fresh = both.rotate(token, key_id(old.encode()), "x", "a/p")
    assert Keys.from_env({KEY_ENV: first}).decrypt(fresh, both.primary, "x", "a/p") == value
    with pytest.raises(ConfigError):
        Keys.from_env({KEY_ENV: old}).decrypt(fresh, both.primary, "x", "a/p")


def test_reloader_loads_only_on_a_change_and_keeps_the_set_on_a_broken_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reloader loads again only when the revision moved; a change that fails to load is
    logged, leaves the served set as it was, and is not parsed again until the next change."""
    from worker import accounts_db
    from worker.errors import Problem

    revision = [5]
    loads: list[int] = []
    broken = [False]

    def loader() -> tuple[str, ...]:
        loads.append(revision[0])
        if broken[0]:
            raise ConfigError([Problem("database:a01:3", "account 'a01': unknown key 'x'")])
        return (f"set-{revision[0]}",)

    monkeypatch.setattr(accounts_db, "revision", lambda db: revision[0])
    reload = accounts_db.Reloader(Path("c.toml"), accounts_db.Database(URL), loader)
    assert reload.load() == ("set-5",)
    assert reload() is None and loads == [5]
    revision[0] = 6
    assert reload() == ("set-6",) and reload() is None and loads == [5, 6]
    revision[0], broken[0] = 7, True
    assert reload() is None and reload() is None and loads == [5, 6, 7]
    revision[0], broken[0] = 8, False
    assert reload() == ("set-8",)
