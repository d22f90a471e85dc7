"""Account configs and their secrets in the PostgreSQL state database (docs/scaling.md
"Accounts in the database").

With `accounts_from = "database"` in the main config, every account is a row of
`account_configs`: its name, its TOML text exactly as an `accounts_dir` file would hold it, a
version and when it changed. Secrets (a CalDAV password named by `password_secret`) are rows of
`account_secrets`, encrypted with Fernet under a key from the environment
(`CALLSHEET_SECRET_KEY`: one or more comma-separated keys, the first encrypts, every one
decrypts, so keys rotate without downtime; `callsheet accounts rotate-secrets` re-encrypts
under the first). The key never reaches the database, a file, a log line or a message: a
secret row records only a key id, 8 hex digits of a keyed hash of the key.

Every change of an account config bumps the one-row `account_revision`; a worker reads that
number once per tick (`Reloader`) and loads the accounts again only when it moved. Secrets
are read and decrypted at each pass that needs them, so a changed password is used at once.

Errors: a missing or malformed key, or a secret that none of the keys opens, is a ConfigError
naming CALLSHEET_SECRET_KEY (exit 2), never the ciphertext nor the key; a database that cannot
be reached is a StateError (exit 1, retried next pass).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from worker import state_pg
from worker.errors import ConfigError, Problem, StateError

log = structlog.get_logger()

KEY_ENV = "CALLSHEET_SECRET_KEY"
_KEY_HELP = (
    f"set {KEY_ENV} to one or more Fernet keys, comma-separated, newest first "
    "(`callsheet accounts new-key` prints a new one)"
)


# -- keys -----------------------------------------------------------------------------------------


def key_id(key: bytes) -> str:
    """A key's short name for the database and messages: 8 hex digits of a keyed hash (the key
    cannot be recovered from it)."""
    return hashlib.blake2b(key, digest_size=4, person=b"callsheet-key").hexdigest()


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of CALLSHEET_SECRET_KEY: the first encrypts, any decrypts."""

    ids: tuple[str, ...]
    _fernets: tuple[Fernet, ...]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keys:
        """The keys in the environment.

        Raises:
            ConfigError: the variable is unset, empty, or holds something that is not a Fernet key.
        """
        raw = (os.environ if environ is None else environ).get(KEY_ENV, "")
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        if not parts:
            raise ConfigError(
                [
                    Problem(
                        KEY_ENV,
                        f"{KEY_ENV} is not set: the secrets in the database are "
                        f"encrypted with it; {_KEY_HELP}",
                    )
                ]
            )
        fernets, ids = [], []
        for n, part in enumerate(parts, start=1):
            try:
                fernets.append(Fernet(part.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise ConfigError(
                    [
                        Problem(
                            KEY_ENV,
                            f"{KEY_ENV}: key {n} of {len(parts)} is not a Fernet key (44 characters of "
                            f"url-safe base64); {_KEY_HELP}",
                        )
                    ]
                ) from None
            ids.append(key_id(part.encode("ascii")))
        return cls(tuple(ids), tuple(fernets))

    @property
    def primary(self) -> str:
        return self.ids[0]

    def encrypt(self, value: str, place: str) -> str:
        """`value` encrypted under the first key, bound to `place` (the account and the secret's
        name): a ciphertext copied into another row of the table does not decrypt there."""
        return self._fernets[0].encrypt(f"{place}\0{value}".encode()).decode("ascii")

    def decrypt(self, token: str, stored_id: str, what: str, place: str) -> str:
        """The plain text of `token`, which must have been encrypted for `place`.

        Raises:
            ConfigError: no key of CALLSHEET_SECRET_KEY opens it (names the key id it needs), or
                it was encrypted for another account or secret name.
        """
        try:
            plain = MultiFernet(list(self._fernets)).decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise ConfigError(
                [
                    Problem(
                        KEY_ENV,
                        f"{what} cannot be decrypted with {KEY_ENV} (it was stored under key id "
                        f"{stored_id}; the keys given have ids {', '.join(self.ids)}): add the key it was "
                        "stored with, after the new one",
                    )
                ]
            ) from None
        bound, sep, value = plain.partition("\0")
        if not sep or bound != place:
            raise ConfigError(
                [
                    Problem(
                        KEY_ENV,
                        f"{what} was encrypted for another account or secret name (copied between "
                        "rows of account_secrets?): store it again with `callsheet accounts secret`",
                    )
                ]
            )
        return value

    def rotate(self, token: str, stored_id: str, what: str, place: str) -> str:
        """`token` encrypted again under the first key (ConfigError as `decrypt`)."""
        return self.encrypt(self.decrypt(token, stored_id, what, place), place)


def place_of(account: str, name: str) -> str:
    """What a secret's ciphertext is bound to."""
    return f"{account}/{name}"


def new_key() -> str:
    """A fresh Fernet key (for CALLSHEET_SECRET_KEY)."""
    return Fernet.generate_key().decode("ascii")


# -- rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """One row of account_configs."""

    name: str
    text: str
    version: int
    updated_at: str


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """One row of account_secrets, without its ciphertext."""

    account: str
    name: str
    key_id: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class Database:
    """Where the accounts live: the main config's state_url and the password's variable."""

    url: str
    password_env: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _connect(db: Database) -> psycopg.Connection[Any]:
    """A connection of its own, the schema migrated forward (StateError when unusable)."""
    conn = state_pg.connect(db.url, db.password_env)
    try:
        if state_pg.current(conn) != state_pg.SCHEMA_VERSION:
            state_pg.migrate(conn, db.url)
    except psycopg.Error as exc:
        conn.close()
        raise state_pg.unusable(db.url, exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _run(db: Database, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
    conn = _connect(db)
    try:
        return work(conn)
    except psycopg.Error as exc:
        raise state_pg.unusable(db.url, exc) from exc
    finally:
        conn.close()


def _bump(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("UPDATE account_revision SET revision = revision + 1 RETURNING revision").fetchone()
    assert row is not None
    return int(row[0])


def revision(db: Database) -> int:
    """The number of account-config changes so far (one row, from the pool: cheap per tick)."""
    try:
        with state_pg._pool(db.url, db.password_env).connection() as conn:
            row = conn.execute("SELECT revision FROM account_revision").fetchone()
    except psycopg.errors.UndefinedTable:  # a database older than this callsheet: migrate it first
        row = _run(db, lambda conn: conn.execute("SELECT revision FROM account_revision").fetchone())
    except psycopg.Error as exc:
        raise state_pg.unusable(db.url, exc) from exc
    except StateError:
        raise
    except Exception as exc:  # the pool's own PoolTimeout
        raise state_pg.unusable(db.url, exc) from exc
    return int(row[0]) if row is not None else 0


def stored_accounts(db: Database) -> tuple[int, list[StoredAccount]]:
    """The revision and every account row, by name (one snapshot)."""

    def work(conn: psycopg.Connection[Any]) -> tuple[int, list[StoredAccount]]:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = conn.execute("SELECT revision FROM account_revision").fetchone()
            rows = conn.execute(
                "SELECT name, config, version, updated_at FROM account_configs ORDER BY name"
            ).fetchall()
        return (int(row[0]) if row else 0), [
            StoredAccount(str(a), str(b), int(c), str(d)) for a, b, c, d in rows
        ]

    result: tuple[int, list[StoredAccount]] = _run(db, work)
    return result


def put_account(db: Database, name: str, text: str) -> int:
    """Store (add or replace) one account's TOML text; returns its new version."""

    def work(conn: psycopg.Connection[Any]) -> int:
        with conn.transaction():
            version = _bump(conn)
            conn.execute(
                "INSERT INTO account_configs (name, config, version, updated_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET config = EXCLUDED.config, version = EXCLUDED.version, "
                "updated_at = EXCLUDED.updated_at",
                (name, text, version, _now()),
            )
        return version

    result: int = _run(db, work)
    return result


def remove_account(db: Database, name: str) -> tuple[bool, int]:
    """Remove one account's config and its secrets (its state rows stay, as when a file is
    removed). Returns (whether a config row was there, secrets removed)."""

    def work(conn: psycopg.Connection[Any]) -> tuple[bool, int]:
        with conn.transaction():
            gone = conn.execute("DELETE FROM account_configs WHERE name = %s", (name,)).rowcount
            secrets = conn.execute("DELETE FROM account_secrets WHERE account = %s", (name,)).rowcount
            if gone:
                _bump(conn)
        return bool(gone), int(secrets)

    result: tuple[bool, int] = _run(db, work)
    return result


def put_secret(db: Database, keys: Keys, account: str, name: str, value: str) -> None:
    """Store one secret, encrypted under the first key."""
    token = keys.encrypt(value, place_of(account, name))

    def work(conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "INSERT INTO account_secrets (account, name, ciphertext, key_id, updated_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account, name) DO UPDATE SET "
            "ciphertext = EXCLUDED.ciphertext, key_id = EXCLUDED.key_id, updated_at = EXCLUDED.updated_at",
            (account, name, token, keys.primary, _now()),
        )

    _run(db, work)


def delete_secret(db: Database, account: str, name: str) -> bool:
    def work(conn: psycopg.Connection[Any]) -> bool:
        cur = conn.execute("DELETE FROM account_secrets WHERE account = %s AND name = %s", (account, name))
        return bool(cur.rowcount)

    result: bool = _run(db, work)
    return result


def stored_secrets(db: Database) -> list[StoredSecret]:
    """Every secret's account, name, key id and time (never the ciphertext)."""

    def work(conn: psycopg.Connection[Any]) -> list[StoredSecret]:
        rows = conn.execute(
            "SELECT account, name, key_id, updated_at FROM account_secrets ORDER BY account, name"
        ).fetchall()
        return [StoredSecret(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]

    result: list[StoredSecret] = _run(db, work)
    return result


def rotate_secrets(db: Database, keys: Keys) -> tuple[int, int]:
    """Encrypt every secret not under the first key again under it, in one transaction (all or
    none). Returns (re-encrypted, total)."""

    def work(conn: psycopg.Connection[Any]) -> tuple[int, int]:
        done = 0
        with conn.transaction():
            rows = conn.execute(
                "SELECT account, name, ciphertext, key_id FROM account_secrets ORDER BY account, name FOR UPDATE"
            ).fetchall()
            for account, name, token, stored_id in rows:
                if stored_id == keys.primary:
                    continue
                fresh = keys.rotate(
                    str(token),
                    str(stored_id),
                    f"the secret {name!r} of account {account!r}",
                    place_of(str(account), str(name)),
                )
                conn.execute(
                    "UPDATE account_secrets SET ciphertext = %s, key_id = %s, updated_at = %s "
                    "WHERE account = %s AND name = %s",
                    (fresh, keys.primary, _now(), account, name),
                )
                done += 1
        return done, len(rows)

    result: tuple[int, int] = _run(db, work)
    return result


def read_secret(db: Database, account: str, name: str, *, config_path: Path, what: str = "password") -> str:
    """The plain text of one account's secret, for a pass (from the pool).

    Raises:
        ConfigError: no such secret, or the key cannot open it (exit 2).
        StateError: the database cannot be used now.
    """
    try:
        with state_pg._pool(db.url, db.password_env).connection() as conn:
            row = conn.execute(
                "SELECT ciphertext, key_id FROM account_secrets WHERE account = %s AND name = %s",
                (account, name),
            ).fetchone()
    except psycopg.Error as exc:
        raise state_pg.unusable(db.url, exc) from exc
    except StateError:
        raise
    except Exception as exc:  # the pool's own PoolTimeout
        raise state_pg.unusable(db.url, exc) from exc
    if row is None:
        raise ConfigError(
            [
                Problem(
                    str(config_path),
                    f"account {account!r}: the {what} secret {name!r} is not in the database; store it "
                    f"with `callsheet accounts secret {account} {name}` (the value on stdin)",
                )
            ]
        )
    keys = Keys.from_env()
    return keys.decrypt(
        str(row[0]), str(row[1]), f"the secret {name!r} of account {account!r}", place_of(account, name)
    )


class SecretStore:
    """One account's secret as a Google token store (connectors/google/auth.TokenStore): read
    and decrypted when a pass starts, a refreshed token encrypted and written back."""

    def __init__(self, db: Database, account: str, name: str, *, config_path: Path) -> None:
        self.db, self.account, self.name, self.config_path = db, account, name, config_path
        self.where = f"the stored secret {name!r} of account {account!r}"

    def load(self) -> str:
        return read_secret(self.db, self.account, self.name, config_path=self.config_path, what="token")

    def save(self, text: str) -> None:
        put_secret(self.db, Keys.from_env(), self.account, self.name, text)


# -- reloading in a running worker ------------------------------------------------------------------


class Reloader:
    """The accounts of a config with `accounts_from = "database"`, loaded again when (and only
    when) `account_revision` moved: one small query per call otherwise. Thread-safe."""

    def __init__(self, config_path: Path, db: Database, loader: Callable[[], tuple[Any, ...]]) -> None:
        self.config_path = config_path
        self.db = db
        self._loader = loader
        self._lock = threading.Lock()
        self.revision = -1

    def load(self) -> tuple[Any, ...]:
        """The accounts now (the revision read first: a change made meanwhile is loaded next time)."""
        with self._lock:
            seen = revision(self.db)
            accounts = self._loader()
            self.revision = seen
            return accounts

    def __call__(self) -> tuple[Any, ...] | None:
        """The accounts when they changed since the last load, else None. A set that fails to
        load (a stored account broken, a roster gone) is logged and the old set kept until the
        next change."""
        with self._lock:
            seen = revision(self.db)
            if seen == self.revision:
                return None
            try:
                accounts = self._loader()
            except ConfigError as err:
                log.error("accounts.reload_failed", count=len(err.problems), problem=str(err.problems[0]))
                self.revision = seen
                return None
            self.revision = seen
            log.info("accounts.reloaded", count=len(accounts))
            return accounts
