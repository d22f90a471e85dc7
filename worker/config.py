"""Load and validate config.toml and clients.toml into a frozen Settings tree.

Every problem in both files is collected and reported at once, each with its file, line and
key, as one ConfigError (exit code 2). Messages name keys and never echo client data. This is
the only module that reads os.environ (for CALLSHEET_CONFIG and password_env).

Longer than ~400 lines on purpose: every key's model, its check and its message in words live
together, so the config has one source of truth (docs/design.md "Extensions to the contracts").
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from worker.durations import parse_duration
from worker.errors import ConfigError, Problem
from worker.model import Client, ClientId

if TYPE_CHECKING:
    from worker.accounts_db import SecretStore

# pydantic looks for plugins in the entry points of every installed distribution when it builds
# the first model below; callsheet uses none, and a cron pass would pay for that scan each time.
# A plugin a deployment really wants still loads when PYDANTIC_DISABLE_PLUGINS is set otherwise.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

# The name of the one account of a single-calendar config (its state stays in state_dir itself).
DEFAULT_ACCOUNT = "default"

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# The one spelling of the reminders calendar's and task list's default name (Google, the setup
# script and the docs use it); `[reminders] calendar_name` / `tasklist` override it.
CALENDAR_NAME = "Client calls"


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a duration string such as '15m' or '7d'")
    return parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _clock(value: object) -> time:
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,2}:\d{2}", value):
        raise ValueError("must be a time of day such as '09:00'")
    hours, minutes = (int(x) for x in value.split(":"))
    if hours > 23 or minutes > 59:
        raise ValueError("must be a time of day such as '09:00'")
    return time(hours, minutes)


Clock = Annotated[time, BeforeValidator(_clock)]


class _Strict(BaseModel):
    # Built when first validated, not at import: the base classes (_Account, SourceSettings,
    # ReminderSettings) are never validated themselves, and the nested models are built once,
    # inside _ConfigFile's schema. Defaults below use model_construct for the same reason.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class OfficeHours(_Strict):
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = (
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
    )
    start: Clock = time(9, 0)
    end: Clock = time(17, 0)

    @property
    def weekdays(self) -> frozenset[int]:
        return frozenset(DAYS.index(d) for d in self.days)


class PracticeSettings(_Strict):
    # no default: a practice silently in UTC places every call at the wrong hour
    timezone: str
    therapist_name: str = ""
    callback_number: str = ""
    office_hours: OfficeHours = Field(default_factory=OfficeHours.model_construct)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class _Account(_Strict):
    """Keys accepted in both [source] and [reminders]."""

    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    # a secret stored encrypted in the PostgreSQL state database (worker/accounts_db.py)
    password_secret: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    token_file: Path | None = None
    # Google: the token as a secret in the PostgreSQL state database, refreshed there (encrypted)
    token_secret: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    client_secrets_file: Path | None = None
    api_endpoint: str | None = None
    timeout: Duration = timedelta(seconds=30)
    verify_tls: StrictBool = True
    allow_insecure_http: StrictBool = False  # CalDAV: a password over plain http to a non-loopback host


class SourceSettings(_Account):
    """[source]: the keys any kind may carry. The loader gives one of the per-kind models below."""

    kind: Literal["vdir", "caldav", "google"] = "vdir"
    name: str = "practice"
    path: Path | None = None
    url: str | None = None
    urls: tuple[str, ...] = ()
    calendar_id: str | None = None
    calendar_ids: tuple[str, ...] = ()
    calendar: str | None = None  # CalDAV: the calendar's display name (url is then where to look)
    # a session that vanishes from a series still there (an EXDATE) is a cancellation (Zimbra)
    exdate_is_cancellation: StrictBool = False

    @property
    def all_urls(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(([self.url] if self.url else []) + list(self.urls)))

    @property
    def all_calendar_ids(self) -> tuple[str, ...]:
        ids = ([self.calendar_id] if self.calendar_id else []) + list(self.calendar_ids)
        return tuple(dict.fromkeys(ids)) or ("primary",)


class VdirSource(SourceSettings):
    """[source] kind = "vdir": a folder of .ics files; `path` is required."""

    kind: Literal["vdir"] = "vdir"
    path: Path


class CaldavSource(SourceSettings):
    """[source] kind = "caldav": one or more calendar collection URLs."""

    kind: Literal["caldav"]

    @model_validator(mode="after")
    def _needs_url(self) -> CaldavSource:
        if not self.all_urls:
            raise ValueError("kind = 'caldav' needs url = 'https://…/calendar/' (or urls = [...])")
        return self


class GoogleSource(SourceSettings):
    """[source] kind = "google": calendar ids (default "primary")."""

    kind: Literal["google"]


class ReminderSettings(_Account):
    """[reminders]: the keys any kind may carry. The loader gives one of the per-kind models below."""

    kind: Literal["vdir", "caldav", "google"] = "vdir"
    name: str = "reminders"
    events_path: Path | None = None
    tasks_path: Path | None = None
    events_url: str | None = None
    tasks_url: str | None = None
    url: str | None = None  # CalDAV: where events_calendar / tasks_calendar are looked for
    events_calendar: str | None = None  # CalDAV: display names instead of URLs
    tasks_calendar: str | None = None
    calendar_id: str | None = None
    calendar_name: str = CALENDAR_NAME
    tasklist: str = CALENDAR_NAME
    write: tuple[Literal["event", "task"], ...] = ("event", "task")
    alarm_minutes: StrictInt = Field(default=0, ge=0, le=40320)
    length: Duration = timedelta(minutes=15)


class VdirReminders(ReminderSettings):
    """[reminders] kind = "vdir": folders for events and/or tasks."""

    kind: Literal["vdir"] = "vdir"

    @model_validator(mode="after")
    def _needs_a_folder(self) -> VdirReminders:
        if self.events_path is None and self.tasks_path is None:
            raise ValueError("kind = 'vdir' needs events_path = 'FOLDER' (and/or tasks_path)")
        return self


class CaldavReminders(ReminderSettings):
    """[reminders] kind = "caldav": collections for events and/or tasks."""

    kind: Literal["caldav"]

    @model_validator(mode="after")
    def _needs_a_collection(self) -> CaldavReminders:
        if not (self.events_url or self.tasks_url or self.events_calendar or self.tasks_calendar):
            raise ValueError(
                "kind = 'caldav' needs events_url = 'https://…/calls/' (and/or tasks_url), "
                "or events_calendar = 'Client calls' with url = the server"
            )
        return self


class GoogleReminders(ReminderSettings):
    """[reminders] kind = "google": the calls calendar and task list."""

    kind: Literal["google"]


def _kind_of(value: object) -> str:
    """The tag of a [source] / [reminders] table: its `kind`, "vdir" when unset."""
    if isinstance(value, dict):
        return str(value.get("kind", "vdir"))
    return str(getattr(value, "kind", "vdir"))


KINDS = ("vdir", "caldav", "google")

Source = Annotated[
    Annotated[VdirSource, Tag("vdir")]
    | Annotated[CaldavSource, Tag("caldav")]
    | Annotated[GoogleSource, Tag("google")],
    Discriminator(_kind_of),
]
Reminders = Annotated[
    Annotated[VdirReminders, Tag("vdir")]
    | Annotated[CaldavReminders, Tag("caldav")]
    | Annotated[GoogleReminders, Tag("google")],
    Discriminator(_kind_of),
]


class RuleSettings(_Strict):
    late_after: Duration = timedelta(minutes=15)
    rebook_within: Duration = timedelta(days=7)
    cancel_grace: Duration = timedelta(days=2)
    lapse_after: Duration = timedelta(days=30)
    termination_after: Duration = timedelta(days=14)
    acquainted_gap: Duration = timedelta(minutes=15)
    lookahead: Duration = timedelta(days=14)
    max_age: Duration = timedelta(days=30)
    late_cancel_within: Duration = timedelta(hours=24)
    history: Duration = timedelta(days=400)
    default_length: Duration = timedelta(minutes=50)
    slot: Duration = timedelta(minutes=15)


class MarkerSettings(_Strict):
    no_show: tuple[str, ...] = ("no show", "no-show", "noshow", "DNA")
    cancelled: tuple[str, ...] = ("cancelled", "canceled", "cxl")
    arrived: tuple[str, ...] = ()
    no_show_colors: tuple[str, ...] = ()
    cancelled_colors: tuple[str, ...] = ()


def check_state_url(value: str) -> str:
    """A `state_url` is "" (SQLite) or a postgresql:// URL without an inline password."""
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError('must start with "postgresql://" (or be left out for the SQLite state in state_dir)')
    if parts.password is not None:
        raise ValueError(
            "must not hold a password: use state_password_env, PGPASSWORD or a .pgpass file (PGPASSFILE)"
        )
    return value


class RunSettings(_Strict):
    every: Duration = timedelta(minutes=5)
    alert_after: Duration = timedelta(hours=2)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # several accounts: how many passes run at once (threads; passes wait on the network)
    concurrency: StrictInt = Field(default=4, ge=1, le=64)
    # one account's pass stops writing after this long; the others never wait for it
    deadline: Duration = timedelta(minutes=10)


class _ConfigFile(_Strict):
    roster: Path = Path("clients.toml")
    state_dir: Path = Path("var")
    # the state database in PostgreSQL (worker/state_pg.py) instead of state_dir/state.db
    state_url: str = ""
    state_password_env: str | None = None

    @field_validator("state_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        return check_state_url(value)

    practice: PracticeSettings
    source: Source
    reminders: Reminders
    rules: RuleSettings = Field(default_factory=RuleSettings.model_construct)
    markers: MarkerSettings = Field(default_factory=MarkerSettings.model_construct)
    run: RunSettings = Field(default_factory=RunSettings.model_construct)


class _ClientEntry(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1)
    alias: str | None = None
    match: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    phone: str = ""
    consent_to_call: StrictBool = False
    voicemail_ok: StrictBool = False
    acquainted_with: tuple[str, ...] = ()
    status: Literal["active", "discharged"] = "active"
    notes: str = ""
    members: tuple[str, ...] = ()
    rebook_within: Duration | None = None
    pause_until: date | None = None
    pause_reason: str = ""
    call_after: date | None = None
    no_calls: StrictBool = False
    clinician: str = ""  # a shared practice roster: the account (clinician) who sees the client

    @field_validator("rebook_within")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value


class _RosterFile(_Strict):
    clients: tuple[_ClientEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole validated configuration; paths are absolute."""

    path: Path
    roster_path: Path
    state_dir: Path
    practice: PracticeSettings
    source: SourceSettings
    reminders: ReminderSettings
    rules: RuleSettings
    markers: MarkerSettings
    run: RunSettings
    clients: tuple[Client, ...]
    state_url: str = ""  # "" = SQLite in state_dir
    state_password_env: str | None = None
    account: str = DEFAULT_ACCOUNT
    accounts_from: Literal["config", "database"] = "config"  # where the account came from
    waiting_room: str = ""
    # a shared practice roster: client id -> the account (clinician) named in its `clinician`
    clinicians: dict[ClientId, str] = field(default_factory=dict)

    def secret(self, section: _Account, what: str = "password") -> str | None:
        """Read the password named by password_file / password_env / password_secret (never inline)."""
        if section.password_secret:
            from worker import accounts_db  # psycopg and cryptography: only for those who use them

            return accounts_db.read_secret(
                accounts_db.Database(self.state_url, self.state_password_env),
                self.account,
                section.password_secret,
                config_path=self.path,
                what=what,
            )
        if section.password_file is not None:
            try:
                return section.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    [Problem(str(section.password_file), f"cannot read the {what} file: {exc.strerror}")]
                ) from exc
        if section.password_env:
            value = os.environ.get(section.password_env)
            if value is None:
                raise ConfigError(
                    [Problem(f"{self.path}", f"environment variable {section.password_env} is not set")]
                )
            return value
        return None

    def token_store(self, section: _Account) -> SecretStore | None:
        """The stored secret holding a Google token (`token_secret`), or None (`token_file`)."""
        if not section.token_secret:
            return None
        from worker import accounts_db

        return accounts_db.SecretStore(
            accounts_db.Database(self.state_url, self.state_password_env),
            self.account,
            section.token_secret,
            config_path=self.path,
        )


def default_config_path() -> Path:
    """--config, else $CALLSHEET_CONFIG, else ./callsheet.toml, else the platform config dir."""
    env = os.environ.get("CALLSHEET_CONFIG")
    if env:
        return Path(env)
    local = Path("callsheet.toml")
    if local.exists():
        return local
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "callsheet" / "config.toml"


def initials(name: str) -> str:
    """'Jordan Smith' -> 'J.S.'"""
    parts = [p for p in re.split(r"[\s\-]+", name) if p]
    return "".join(f"{p[0].upper()}." for p in parts) or "?"


def _line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line number of a dotted key in a TOML text (for messages only)."""
    keys = [str(k) for k in loc if not isinstance(k, int)]
    if not keys:
        return None
    index = next((k for k in loc if isinstance(k, int)), None)
    table, key = keys[:-1], keys[-1]
    current: list[str] = []
    seen: dict[str, int] = {}
    header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?")
    assign = re.compile(r"^\s*\"?([A-Za-z0-9_\-]+)\"?\s*=")
    best: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        m = header.match(line)
        if m:
            current = [p.strip().strip('"') for p in m.group(1).split(".")]
            name = ".".join(current)
            seen[name] = seen.get(name, -1) + 1
            if current == keys and best is None:
                best = number
            continue
        m = assign.match(line)
        if not m:
            continue
        dotted = ".".join(current)
        if index is not None and seen.get(dotted, 0) != index:
            continue
        if m.group(1) == key and current == table:
            return number
        if current == table[: len(current)] and m.group(1) in keys[len(current) :]:
            best = best or number
    return best


_MISSING_TEXT = {
    "practice": "[practice] is missing: it needs at least timezone = 'Region/City'",
    "practice.timezone": "[practice] timezone is missing: set the practice's IANA zone, e.g. 'America/New_York'",
    "source": "[source] is missing: say where the appointments are (kind and path, url or calendar_id)",
    "source.path": "[source] kind = 'vdir' needs path = 'FOLDER'",
    "reminders": "[reminders] is missing: say where reminders go (kind and events_path, events_url or calendar_id)",
}

_TYPE_TEXT = {
    "tuple_type": 'must be a list, e.g. ["a", "b"]',
    "list_type": 'must be a list, e.g. ["a", "b"]',
    "string_type": "must be text in quotes",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "model_type": "must be a table ([section] or { key = value })",
    "dict_type": "must be a table ([section] or { key = value })",
    "path_type": "must be a file or folder path in quotes",
    "string_too_short": "must not be empty",
}


def _model_at(keys: list[str], root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that holds the last key of `keys` (for did-you-mean)."""
    model: type[BaseModel] | None = root
    for key in keys[:-1]:
        if model is None:
            return None
        field = model.model_fields.get(key)
        if field is None:
            return None
        hint = field.annotation
        model = hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None
        if model is None and key in ("source", "reminders"):
            model = SourceSettings if key == "source" else ReminderSettings
        if model is None and key == "clients":
            model = _ClientEntry
    return model


def _did_you_mean(keys: list[str], root: type[BaseModel]) -> str:
    import difflib  # only for a mistyped key: a pass with a good config never needs it

    model = _model_at(keys, root)
    if model is None or not keys:
        return ""
    close = difflib.get_close_matches(keys[-1], list(model.model_fields), n=1, cutoff=0.7)
    return f"; did you mean {close[0]!r}?" if close else ""


def _detail(e: Any, *, private: bool) -> str:
    """An error in words a helper understands (no pydantic jargon)."""
    kind, ctx = e["type"], e.get("ctx") or {}
    if kind in _TYPE_TEXT:
        return _TYPE_TEXT[kind]
    if kind == "string_pattern_mismatch":
        return "may use only letters, digits, '_', '.' and '-'"
    if kind == "literal_error":
        text = f"must be one of {ctx.get('expected', '')}"
        return text if private else f"{text} (got {e.get('input')!r})"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": "at least", "greater_than": "more than"}.get(kind, "at most")
        limit = next(iter(ctx.values()), "")
        return f"must be {bound} {limit}"
    if kind == "union_tag_invalid":
        got = "" if private else f" (got {ctx.get('tag')!r})"
        return "must be one of " + ", ".join(repr(k) for k in KINDS) + got
    return str(e["msg"]).removeprefix("Value error, ")


def _problems(err: ValidationError, file: Path, text: str, *, private: bool) -> list[Problem]:
    out = []
    root: type[BaseModel] = _RosterFile if private else _ConfigFile
    for e in err.errors():
        loc = tuple(e["loc"])
        keys = [str(k) for k in loc if not isinstance(k, int)]
        # a discriminator suffix such as 'literal[...]' or a kind's tag is not a key the user wrote
        keys = [k for k in keys if not k.startswith(("function-", "literal["))]
        keys = [
            k for i, k in enumerate(keys) if not (i and k in KINDS and keys[i - 1] in ("source", "reminders"))
        ]
        index = next((k for k in loc if isinstance(k, int)), None)
        where_key = ".".join(keys)
        if index is not None and keys and keys[0] == "clients":
            where_key = f"clients[{index + 1}]" + ("." + ".".join(keys[1:]) if keys[1:] else "")
        line = _line_of(text, tuple(keys) if index is None else loc)
        where = f"{file}:{line}" if line else str(file)
        kind = e["type"]
        if kind == "union_tag_invalid" or (keys and keys[-1] in ("source", "reminders")):
            # about a whole [source] / [reminders]: point at its `kind`
            line = _line_of(text, (*keys, "kind")) or _line_of(text, tuple(keys))
            where = f"{file}:{line}" if line else str(file)
            where_key += ".kind" if kind == "union_tag_invalid" else ""
        elif kind == "missing" and index is None and len(keys) > 1:
            line = _line_of(text, (*keys[:-1], "kind")) or _line_of(text, tuple(keys[:-1]))
            where = f"{file}:{line}" if line else str(file)
        if kind == "extra_forbidden":
            message = f"unknown key {where_key!r}{_did_you_mean(keys, root)}"
        elif kind == "missing":
            message = _MISSING_TEXT.get(where_key, f"required key {where_key!r} is missing")
        else:
            detail = _detail(e, private=private)
            message = (
                f"[{where_key}] {detail}"
                if where_key in ("source", "reminders")
                else f"{where_key}: {detail}"
            )
        out.append(Problem(where, message))
    return out


def _read_toml(path: Path, what: str) -> tuple[dict[str, Any], str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError([Problem(str(path), f"{what} not found")]) from exc
    except OSError as exc:
        raise ConfigError([Problem(str(path), f"cannot read {what}: {exc.strerror}")]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), f"{what} is not UTF-8 text")]) from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's error has no lineno attribute; its message ends "(at line N, column M)"
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
        where = f"{path}:{line}" if line else str(path)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", getattr(exc, "msg", str(exc)))
        if found:
            reason += f" (column {found.group(2)})"
        raise ConfigError([Problem(where, f"TOML syntax error: {reason}")]) from exc


def _resolve(base: Path, value: Path | None) -> Path | None:
    if value is None:
        return None
    value = value.expanduser()
    return value if value.is_absolute() else (base / value)


def _absolute_account(model: _Account, base: Path) -> dict[str, Any]:
    return {
        "password_file": _resolve(base, model.password_file),
        "token_file": _resolve(base, model.token_file),
        "client_secrets_file": _resolve(base, model.client_secrets_file),
    }


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _control_characters(data: object, path: Path, text: str) -> list[Problem]:
    """Refuse control characters (NUL, ESC, …) anywhere in the roster: they would reach an .ics or a terminal."""
    out: list[Problem] = []

    def walk(value: object, loc: tuple[int | str, ...]) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*loc, str(key)))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, (*loc, i) if loc == ("clients",) else loc)
        elif isinstance(value, str) and _CONTROL.search(value):
            char = _CONTROL.search(value)
            assert char is not None
            code = f"U+{ord(char.group()):04X}"
            index = next((k for k in loc if isinstance(k, int)), None)
            keys = [str(k) for k in loc if not isinstance(k, int)]
            where_key = ".".join(keys)
            if index is not None and keys and keys[0] == "clients":
                where_key = f"clients[{index + 1}]" + ("." + ".".join(keys[1:]) if keys[1:] else "")
            line = _line_of(text, loc)
            out.append(
                Problem(
                    f"{path}:{line}" if line else str(path),
                    f"{where_key}: contains a control character ({code}); remove it",
                )
            )

    walk(data, ())
    return out


def load_roster(path: Path, tz: tzinfo = UTC) -> tuple[Client, ...]:
    """Read and validate clients.toml (client data: messages never include values).

    `pause_until` and `call_after` dates mean local midnight in `tz` (the practice's zone).
    """
    return _load_roster(path, tz)[0]


def _load_roster(
    path: Path, tz: tzinfo = UTC, accounts: tuple[str, ...] | None = None
) -> tuple[tuple[Client, ...], dict[ClientId, str]]:
    """The roster's clients and each one's `clinician` (checked against `accounts` when given)."""
    data, text = _read_toml(path, "roster")
    controls = _control_characters(data, path, text)
    try:
        roster = _RosterFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(controls + _problems(err, path, text, private=True)) from err
    problems: list[Problem] = list(controls)
    ids: dict[str, int] = {}
    for number, entry in enumerate(roster.clients, start=1):
        if entry.id in ids:
            line = _line_of(text, ("clients", number - 1, "id"))
            problems.append(
                Problem(
                    f"{path}:{line}" if line else str(path),
                    f"clients[{number}].id: id {entry.id!r} is used twice "
                    f"(first by clients[{ids[entry.id]}])",
                )
            )
        else:
            ids[entry.id] = number
    names: dict[str, int] = {}
    for number, entry in enumerate(roster.clients, start=1):
        # the full name matches event titles: two clients with one name make every such event ambiguous
        same = " ".join(entry.name.split()).casefold()
        if same in names:
            line = _line_of(text, ("clients", number - 1, "name"))
            problems.append(
                Problem(
                    f"{path}:{line}" if line else str(path),
                    f"clients[{number}].name: the same full name as clients[{names[same]}]; events titled "
                    "with it could not be told apart: write the names differently (e.g. with a middle initial)",
                )
            )
        else:
            names[same] = number
    links: dict[str, set[str]] = {e.id: set() for e in roster.clients}
    for number, entry in enumerate(roster.clients, start=1):
        # the line is looked up only for a problem: _line_of reads the whole text, once per client
        # it made loading a 200-client roster cost half a second on every pass
        line = _line_of(text, ("clients", number - 1, "acquainted_with")) if entry.acquainted_with else None
        where = f"{path}:{line}" if line else str(path)
        for position, other in enumerate(entry.acquainted_with, start=1):
            if other not in ids:
                # never echo the value: it may be a person's name written instead of an id
                problems.append(
                    Problem(
                        where,
                        f"clients[{number}].acquainted_with[{position}]: not a client id in the roster "
                        '(list ids such as "c014", not names)',
                    )
                )
            elif other == entry.id:
                problems.append(Problem(where, f"clients[{number}].acquainted_with: names the client itself"))
            else:
                links[entry.id].add(other)
                links[other].add(entry.id)
    problems += _group_problems(roster.clients, ids, path, text)
    for number, entry in enumerate(roster.clients, start=1):
        if accounts is not None and entry.clinician and entry.clinician not in accounts:
            line = _line_of(text, ("clients", number - 1, "clinician"))
            known = ", ".join(repr(a) for a in accounts) or "none: the config has one calendar"
            problems.append(
                Problem(
                    f"{path}:{line}" if line else str(path),
                    f"clients[{number}].clinician: not an account of the config (accounts: {known})",
                )
            )
    if problems:
        raise ConfigError(problems)

    def midnight(day: date | None) -> datetime | None:
        return None if day is None else datetime.combine(day, time(0, 0), tz)

    clients = tuple(
        Client(
            id=ClientId(e.id),
            name=e.name,
            alias=e.alias or initials(e.name),
            match=e.match,
            emails=tuple(x.lower() for x in e.emails),
            phone=e.phone,
            consent_to_call=e.consent_to_call,
            voicemail_ok=e.voicemail_ok,
            acquainted_with=frozenset(ClientId(x) for x in links[e.id]),
            status=e.status,
            members=tuple(ClientId(m) for m in e.members),
            rebook_within=e.rebook_within,
            pause_until=midnight(e.pause_until),
            pause_reason=e.pause_reason,
            call_after=midnight(e.call_after),
            no_calls=e.no_calls,
        )
        for e in roster.clients
    )
    return clients, {ClientId(e.id): e.clinician for e in roster.clients if e.clinician}


def _group_problems(
    entries: tuple[_ClientEntry, ...], ids: dict[str, int], path: Path, text: str
) -> list[Problem]:
    """A group entry names at least two known individual clients; a pause reason needs a pause."""
    out: list[Problem] = []
    groups = {e.id for e in entries if e.members}
    for number, entry in enumerate(entries, start=1):

        def at(key: str, number: int = number) -> str:
            line = _line_of(text, ("clients", number - 1, key))
            return f"{path}:{line}" if line else str(path)

        if entry.pause_reason and entry.pause_until is None:
            out.append(Problem(at("pause_reason"), f"clients[{number}].pause_reason: needs pause_until"))
        if not entry.members:
            continue
        where = at("members")
        if len(set(entry.members)) < 2:
            out.append(Problem(where, f"clients[{number}].members: a group needs at least two client ids"))
        for member in entry.members:
            if member == entry.id:
                out.append(Problem(where, f"clients[{number}].members: names the group itself"))
            elif member not in ids:
                out.append(Problem(where, f"clients[{number}].members: unknown client id {member!r}"))
            elif member in groups:
                out.append(Problem(where, f"clients[{number}].members: {member!r} is a group itself"))
    return out


def load_settings(
    path: Path, *, roster: bool = True, roster_optional: bool = False, account: str | None = None
) -> Settings:
    """Load config.toml and the roster it names (`roster=False`: the config alone, no clients;
    `roster_optional`: a missing roster is empty). A config of several accounts needs `account`.

    Raises:
        ConfigError: with every problem found in both files.
    """
    return pick_account(load_accounts(path, roster=roster, roster_optional=roster_optional), account)


def pick_account(accounts: tuple[Settings, ...], name: str | None) -> Settings:
    """The account called `name`, or the only one.

    Raises:
        ConfigError: no such account, or several and no name.
    """
    names = ", ".join(a.account for a in accounts)
    if name is None:
        if len(accounts) == 1:
            return accounts[0]
        raise ConfigError(
            [
                Problem(
                    str(accounts[0].path),
                    f"the config holds several accounts ({names}): name one with --account",
                )
            ]
        )
    for settings in accounts:
        if settings.account == name:
            return settings
    raise ConfigError([Problem(str(accounts[0].path), f"no account named {name!r} (accounts: {names})")])


def _read_config(path: Path) -> tuple[dict[str, Any], str]:
    try:
        return _read_toml(path, "config file")
    except ConfigError as err:
        if not path.exists() and err.problems:
            first = err.problems[0]
            err.problems[0] = Problem(
                first.where,
                f"{first.message} (callsheet reads --config, else $CALLSHEET_CONFIG, else ./callsheet.toml, "
                "else this file; copy config.example.toml to one of them)",
            )
        raise


def load_accounts(
    path: Path,
    *,
    roster: bool = True,
    roster_optional: bool = False,
    stored: Sequence[tuple[str, str]] | None = None,
    allow_empty: bool = False,
) -> tuple[Settings, ...]:
    """Every account of the config: one for the single-calendar form (named "default", its state
    in state_dir itself), else one per `[[accounts]]` table or `accounts_dir` file, in order, or
    (`accounts_from = "database"`) one per account stored in the state database, by name.
    `stored` (name, TOML text) pairs stand in for the database's (to check a change before
    storing it); `allow_empty`: a database holding no account yet is no error (a worker waits).

    Raises:
        ConfigError: with every problem found in the config, the account files and the rosters.
        StateError: the database of `accounts_from = "database"` cannot be used now.
    """
    path = path.expanduser().absolute()
    data, text = _read_config(path)
    if "accounts" in data or "accounts_dir" in data or "accounts_from" in data:
        return _load_group(
            path,
            data,
            text,
            roster=roster,
            roster_optional=roster_optional,
            stored=stored,
            allow_empty=allow_empty,
        )
    base = path.parent
    problems: list[Problem] = []
    try:
        parsed = _ConfigFile.model_validate(data)
    except ValidationError as err:
        problems.extend(_problems(err, path, text, private=False))
        parsed = None
    roster_path = _resolve(base, Path(str(data.get("roster", "clients.toml"))))
    assert roster_path is not None
    clients: tuple[Client, ...] = ()
    clinicians: dict[ClientId, str] = {}
    try:
        if roster and not (roster_optional and not roster_path.exists()):
            clients, clinicians = _load_roster(roster_path, parsed.practice.tz if parsed is not None else UTC)
    except ConfigError as err:
        problems.extend(err.problems)
    if parsed is not None:
        problems.extend(_check_sections(parsed, path, text))
    if problems or parsed is None:
        raise ConfigError(problems)
    state_dir = _resolve(base, parsed.state_dir)
    assert state_dir is not None
    return (_build(path, parsed, data, roster_path, state_dir, clients, clinicians),)


def _build(
    path: Path,
    parsed: _ConfigFile,
    data: dict[str, Any],
    roster_path: Path,
    state_dir: Path,
    clients: tuple[Client, ...],
    clinicians: dict[ClientId, str],
    *,
    account: str = DEFAULT_ACCOUNT,
    waiting_room: str = "",
    accounts_from: Literal["config", "database"] = "config",
) -> Settings:
    base = path.parent
    source: SourceSettings = parsed.source.model_copy(
        update={"path": _resolve(base, parsed.source.path), **_absolute_account(parsed.source, base)}
    )
    reminders: ReminderSettings = parsed.reminders.model_copy(
        update={
            "events_path": _resolve(base, parsed.reminders.events_path),
            "tasks_path": _resolve(base, parsed.reminders.tasks_path),
            **_absolute_account(parsed.reminders, base),
        }
    )
    reminders = _inherit_account(reminders, source, data.get("reminders", {}))
    return Settings(
        path=path,
        roster_path=roster_path,
        state_dir=state_dir,
        practice=parsed.practice,
        source=source,
        reminders=reminders,
        rules=parsed.rules,
        markers=parsed.markers,
        run=parsed.run,
        clients=clients,
        state_url=parsed.state_url,
        state_password_env=parsed.state_password_env,
        account=account,
        waiting_room=waiting_room,
        clinicians=clinicians,
        accounts_from=accounts_from,
    )


# -- several accounts ---------------------------------------------------------------------------

_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_ACCOUNT_HEADER = re.compile(r"^\s*\[\[\s*accounts\s*\]\]")
_TABLE_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?")
_ACCOUNT_TABLE = re.compile(r"^(\s*\[\[?\s*)accounts\.")


@dataclass(frozen=True, slots=True)
class _Entry:
    """One account's own table, and where its keys' lines are looked up (first found wins)."""

    data: dict[str, Any]
    views: tuple[tuple[Path, str], ...]


def _views(text: str) -> tuple[list[str], str]:
    """Each `[[accounts]]` block of `text` as a text of its own (its tables' `accounts.` prefix
    taken off, every other line blank, so line numbers stay), and the shared rest likewise."""
    lines = text.splitlines()
    owner: list[int] = []  # -1: shared; n: account block n
    current = -1
    count = 0
    for line in lines:
        if _ACCOUNT_HEADER.match(line):
            current, count = count, count + 1
        else:
            header = _TABLE_HEADER.match(line)
            if header and not header.group(1).strip().startswith("accounts."):
                current = -1
        owner.append(current)
    # a block is one run of lines (from its header to the next header that is not its own):
    # its view is blank up to it and ends with it, so building all views stays linear
    spans: dict[int, list[int]] = {}
    for index, whose in enumerate(owner):
        if whose >= 0:
            spans.setdefault(whose, [index, index])[1] = index
    blocks = []
    for n in range(count):
        first, last = spans[n]
        own = [
            "" if _ACCOUNT_HEADER.match(line) else _ACCOUNT_TABLE.sub(r"\1", line)
            for line in lines[first : last + 1]
        ]
        blocks.append("\n" * first + "\n".join(own))
    shared = "\n".join(line if whose == -1 else "" for line, whose in zip(lines, owner, strict=True))
    return blocks, shared


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, table by table (an account overrides single shared keys)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _entries(
    path: Path, data: dict[str, Any], text: str, stored: Sequence[tuple[str, str]] | None = None
) -> tuple[list[_Entry], list[Problem]]:
    problems: list[Problem] = []
    blocks, shared = _views(text)

    def at(key: str) -> str:
        line = _line_of(text, (key,))
        return f"{path}:{line}" if line else str(path)

    entries: list[_Entry] = []
    origin = data.get("accounts_from", "config")
    if origin not in ("config", "database"):
        problems.append(
            Problem(
                at("accounts_from"),
                'accounts_from: must be "config" ([[accounts]] or accounts_dir) or "database"',
            )
        )
        return entries, problems
    if origin == "database":
        return _stored_entries(path, data, shared, at, stored)
    inline = data.get("accounts", [])
    if not isinstance(inline, list) or not all(isinstance(t, dict) for t in inline):
        problems.append(Problem(at("accounts"), "accounts: must be [[accounts]] tables"))
        inline = []
    for n, table in enumerate(inline):
        view = blocks[n] if n < len(blocks) else ""
        entries.append(_Entry(table, ((path, view), (path, shared))))
    folder = data.get("accounts_dir")
    if folder is not None:
        if not isinstance(folder, str):
            problems.append(Problem(at("accounts_dir"), "accounts_dir: must be a folder path in quotes"))
            return entries, problems
        where = _resolve(path.parent, Path(folder))
        assert where is not None
        files = sorted(where.glob("*.toml")) if where.is_dir() else []
        if not files:
            problems.append(
                Problem(at("accounts_dir"), f"accounts_dir: {where} holds no account files (NAME.toml)")
            )
        for file in files:
            try:
                own, own_text = _read_toml(file, "account file")
            except ConfigError as err:
                problems.extend(err.problems)
                continue
            entries.append(_Entry(own, ((file, own_text), (path, shared))))
    return entries, problems


def _stored_entries(
    path: Path,
    data: dict[str, Any],
    shared: str,
    at: Callable[[str], str],
    stored: Sequence[tuple[str, str]] | None,
) -> tuple[list[_Entry], list[Problem]]:
    """`accounts_from = "database"`: one entry per account row (or per `stored` pair)."""
    problems = [
        Problem(
            at(key),
            f"{key}: accounts_from = 'database' reads every account from the database; "
            f"remove {key} (or leave accounts_from out)",
        )
        for key in ("accounts", "accounts_dir")
        if key in data
    ]
    url = data.get("state_url", "")
    password_env = data.get("state_password_env")
    try:
        check_state_url(url if isinstance(url, str) else "")
    except ValueError:
        return [], problems  # the shared keys' validation names the bad state_url
    if not url:
        problems.append(
            Problem(
                at("accounts_from"),
                "accounts_from = 'database' needs the PostgreSQL state (state_url = \"postgresql://…\"): "
                "the SQLite state is file-based; keep accounts in [[accounts]] or accounts_dir",
            )
        )
    if problems:
        return [], problems
    if stored is None:
        from worker import accounts_db  # psycopg: only for those who use it

        _rev, rows = accounts_db.stored_accounts(
            accounts_db.Database(url, password_env if isinstance(password_env, str) else None)
        )
        stored = [(row.name, row.text) for row in rows]
    entries: list[_Entry] = []
    for name, own_text in stored:
        where = Path(f"database:{name}")
        try:
            own = tomllib.loads(own_text)
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"\(at line (\d+)", str(exc))
            line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
            problems.append(
                Problem(f"{where}:{line}" if line else str(where), f"account {name!r}: TOML syntax error")
            )
            continue
        if own.get("name", name) != name:
            problems.append(
                Problem(str(where), f"account {name!r}: its text says another name; the names must agree")
            )
            continue
        wrong = [key for key in ("state_url", "state_password_env", "accounts_from") if key in own]
        if wrong:
            line = _line_of(own_text, (wrong[0],))
            problems.append(
                Problem(
                    f"{where}:{line}" if line else str(where),
                    f"account {name!r}: {wrong[0]}: belongs in the main config (every account of the "
                    "database shares its state database)",
                )
            )
            continue
        entries.append(_Entry({"name": name, **own}, ((where, own_text), (path, shared))))
    return entries, problems


def _entry_problems(err: ValidationError, entry: _Entry, label: str) -> list[Problem]:
    """The problems of one account, each at the first file that has the key's line."""
    found = [_problems(err, file, text, private=False) for file, text in entry.views]
    out = []
    for options in zip(*found, strict=True):
        chosen = next(
            (p for p, (file, _) in zip(options, entry.views, strict=True) if p.where != str(file)), options[0]
        )
        out.append(Problem(chosen.where, f"{label}: {chosen.message}"))
    return out


def _load_group(
    path: Path,
    data: dict[str, Any],
    text: str,
    *,
    roster: bool,
    roster_optional: bool,
    stored: Sequence[tuple[str, str]] | None = None,
    allow_empty: bool = False,
) -> tuple[Settings, ...]:
    base = path.parent
    entries, problems = _entries(path, data, text, stored)
    origin: Literal["config", "database"] = (
        "database" if data.get("accounts_from") == "database" else "config"
    )
    shared = {k: v for k, v in data.items() if k not in ("accounts", "accounts_dir", "accounts_from")}
    for key in ("source", "reminders"):
        if key in shared:
            line = _line_of(text, (key,))
            problems.append(
                Problem(
                    f"{path}:{line}" if line else str(path),
                    f"[{key}] belongs in each account: with [[accounts]] or accounts_dir every account "
                    f"has its own [{key}] ([accounts.{key}] or [{key}] in its file)",
                )
            )
    names: list[str] = []
    parsed_all: list[tuple[str, str, _ConfigFile, _Entry]] = []
    for n, entry in enumerate(entries, start=1):
        name = entry.data.get("name")
        file, own_text = entry.views[0]

        def name_at(file: Path = file, own_text: str = own_text) -> str:
            line = _line_of(own_text, ("name",))  # only for a message: a scan of the text
            return f"{file}:{line}" if line else str(file)

        if not isinstance(name, str) or not _ACCOUNT_NAME.fullmatch(name):
            problems.append(
                Problem(
                    name_at(),
                    f"accounts[{n}].name: required, a short name of letters, digits, '_', '.' and '-' "
                    "(it names the account's state folder)",
                )
            )
            continue
        if name in names:
            problems.append(Problem(name_at(), f"accounts[{n}].name: {name!r} names two accounts"))
            continue
        names.append(name)
        room = entry.data.get("waiting_room", "")
        if not isinstance(room, str):
            line = _line_of(own_text, ("waiting_room",))
            problems.append(
                Problem(
                    f"{file}:{line}" if line else str(file), f"account {name!r}: waiting_room: must be text"
                )
            )
            room = ""
        own = {k: v for k, v in entry.data.items() if k not in ("name", "waiting_room")}
        try:
            parsed = _ConfigFile.model_validate(_merge(shared, own))
        except ValidationError as err:
            problems.extend(_entry_problems(err, entry, f"account {name!r}"))
            continue
        problems.extend(
            Problem(p.where, f"account {name!r}: {p.message}")
            for p in _check_sections(parsed, file, own_text)
        )
        parsed_all.append((name, room, parsed, entry))
    rosters: dict[Path, tuple[tuple[Client, ...], dict[ClientId, str]]] = {}
    out: list[Settings] = []
    state_dirs: dict[Path, str] = {}
    for name, room, parsed, entry in parsed_all:
        roster_path = _resolve(base, parsed.roster)
        assert roster_path is not None
        if roster and roster_path not in rosters and not (roster_optional and not roster_path.exists()):
            try:
                rosters[roster_path] = _load_roster(roster_path, parsed.practice.tz, tuple(names))
            except ConfigError as err:
                problems.extend(err.problems)
                rosters[roster_path] = ((), {})
        clients, clinicians = rosters.get(roster_path, ((), {}))
        own_dir = entry.data.get("state_dir")
        state_dir = _resolve(base, parsed.state_dir if own_dir is not None else parsed.state_dir / name)
        assert state_dir is not None
        if state_dir in state_dirs:
            problems.append(
                Problem(
                    str(entry.views[0][0]),
                    f"account {name!r}: shares its state folder with {state_dirs[state_dir]!r}",
                )
            )
        state_dirs[state_dir] = name
        merged = _merge(shared, {k: v for k, v in entry.data.items() if k not in ("name", "waiting_room")})
        out.append(
            _build(
                path,
                parsed,
                merged,
                roster_path,
                state_dir,
                clients,
                clinicians,
                account=name,
                waiting_room=room,
                accounts_from=origin,
            )
        )
    if not entries and not problems and not allow_empty:
        if origin == "database":
            problems.append(
                Problem(
                    str(path),
                    "accounts_from = 'database': the database holds no account yet; store one with "
                    "`callsheet accounts put NAME --file NAME.toml`",
                )
            )
        else:
            problems.append(Problem(str(path), "accounts: the config names no account"))
    if problems:
        raise ConfigError(problems)
    return tuple(out)


_PASSWORD_KEYS = ("password_file", "password_env", "password_secret")
_TOKEN_KEYS = ("token_file", "token_secret")
_ACCOUNT_KEYS = (
    "username",
    "password_file",
    "password_env",
    "password_secret",
    "token_file",
    "token_secret",
    "client_secrets_file",
    "api_endpoint",
    "timeout",
    "verify_tls",
    "allow_insecure_http",
)


def _inherit_account(
    reminders: ReminderSettings, source: SourceSettings, written: object
) -> ReminderSettings:
    """A key absent from [reminders] falls back to [source] when both use the same kind."""
    if reminders.kind != source.kind or not isinstance(written, dict):
        return reminders
    skip = set(written)
    for group in (_PASSWORD_KEYS, _TOKEN_KEYS):
        if skip & set(group):  # [reminders] names its own password (token): none of [source]'s
            skip |= set(group)
    update = {k: getattr(source, k) for k in _ACCOUNT_KEYS if k not in skip}
    return reminders.model_copy(update=update)


def _check_sections(parsed: _ConfigFile, path: Path, text: str) -> list[Problem]:
    """Cross-key rules pydantic cannot express on one field."""
    out: list[Problem] = []

    def at(*loc: str) -> str:
        # the key's line, else its table's header line
        line = _line_of(text, loc) or _line_of(text, loc[:-1])
        return f"{path}:{line}" if line else str(path)

    # what each kind needs (a vdir path, a CalDAV url) is checked by the per-kind models
    src, rem = parsed.source, parsed.reminders
    for name, section in (("source", src), ("reminders", rem)):
        given = [
            key
            for key in ("password_file", "password_env", "password_secret")
            if getattr(section, key) not in (None, "")
        ]
        if len(given) > 1:
            out.append(
                Problem(
                    at(name, given[-1]),
                    f"[{name}] set one of password_file, password_env and password_secret, not "
                    + " and ".join(given),
                )
            )
        if section.token_file is not None and section.token_secret:
            out.append(
                Problem(at(name, "token_secret"), f"[{name}] set token_file or token_secret, not both")
            )
        if section.token_secret and not parsed.state_url:
            out.append(
                Problem(
                    at(name, "token_secret"),
                    f"[{name}] token_secret: secrets are stored in the PostgreSQL state database "
                    '(state_url = "postgresql://…"); with the SQLite state use token_file',
                )
            )
        if section.password_secret and not parsed.state_url:
            out.append(
                Problem(
                    at(name, "password_secret"),
                    f"[{name}] password_secret: secrets are stored in the PostgreSQL state database "
                    '(state_url = "postgresql://…"); with the SQLite state use password_file or password_env',
                )
            )
    hours = parsed.practice.office_hours
    if hours.end <= hours.start:
        out.append(Problem(at("practice", "office_hours"), "office_hours end must be after start"))
    if not hours.days:
        out.append(Problem(at("practice", "office_hours"), "office_hours needs at least one day"))
    if not rem.write:
        out.append(Problem(at("reminders", "write"), "write must list 'event', 'task' or both"))
    out.extend(_check_values(parsed, at))
    return out


def _check_values(parsed: _ConfigFile, at: Any) -> list[Problem]:
    """Values that parse but cannot work: zero lengths, a call longer than the office day, …"""
    out: list[Problem] = []
    rules, run, rem = parsed.rules, parsed.run, parsed.reminders
    for key in ("slot", "default_length"):
        if getattr(rules, key) <= timedelta(0):
            out.append(Problem(at("rules", key), f"rules.{key}: must be longer than 0, e.g. '15m'"))
    if rules.slot > timedelta(0) and timedelta(days=1) % rules.slot:
        out.append(
            Problem(at("rules", "slot"), "rules.slot: must divide a day evenly, e.g. '5m', '15m', '30m'")
        )
    if rem.length <= timedelta(0):
        out.append(Problem(at("reminders", "length"), "reminders.length: must be longer than 0, e.g. '15m'"))
    hours = parsed.practice.office_hours
    day = datetime.combine(date.min, hours.end) - datetime.combine(date.min, hours.start)
    if hours.end > hours.start and rem.length > day:
        out.append(
            Problem(
                at("reminders", "length"),
                f"reminders.length: longer than the office day ({_spell(day)}); a call must fit in office hours",
            )
        )
    if run.every < timedelta(seconds=1):
        out.append(Problem(at("run", "every"), "run.every: must be at least 1s, e.g. '5m'"))
    elif run.alert_after < run.every:
        out.append(
            Problem(
                at("run", "alert_after"),
                f"run.alert_after: shorter than run.every ({_spell(run.every)}); it must span at least one pass",
            )
        )
    return out


def _spell(value: timedelta) -> str:
    """'8h', '1h30m', '45s': a duration as config.toml writes it."""
    seconds, out = int(value.total_seconds()), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        out += f"{n}{unit}" if n else ""
    return out or "0s"


def state_database(path: Path) -> tuple[str, str | None, str]:
    """The main config's `state_url`, `state_password_env` and `accounts_from`, read without
    loading any account (`callsheet accounts`, `state init`).

    Raises:
        ConfigError: the config cannot be read, state_url is malformed, or (for callers that need
        it) missing: the caller decides; an empty state_url is returned as "".
    """
    path = path.expanduser().absolute()
    data, text = _read_config(path)
    url = data.get("state_url", "")
    env = data.get("state_password_env")
    origin = data.get("accounts_from", "config")

    def at(key: str) -> str:
        line = _line_of(text, (key,))
        return f"{path}:{line}" if line else str(path)

    problems = []
    if not isinstance(url, str):
        problems.append(Problem(at("state_url"), "state_url: must be text in quotes"))
    else:
        try:
            check_state_url(url)
        except ValueError as exc:
            problems.append(Problem(at("state_url"), f"state_url: {exc}"))
    if env is not None and not isinstance(env, str):
        problems.append(Problem(at("state_password_env"), "state_password_env: must be text in quotes"))
    if origin not in ("config", "database"):
        problems.append(Problem(at("accounts_from"), 'accounts_from: must be "config" or "database"'))
    if problems:
        raise ConfigError(problems)
    return str(url), (env if isinstance(env, str) else None), str(origin)
