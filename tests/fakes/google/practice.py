"""A practice written both as .ics files and as Google events, and a Google-configured Practice.

Every name, email and id in fixtures built with this module is made up.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.fakes.google.common import AUTH, _rfc3339
from tests.fakes.google.server import FakeGoogle
from tests.practice import ClientSpec, Practice, local, vevent


def google_id(uid: str) -> str:
    """A valid Google event id (base32hex) derived from an iCalendar uid."""
    return base64.b32hexencode(hashlib.sha1(uid.encode()).digest()).decode().lower().rstrip("=")[:20]


_PARTSTATS = {
    "DECLINED": "declined",
    "ACCEPTED": "accepted",
    "TENTATIVE": "tentative",
    "NEEDS-ACTION": "needsAction",
}


@dataclass
class Appt:
    """One appointment object: a single event or a weekly series with exceptions.

    `moved` maps an original start to (new start) and `retitled` to a new title for one
    instance; `cancelled` maps an original start to when it was cancelled.
    """

    uid: str
    summary: str
    start: datetime
    minutes: int = 50
    weekly: int = 0
    status: str = ""
    attendees: Sequence[tuple[str, str]] = ()
    moved: Mapping[datetime, datetime] = field(default_factory=dict)
    retitled: Mapping[datetime, str] = field(default_factory=dict)
    cancelled: Mapping[datetime, datetime] = field(default_factory=dict)
    created: datetime = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    last_modified: datetime = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    all_day: bool = False
    utc_offset: str = ""  # e.g. "+01:00": write the single event's dateTime in that offset, no timeZone
    # Google: deleted (a tombstone; its details stay, as on the organizer's calendar). The .ics
    # twin of a single event deleted before its start is STATUS:CANCELLED (docs/policy.md); a
    # deleted series is absent from it.
    deleted: bool = False
    event_type: str = "default"  # Google's eventType; the twin: busy text-less, or absent
    declined_by_me: bool = False  # an invitation the therapist declined (self attendee); twin: absent

    def twin(self) -> str | None:
        """The .ics twin of this Google object, as callsheet should read it; None when absent."""
        if self.declined_by_me or self.event_type not in ("default", "focusTime", "outOfOffice"):
            return None
        if self.event_type != "default":
            return vevent(self.uid, "Busy", self.start, minutes=self.minutes)
        if self.deleted:
            if self.weekly or self.last_modified >= self.start:
                return None
            return vevent(
                self.uid,
                self.summary,
                self.start,
                minutes=self.minutes,
                status="CANCELLED",
                last_modified=self.last_modified,
                created=self.created,
            )
        return self.ics()

    def ics(self) -> str:
        """The .ics twin (VEVENTs, no VCALENDAR)."""
        if self.all_day:
            day = self.start.strftime("%Y%m%d")
            return "\r\n".join(
                [
                    "BEGIN:VEVENT",
                    f"UID:{self.uid}",
                    "DTSTAMP:20260101T000000Z",
                    f"DTSTART;VALUE=DATE:{day}",
                    f"SUMMARY:{self.summary}",
                    "END:VEVENT",
                ]
            )
        common: dict[str, Any] = {"created": self.created, "utc": bool(self.utc_offset)}
        parts = [
            vevent(
                self.uid,
                self.summary,
                self.start,
                minutes=self.minutes,
                status=self.status,
                rrule=f"FREQ=WEEKLY;COUNT={self.weekly}" if self.weekly else "",
                attendees=self.attendees,
                last_modified=self.last_modified,
                **common,
            )
        ]
        for original in sorted(set(self.moved) | set(self.retitled) | set(self.cancelled)):
            start = self.moved.get(original, original)
            summary = self.retitled.get(original, self.summary)
            if original in self.cancelled:
                parts.append(
                    vevent(
                        self.uid,
                        summary,
                        start,
                        minutes=self.minutes,
                        status="CANCELLED",
                        recurrence_id=original,
                        attendees=self.attendees,
                        last_modified=self.cancelled[original],
                        **common,
                    )
                )
            else:
                parts.append(
                    vevent(
                        self.uid,
                        summary,
                        start,
                        minutes=self.minutes,
                        recurrence_id=original,
                        attendees=self.attendees,
                        last_modified=self.last_modified,
                        **common,
                    )
                )
        return "\r\n".join(parts)

    def _when(self, moment: datetime, tz_name: str) -> dict[str, str]:
        if self.utc_offset:
            sign = -1 if self.utc_offset.startswith("-") else 1
            hours, minutes = (int(x) for x in self.utc_offset[1:].split(":"))
            offset = timedelta(hours=hours, minutes=minutes) * sign
            return {"dateTime": moment.astimezone(timezone(offset)).isoformat()}
        return {"dateTime": moment.astimezone(ZoneInfo(tz_name)).isoformat(), "timeZone": tz_name}

    def google(self, tz_name: str) -> list[dict[str, Any]]:
        """The Google twin: the event (or series) and its exceptions, as stored."""
        gid = google_id(self.uid)
        stamp = {"created": _rfc3339(self.created), "updated": _rfc3339(self.last_modified)}
        if self.all_day:
            day = self.start.date()
            return [
                {
                    "id": gid,
                    "summary": self.summary,
                    "start": {"date": day.isoformat()},
                    "end": {"date": (day + timedelta(days=1)).isoformat()},
                    # the Calendar app makes all-day events "Available" (the API default is opaque)
                    "transparency": "transparent",
                    "eventType": self.event_type,
                    **stamp,
                }
            ]
        attendees = [
            {"email": e, "responseStatus": _PARTSTATS.get(p.upper(), "needsAction")}
            for e, p in self.attendees
        ]
        length = timedelta(minutes=self.minutes)
        master: dict[str, Any] = {
            "id": gid,
            "summary": self.summary,
            "start": self._when(self.start, tz_name),
            "end": self._when(self.start + length, tz_name),
            **stamp,
            "status": {"CANCELLED": "cancelled", "TENTATIVE": "tentative"}.get(self.status, "confirmed"),
        }
        if self.deleted:
            master["status"] = "cancelled"
        if self.event_type != "default":
            master["eventType"] = self.event_type
        if self.declined_by_me:
            master["organizer"] = {"email": "frontdesk.fake@example.test"}
            attendees.append({"email": FakeGoogle.PRIMARY, "self": True, "responseStatus": "declined"})
        if attendees:
            master["attendees"] = attendees
        if self.weekly:
            master["recurrence"] = [f"RRULE:FREQ=WEEKLY;COUNT={self.weekly}"]
        out = [master]
        for original in sorted(set(self.moved) | set(self.retitled) | set(self.cancelled)):
            start = self.moved.get(original, original)
            rid = original.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            exception: dict[str, Any] = {
                "id": f"{gid}_{rid}",
                "recurringEventId": gid,
                "originalStartTime": self._when(original, tz_name),
                "summary": self.retitled.get(original, self.summary),
                "start": self._when(start, tz_name),
                "end": self._when(start + length, tz_name),
                "created": stamp["created"],
                "updated": stamp["updated"],
                "status": "confirmed",
            }
            if attendees:
                exception["attendees"] = attendees
            if original in self.cancelled:
                exception["status"] = "cancelled"
                exception["updated"] = _rfc3339(self.cancelled[original])
            out.append(exception)
        return out


def seed(fake: FakeGoogle, calendar_id: str, appts: Sequence[Appt], tz_name: str) -> None:
    """Store the Google twins of `appts` in a calendar of the fake."""
    for appt in appts:
        for body in appt.google(tz_name):
            fake.add_event(calendar_id, body)


def write_token(path: Path, token: Mapping[str, Any]) -> None:
    """Write a token file as the setup script would (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(dict(token), handle)


SAMPLE_NOW = "2026-03-18T12:00:00-05:00"  # a Wednesday


def sample_clients() -> tuple[ClientSpec, ...]:
    return (
        ClientSpec("c001", "Avery Quinn", emails=("avery@example.org",), acquainted_with=("c002",)),
        ClientSpec("c002", "Blake Rowe", emails=("blake@example.org",)),
        ClientSpec("c003", "Cameron Tate", consent_to_call=False, voicemail_ok=False),
        ClientSpec("c004", "Devon Ueda", status="discharged"),
        ClientSpec("c005", "Emery Vance"),
        ClientSpec("c006", "Finley Wu"),
    )


def sample_calendars() -> tuple[list[Appt], list[Appt]]:
    """Two calendars of appointments: weekly series with a moved, a re-titled ("no show") and a
    cancelled instance; a client attendee who declined; a time written in another offset; a
    personal event; an all-day event; a double booking across the two calendars. Google only
    (their twins say what callsheet must read): a single event deleted before its start; a
    deleted whole series; focus time titled with a client's name; out of office; a birthday;
    a working location titled with a client's name; an invitation the therapist declined."""
    first = [
        Appt(
            "series-avery",
            "Avery Quinn",
            local("2026-02-02 10:00"),
            weekly=8,
            attendees=(("avery@example.org", "ACCEPTED"),),
            retitled={local("2026-02-23 10:00"): "Avery Quinn no show"},
            moved={local("2026-03-09 10:00"): local("2026-03-10 11:00")},
            cancelled={local("2026-03-16 10:00"): local("2026-03-16 08:00")},
        ),
        Appt("single-blake-1", "Blake Rowe", local("2026-03-03 14:00"), utc_offset="+01:00"),
        Appt(
            "single-blake-2",
            "Appointment",
            local("2026-03-23 10:55"),
            attendees=(("blake@example.org", "DECLINED"),),
            last_modified=local("2026-03-17 09:00"),
        ),
        Appt(
            "series-cameron",
            "Cameron Tate",
            local("2026-02-03 09:00"),
            weekly=6,
            cancelled={local("2026-03-10 09:00"): local("2026-03-09 08:00")},
        ),
        Appt("single-devon", "Devon Ueda", local("2026-03-04 13:00")),
        Appt("personal-dentist", "Dentist", local("2026-03-19 12:00"), minutes=60),
        Appt("allday-conference", "Conference with Avery Quinn", local("2026-03-20 00:00"), all_day=True),
        Appt(
            "single-finley-deleted",
            "Finley Wu",
            local("2026-03-12 16:00"),
            deleted=True,
            last_modified=local("2026-03-10 09:00"),
        ),
        Appt(
            "series-blake-old",
            "Blake Rowe",
            local("2026-01-07 09:00"),
            weekly=8,
            deleted=True,
            last_modified=local("2026-03-01 09:00"),
        ),
        Appt(
            "focus-avery", "Notes Avery Quinn", local("2026-03-17 16:00"), minutes=60, event_type="focusTime"
        ),
        Appt(
            "ooo-afternoon", "Out of office", local("2026-03-25 13:00"), minutes=240, event_type="outOfOffice"
        ),
        Appt(
            "birthday-cameron", "Cameron Tate", local("2026-03-21 00:00"), all_day=True, event_type="birthday"
        ),
        Appt(
            "office-finley", "Finley Wu", local("2026-03-16 09:00"), minutes=480, event_type="workingLocation"
        ),
        Appt("invite-cameron", "Cameron Tate", local("2026-03-12 11:00"), declined_by_me=True),
    ]
    second = [
        Appt("series-emery", "Emery Vance", local("2026-02-05 15:00"), weekly=10),
        Appt("single-finley", "Finley Wu", local("2026-03-26 15:30")),
    ]
    return first, second


@dataclass
class GooglePractice:
    """A practice whose source and reminders are the fake Google."""

    practice: Practice
    fake: FakeGoogle
    token_path: Path
    token: dict[str, Any]
    calls_calendar: str
    second_calendar: str

    @property
    def config(self) -> Path:
        return self.practice.config

    def ours(self, *, include_cancelled: bool = False) -> list[dict[str, Any]]:
        """The reminder events in the calls calendar."""
        return self.fake.events(self.calls_calendar, include_cancelled=include_cancelled)

    def tasks(self, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        return self.fake.tasks("Client calls", include_deleted=include_deleted)


def google_practice(
    fake: FakeGoogle,
    root: Path,
    *,
    clients: Sequence[ClientSpec] | None = None,
    scopes: Sequence[str] = (
        AUTH + "calendar.events.readonly",
        AUTH + "calendar.app.created",
        AUTH + "tasks",
    ),
    expired: bool = False,
    timeout: str = "2s",
    write: Sequence[str] = ("event", "task"),
    seeded: bool = True,
    extra_config: str = "",
) -> GooglePractice:
    """Config, roster and token for a practice on the fake; seeds the sample calendars."""
    second = fake.add_calendar("Practice (second)", calendar_id="second.fake@group.calendar.google.com")
    calls = fake.add_calendar("Client calls", app_created=True)
    if seeded:
        first_appts, second_appts = sample_calendars()
        seed(fake, "primary", first_appts, "America/Chicago")
        seed(fake, second, second_appts, "America/Chicago")
    token = fake.grant(scopes, expired=expired)
    token_path = root / "secrets" / "google-token.json"
    write_token(token_path, token)
    secrets_path = root / "secrets" / "client_secrets.json"
    secrets_path.write_text(json.dumps(fake.client_secrets()), encoding="utf-8")
    source = (
        'kind = "google"\n'
        f'calendar_ids = ["primary", "{second}"]\n'
        'token_file = "secrets/google-token.json"\n'
        'client_secrets_file = "secrets/client_secrets.json"\n'
        f'api_endpoint = "{fake.url}"\n'
        f'timeout = "{timeout}"\n'
    )
    reminders = (
        'kind = "google"\n'
        f'calendar_id = "{calls}"\n'
        'tasklist = "Client calls"\n'
        f"write = {json.dumps(list(write))}\n"
    )
    practice = Practice(root, clients=clients or sample_clients(), source=source, reminders=reminders)
    if extra_config:
        with practice.config.open("a", encoding="utf-8") as handle:
            handle.write("\n" + extra_config)
    return GooglePractice(practice, fake, token_path, token, calls, second)


def vdir_twin(root: Path, *, clients: Sequence[ClientSpec] | None = None) -> Practice:
    """The same sample practice as a folder of .ics files (what vdirsyncer would keep)."""
    practice = Practice(root, clients=clients or sample_clients())
    first, second = sample_calendars()
    for appt in (*first, *second):
        twin = appt.twin()
        if twin is not None:
            practice.add(appt.uid, twin)
    return practice
