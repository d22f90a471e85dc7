"""Load and validate config.toml and clients.toml into a frozen Settings tree.

Every problem in both files is collected and reported at once, each with its file, line and
key, as one ConfigError (exit code 2). Messages name keys and never echo client data. This is
the only module that reads os.environ (for CALLSHEET_CONFIG and password_env).
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)

from worker.durations import parse_duration
from worker.errors import ConfigError, Problem
from worker.model import Client, ClientId

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    timezone: str = "UTC"
    therapist_name: str = ""
    callback_number: str = ""
    office_hours: OfficeHours = OfficeHours()

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
    token_file: Path | None = None
    client_secrets_file: Path | None = None
    api_endpoint: str | None = None
    timeout: Duration = timedelta(seconds=30)
    verify_tls: StrictBool = True
    allow_insecure_http: StrictBool = False  # CalDAV: a password over plain http to a non-loopback host


class SourceSettings(_Account):
    kind: Literal["vdir", "caldav", "google"] = "vdir"
    name: str = "practice"
    path: Path | None = None
    url: str | None = None
    urls: tuple[str, ...] = ()
    calendar_id: str | None = None
    calendar_ids: tuple[str, ...] = ()
    calendar: str | None = None  # CalDAV: the calendar's display name (url is then where to look)

    @property
    def all_urls(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(([self.url] if self.url else []) + list(self.urls)))

    @property
    def all_calendar_ids(self) -> tuple[str, ...]:
        ids = ([self.calendar_id] if self.calendar_id else []) + list(self.calendar_ids)
        return tuple(dict.fromkeys(ids)) or ("primary",)


class ReminderSettings(_Account):
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
    calendar_name: str = "Client calls"
    tasklist: str | None = None
    write: tuple[Literal["event", "task"], ...] = ("event", "task")
    alarm_minutes: StrictInt = Field(default=0, ge=0, le=40320)
    length: Duration = timedelta(minutes=15)


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


class RunSettings(_Strict):
    every: Duration = timedelta(minutes=5)
    alert_after: Duration = timedelta(hours=2)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class _ConfigFile(_Strict):
    roster: Path = Path("clients.toml")
    state_dir: Path = Path("var")
    practice: PracticeSettings = PracticeSettings()
    source: SourceSettings = SourceSettings()
    reminders: ReminderSettings = ReminderSettings()
    rules: RuleSettings = RuleSettings()
    markers: MarkerSettings = MarkerSettings()
    run: RunSettings = RunSettings()


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

    def secret(self, section: _Account, what: str = "password") -> str | None:
        """Read the password named by password_file / password_env (never inline)."""
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


def _problems(err: ValidationError, file: Path, text: str, *, private: bool) -> list[Problem]:
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        keys = [str(k) for k in loc if not isinstance(k, int)]
        # a discriminator suffix such as 'literal[...]' is not a key the user wrote
        keys = [k for k in keys if not k.startswith(("function-", "literal["))]
        index = next((k for k in loc if isinstance(k, int)), None)
        where_key = ".".join(keys)
        if index is not None and keys and keys[0] == "clients":
            where_key = f"clients[{index + 1}]" + ("." + ".".join(keys[1:]) if keys[1:] else "")
        line = _line_of(text, loc)
        where = f"{file}:{line}" if line else str(file)
        kind = e["type"]
        if kind == "extra_forbidden":
            message = f"unknown key {where_key!r}"
        elif kind == "missing":
            message = f"required key {where_key!r} is missing"
        else:
            detail = str(e["msg"]).removeprefix("Value error, ")
            if not private and kind.startswith("literal"):
                detail = f"{detail} (got {e.get('input')!r})"
            message = f"{where_key}: {detail}"
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


def load_roster(path: Path) -> tuple[Client, ...]:
    """Read and validate clients.toml (client data: messages never include values)."""
    data, text = _read_toml(path, "roster")
    try:
        roster = _RosterFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_problems(err, path, text, private=True)) from err
    problems: list[Problem] = []
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
    links: dict[str, set[str]] = {e.id: set() for e in roster.clients}
    for number, entry in enumerate(roster.clients, start=1):
        for other in entry.acquainted_with:
            if other not in ids:
                line = _line_of(text, ("clients", number - 1, "acquainted_with"))
                problems.append(
                    Problem(
                        f"{path}:{line}" if line else str(path),
                        f"clients[{number}].acquainted_with: unknown client id {other!r}",
                    )
                )
            elif other == entry.id:
                problems.append(
                    Problem(str(path), f"clients[{number}].acquainted_with: names the client itself")
                )
            else:
                links[entry.id].add(other)
                links[other].add(entry.id)
    if problems:
        raise ConfigError(problems)
    return tuple(
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
        )
        for e in roster.clients
    )


def load_settings(path: Path) -> Settings:
    """Load config.toml and the roster it names.

    Raises:
        ConfigError: with every problem found in both files.
    """
    path = path.expanduser().absolute()
    data, text = _read_toml(path, "config file")
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
    try:
        clients = load_roster(roster_path)
    except ConfigError as err:
        problems.extend(err.problems)
    if parsed is not None:
        problems.extend(_check_sections(parsed, path, text))
    if problems or parsed is None:
        raise ConfigError(problems)
    source = parsed.source.model_copy(
        update={"path": _resolve(base, parsed.source.path), **_absolute_account(parsed.source, base)}
    )
    reminders = parsed.reminders.model_copy(
        update={
            "events_path": _resolve(base, parsed.reminders.events_path),
            "tasks_path": _resolve(base, parsed.reminders.tasks_path),
            **_absolute_account(parsed.reminders, base),
        }
    )
    reminders = _inherit_account(reminders, source, data.get("reminders", {}))
    state_dir = _resolve(base, parsed.state_dir)
    assert state_dir is not None
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
    )


_ACCOUNT_KEYS = (
    "username",
    "password_file",
    "password_env",
    "token_file",
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
    update = {k: getattr(source, k) for k in _ACCOUNT_KEYS if k not in written}
    return reminders.model_copy(update=update)


def _check_sections(parsed: _ConfigFile, path: Path, text: str) -> list[Problem]:
    """Cross-key rules pydantic cannot express on one field."""
    out: list[Problem] = []

    def at(*loc: str) -> str:
        line = _line_of(text, loc)
        return f"{path}:{line}" if line else str(path)

    src, rem = parsed.source, parsed.reminders
    if src.kind == "vdir" and src.path is None:
        out.append(Problem(at("source", "kind"), "[source] kind = 'vdir' needs path = 'FOLDER'"))
    if src.kind == "caldav" and not src.all_urls:
        out.append(Problem(at("source", "kind"), "[source] kind = 'caldav' needs url or urls"))
    if rem.kind == "vdir" and rem.events_path is None and rem.tasks_path is None:
        out.append(Problem(at("reminders", "kind"), "[reminders] kind = 'vdir' needs events_path"))
    if rem.kind == "caldav" and not (
        rem.events_url or rem.tasks_url or rem.events_calendar or rem.tasks_calendar
    ):
        out.append(Problem(at("reminders", "kind"), "[reminders] kind = 'caldav' needs events_url"))
    for name, section in (("source", src), ("reminders", rem)):
        if section.password_file is not None and section.password_env:
            out.append(
                Problem(at(name, "password_env"), f"[{name}] set password_file or password_env, not both")
            )
    hours = parsed.practice.office_hours
    if hours.end <= hours.start:
        out.append(Problem(at("practice", "office_hours"), "office_hours end must be after start"))
    if not hours.days:
        out.append(Problem(at("practice", "office_hours"), "office_hours needs at least one day"))
    if not rem.write:
        out.append(Problem(at("reminders", "write"), "write must list 'event', 'task' or both"))
    return out
