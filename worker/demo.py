"""The sample practice behind `callsheet demo` and `make demo`.

A dozen made-up clients in a local folder around a given day, covering every situation of
docs/policy.md: a no-show, a client who did not rebook, a cancellation never rescheduled, a client who
keeps cancelling, a client to send a termination letter, two acquaintances booked back to
back, a double booking, a late arrival, a client without call consent, a discharged client,
a weekly series with an exception and a moved session, and personal events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from worker.files import write_private

TIMEZONE = "America/Chicago"

CONFIG = """\
# callsheet demo practice: made-up clients, a local calendar folder, reminders as .ics files.
roster = "clients.toml"
state_dir = "var"

[practice]
timezone = "{tz}"
therapist_name = "Dr. Rivera"
callback_number = "+1 555 0100"
office_hours = {{ days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00" }}

[source]
kind = "vdir"
path = "calendar"

[reminders]
kind = "vdir"
events_path = "out/calls"
tasks_path = "out/call-tasks"
write = ["event", "task"]

[markers]
arrived = ["arrived"]
"""

CLIENTS = [
    ("c001", "Alex Morgan", True, True, ["c002"], "active"),
    ("c002", "Bailey Chen", True, True, [], "active"),
    ("c003", "Casey Rivera-Ortiz", True, True, [], "active"),
    ("c004", "Dana Whitfield", True, False, [], "active"),
    ("c005", "Emerson Park", True, True, [], "active"),
    ("c006", "Finley Adeyemi", True, True, [], "active"),
    ("c007", "Gray Sorensen", True, True, [], "active"),
    ("c008", "Harper Lindqvist", True, True, [], "active"),
    ("c009", "Indigo Marsh", True, True, [], "active"),
    ("c010", "Jules Okafor", True, True, [], "discharged"),
    ("c011", "Kai Novak", False, False, [], "active"),
    ("c012", "Logan Brandt", True, True, [], "active"),
]


@dataclass(frozen=True)
class _Ev:
    uid: str
    summary: str
    start: datetime
    minutes: int = 50
    status: str = ""
    rrule: str = ""
    exdate: datetime | None = None
    last_modified: datetime | None = None
    overrides: tuple[tuple[datetime, datetime, str], ...] = ()


def _fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _local(name: str, moment: datetime) -> str:
    """A property in the practice's zone (TZID), so a weekly series keeps its wall-clock time."""
    return f"{name};TZID={TIMEZONE}:{moment.astimezone(ZoneInfo(TIMEZONE)).strftime('%Y%m%dT%H%M%S')}"


def _vevent(ev: _Ev, *, start: datetime, rid: datetime | None, summary: str, status: str) -> list[str]:
    lines = [
        "BEGIN:VEVENT",
        f"UID:{ev.uid}",
        "DTSTAMP:20260101T000000Z",
        _local("DTSTART", start),
        _local("DTEND", start + timedelta(minutes=ev.minutes)),
        f"SUMMARY:{summary}",
    ]
    if rid is not None:
        lines.append(_local("RECURRENCE-ID", rid))
    if status:
        lines.append(f"STATUS:{status}")
    if ev.last_modified is not None:
        lines.append(f"LAST-MODIFIED:{_fmt(ev.last_modified)}")
    if ev.rrule and rid is None:
        lines.append(f"RRULE:{ev.rrule}")
        if ev.exdate is not None:
            lines.append(_local("EXDATE", ev.exdate))
    lines.append("END:VEVENT")
    return lines


def _ics(ev: _Ev) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//callsheet//demo practice//EN"]
    lines += _vevent(ev, start=ev.start, rid=None, summary=ev.summary, status=ev.status)
    for rid, new_start, summary in ev.overrides:
        lines += _vevent(ev, start=new_start, rid=rid, summary=summary, status="")
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


def _events(today: date, now: datetime, tz: ZoneInfo) -> list[_Ev]:
    def at(days: int, hour: int, minute: int = 0) -> datetime:
        day = today + timedelta(days=days)
        # keep sessions on weekdays, on the same side of today: a past weekend day becomes the
        # Friday before it, a future one the Monday after it ("yesterday" stays in the past)
        if day.weekday() >= 5:
            day += timedelta(days=4 - day.weekday()) if days < 0 else timedelta(days=7 - day.weekday())
        return datetime.combine(day, time(hour, minute), tz)

    weekly_start = at(-36, 10)  # never on today's weekday: not "late" at the anchor time
    moved_rid = weekly_start + timedelta(weeks=6)
    late_start = (now - timedelta(minutes=20)).astimezone(tz).replace(second=0, microsecond=0)
    return [
        # c001: a weekly series with a skipped week and one moved session; nothing to call
        _Ev(
            "demo-c001-weekly",
            "Alex Morgan",
            weekly_start,
            rrule="FREQ=WEEKLY;COUNT=12",
            exdate=weekly_start + timedelta(weeks=2),
            overrides=((moved_rid, moved_rid + timedelta(hours=2), "Alex Morgan (moved)"),),
        ),
        # c002: booked straight after Alex's moved session; they know each other and would
        # meet in the waiting room
        _Ev("demo-c002-next", "Bailey Chen", moved_rid + timedelta(hours=2, minutes=50)),
        _Ev("demo-c002-past", "Bailey Chen", at(-6, 14)),
        # c003: did not show up two days ago, has a session booked next week
        _Ev("demo-c003-missed", "Casey Rivera-Ortiz - no show", at(-2, 9)),
        _Ev("demo-c003-next", "Casey Rivera-Ortiz", at(5, 9)),
        # c004: came nine days ago and did not book again
        _Ev("demo-c004-last", "Dana Whitfield", at(-9, 15)),
        # c005: cancelled four days ago and did not reschedule
        _Ev("demo-c005-earlier", "Emerson Park", at(-11, 13)),
        _Ev(
            "demo-c005-cancelled",
            "Emerson Park",
            at(-4, 13),
            status="CANCELLED",
            last_modified=now - timedelta(days=4, hours=3),
        ),
        # c006: has not come for six weeks, cancels each time, still has a booking
        _Ev("demo-c006-last", "Finley Adeyemi", at(-42, 16)),
        _Ev("demo-c006-cx1", "Finley Adeyemi cxl", at(-28, 16)),
        _Ev("demo-c006-cx2", "Finley Adeyemi", at(-14, 16), status="CANCELLED"),
        _Ev("demo-c006-next", "Finley Adeyemi", at(10, 16)),
        # c007: last seen a month ago, nothing since: time for the termination letter
        _Ev("demo-c007-last", "Gray Sorensen", at(-30, 12)),
        # c008 and c009: double booked in three days
        _Ev("demo-c008-next", "Harper Lindqvist", at(3, 14)),
        _Ev("demo-c009-next", "Indigo Marsh", at(3, 14, 30)),
        _Ev("demo-c009-past", "Indigo Marsh", at(-4, 14)),
        _Ev("demo-c008-past", "Harper Lindqvist", at(-4, 11)),
        # c010: discharged, nothing is ever written for them
        _Ev("demo-c010-last", "Jules Okafor", at(-20, 10)),
        # c011: missed yesterday; no consent to call on file
        _Ev("demo-c011-missed", "Kai Novak DNA", at(-1, 11)),
        # c012: due twenty minutes ago and not marked arrived
        _Ev("demo-c012-now", "Logan Brandt", late_start),
        _Ev("demo-c012-next", "Logan Brandt", at(8, 15)),
        # the therapist's own events: busy time, never a client
        _Ev("demo-personal-dentist", "Dentist", at(1, 9), minutes=60),
        _Ev("demo-personal-supervision", "Supervision", at(2, 9), minutes=120),
    ]


def _roster() -> str:
    out = ["# Made-up clients for the callsheet demo. Real rosters hold real people: keep them 0600.", ""]
    for cid, name, consent, voicemail, friends, status in CLIENTS:
        out += [
            "[[clients]]",
            f'id = "{cid}"',
            f'name = "{name}"',
            f'phone = "+1 555 01{cid[-2:]}"',
            f"consent_to_call = {'true' if consent else 'false'}",
            f"voicemail_ok = {'true' if voicemail else 'false'}",
        ]
        if friends:
            out.append("acquainted_with = [" + ", ".join(f'"{f}"' for f in friends) + "]")
        out += [f'status = "{status}"', ""]
    return "\n".join(out)


def _write_private(path: Path, text: str) -> None:
    write_private(path, text)


# the demo's office hours (CONFIG): Monday to Friday, 09:00-17:00
_OFFICE_DAYS = range(5)
_EARLIEST, _LATEST, _ANCHOR = time(10, 0), time(16, 0), time(10, 30)


def anchor(clock: datetime) -> datetime:
    """The demo's `now`: the clock during office hours, else the next office day at 10:30.

    At 03:54 the demo would otherwise show a late call for a 03:34 appointment; anchored, it
    always looks like the README (calls in office hours, a client twenty minutes late).
    """
    tz = ZoneInfo(TIMEZONE)
    local = clock.astimezone(tz)
    if local.weekday() in _OFFICE_DAYS and _EARLIEST <= local.time() <= _LATEST:
        return local.replace(second=0, microsecond=0)
    day = local.date() if local.time() < _EARLIEST else local.date() + timedelta(days=1)
    while day.weekday() not in _OFFICE_DAYS:
        day += timedelta(days=1)
    return datetime.combine(day, _ANCHOR, tz)


def create_practice(folder: Path, now: datetime) -> Path:
    """Write the sample practice into `folder` (if not there yet); return the config path."""
    config = folder / "config.toml"
    if config.exists():
        return config
    tz = ZoneInfo(TIMEZONE)
    folder.mkdir(parents=True, exist_ok=True)
    calendar = folder / "calendar"
    calendar.mkdir(exist_ok=True)
    for ev in _events(now.astimezone(tz).date(), now, tz):
        (calendar / f"{ev.uid}.ics").write_text(_ics(ev), encoding="utf-8")
    _write_private(folder / "clients.toml", _roster())
    config.write_text(CONFIG.format(tz=TIMEZONE), encoding="utf-8")
    return config
