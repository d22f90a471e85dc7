"""Test helpers: build a small practice (config, roster, calendar folder) in a temp folder.

Every name, phone and email here is made up. `vevent()` writes one iCalendar object with
local (TZID) times unless told otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

TZ_NAME = "America/Chicago"
TZ = ZoneInfo(TZ_NAME)


def local(text: str) -> datetime:
    """'2026-03-10 10:00' in the practice's zone."""
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def _fmt(moment: datetime, utc: bool = False) -> str:
    if utc:
        return moment.astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%SZ")
    return moment.astimezone(TZ).strftime("%Y%m%dT%H%M%S")


def _prop(name: str, moment: datetime, utc: bool) -> str:
    if utc:
        return f"{name}:{_fmt(moment, True)}"
    return f"{name};TZID={TZ_NAME}:{_fmt(moment)}"


def vevent(
    uid: str,
    summary: str,
    start: datetime,
    *,
    minutes: int | None = 50,
    status: str = "",
    rrule: str = "",
    exdates: Sequence[datetime] = (),
    recurrence_id: datetime | None = None,
    description: str = "",
    categories: Sequence[str] = (),
    attendees: Sequence[tuple[str, str]] = (),
    last_modified: datetime | None = None,
    created: datetime | None = None,
    utc: bool = False,
    extra: Sequence[str] = (),
) -> str:
    """One VEVENT (no VCALENDAR around it)."""
    lines = ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z", _prop("DTSTART", start, utc)]
    if minutes is not None:
        lines.append(_prop("DTEND", start + timedelta(minutes=minutes), utc))
    lines.append(f"SUMMARY:{summary}")
    if recurrence_id is not None:
        lines.append(_prop("RECURRENCE-ID", recurrence_id, utc))
    if status:
        lines.append(f"STATUS:{status}")
    if rrule:
        lines.append(f"RRULE:{rrule}")
    for ex in exdates:
        lines.append(_prop("EXDATE", ex, utc))
    if description:
        lines.append("DESCRIPTION:" + description.replace("\n", "\\n"))
    if categories:
        lines.append("CATEGORIES:" + ",".join(categories))
    for email, partstat in attendees:
        lines.append(f"ATTENDEE;PARTSTAT={partstat}:mailto:{email}")
    if last_modified is not None:
        lines.append(f"LAST-MODIFIED:{_fmt(last_modified, True)}")
    if created is not None:
        lines.append(f"CREATED:{_fmt(created, True)}")
    lines += list(extra)
    lines.append("END:VEVENT")
    return "\r\n".join(lines)


def vcalendar(*components: str) -> str:
    return (
        "\r\n".join(
            ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//callsheet tests//EN", *components, "END:VCALENDAR"]
        )
        + "\r\n"
    )


@dataclass
class ClientSpec:
    id: str
    name: str
    phone: str = "+1 555 0199"
    consent_to_call: bool = True
    voicemail_ok: bool = True
    emails: Sequence[str] = ()
    match: Sequence[str] = ()
    alias: str | None = None
    acquainted_with: Sequence[str] = ()
    status: str = "active"
    members: Sequence[str] = ()
    # further keys written as they are (raw TOML values), e.g. {"pause_until": "2026-09-01"}
    raw: dict[str, str] = field(default_factory=dict)


DEFAULT_CLIENTS = (
    ClientSpec("c001", "Avery Quinn", emails=("avery@example.org",)),
    ClientSpec("c002", "Blake Rowe", acquainted_with=("c001",)),
    ClientSpec("c003", "Cameron Tate", consent_to_call=False, voicemail_ok=False),
    ClientSpec("c004", "Devon Ueda", status="discharged"),
)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def roster_toml(clients: Iterable[ClientSpec]) -> str:
    out = []
    for c in clients:
        out.append("[[clients]]")
        for name in ("id", "name", "phone", "consent_to_call", "voicemail_ok", "status"):
            out.append(f"{name} = {_toml_value(getattr(c, name))}")
        for name in ("emails", "match", "acquainted_with", "members"):
            if getattr(c, name):
                out.append(f"{name} = {_toml_value(list(getattr(c, name)))}")
        if c.alias:
            out.append(f"alias = {_toml_value(c.alias)}")
        out += [f"{key} = {value}" for key, value in c.raw.items()]
        out.append("")
    return "\n".join(out)


@dataclass
class Practice:
    """A practice on disk: write events, then run the CLI against `config`."""

    root: Path
    clients: Sequence[ClientSpec] = DEFAULT_CLIENTS
    rules: dict[str, str] = field(default_factory=dict)
    markers: dict[str, object] = field(default_factory=dict)
    reminders: str = 'kind = "vdir"\nevents_path = "out/calls"\ntasks_path = "out/call-tasks"\n'
    source: str = 'kind = "vdir"\npath = "calendar"\n'
    state_url: str = ""  # "" = SQLite in state_dir (tests/integration/conftest.py: both backends)

    def __post_init__(self) -> None:
        self.calendar.mkdir(parents=True, exist_ok=True)
        self.write_config()

    @property
    def calendar(self) -> Path:
        return self.root / "calendar"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def events_dir(self) -> Path:
        return self.root / "out" / "calls"

    @property
    def tasks_dir(self) -> Path:
        return self.root / "out" / "call-tasks"

    def write_config(self) -> None:
        rules = "".join(f"{k} = {_toml_value(v)}\n" for k, v in self.rules.items())
        markers = "".join(f"{k} = {_toml_value(v)}\n" for k, v in self.markers.items())
        text = (
            'roster = "clients.toml"\nstate_dir = "var"\n'
            + (f'state_url = "{self.state_url}"\n' if self.state_url else "")
            + "\n"
            f'[practice]\ntimezone = "{TZ_NAME}"\ntherapist_name = "Dr. Test"\ncallback_number = "+1 555 0100"\n'
            'office_hours = { days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00" }\n\n'
            f"[source]\n{self.source}\n[reminders]\n{self.reminders}\n[rules]\n{rules}\n[markers]\n{markers}"
        )
        self.config.write_text(text, encoding="utf-8")
        fd = os.open(self.root / "clients.toml", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(roster_toml(self.clients))

    def add(self, name: str, *components: str) -> Path:
        """Write one .ics object holding these VEVENTs into the calendar folder."""
        path = self.calendar / f"{name}.ics"
        path.write_text(vcalendar(*components), encoding="utf-8")
        return path

    def remove(self, name: str) -> None:
        (self.calendar / f"{name}.ics").unlink()
