#!/usr/bin/env python3
"""Generate a realistic made-up practice for benchmarks: years of sessions in a folder of .ics.

Default: 10 years ending today, 28 clients at a time, weekly (most) or fortnightly sessions,
clients ending and new ones starting, ~8% cancellations, ~3% no-shows, some clients booked as
one recurring series with exceptions (a skipped week, a moved session, a cancelled one), and
the therapist's personal events. Over 13,000 objects.

    python scripts/generate_practice.py OUT [--years 10] [--caseload 28] [--seed 7]
        [--radicale STORAGE]   # also lay the calendar out as a Radicale storage folder

OUT gets calendar/ (one .ics per object), clients.toml and config.toml (vdir source and sink),
ready for `callsheet --config OUT/config.toml run --once`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

TZ_NAME = "America/Chicago"
TZ = ZoneInfo(TZ_NAME)
FIRST = [
    "Avery",
    "Blake",
    "Casey",
    "Devon",
    "Emery",
    "Finley",
    "Gray",
    "Harper",
    "Indy",
    "Jules",
    "Kai",
    "Logan",
    "Morgan",
    "Noel",
    "Oakley",
    "Parker",
    "Quinn",
    "Reese",
    "Sage",
    "Tatum",
]
LAST = [
    "Abbott",
    "Barros",
    "Castillo",
    "Dunn",
    "Ekwueme",
    "Fischer",
    "Gallo",
    "Haddad",
    "Ivers",
    "Jansen",
    "Kowalski",
    "Lindgren",
    "Mbeki",
    "Nakamura",
    "Ortega",
    "Price",
    "Quist",
    "Rahman",
]
SLOTS = [time(h) for h in (9, 10, 11, 13, 14, 15, 16)]


@dataclass
class Client:
    id: str
    name: str
    weekday: int
    slot: time
    every: int  # weeks
    start: date
    end: date
    series: bool


def _fmt(moment: datetime) -> str:
    return moment.astimezone(TZ).strftime("%Y%m%dT%H%M%S")


def _event(
    uid: str, summary: str, start: datetime, minutes: int, extra: list[str] | None = None
) -> list[str]:
    return [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20200101T000000Z",
        f"DTSTART;TZID={TZ_NAME}:{_fmt(start)}",
        f"DTEND;TZID={TZ_NAME}:{_fmt(start + timedelta(minutes=minutes))}",
        f"SUMMARY:{summary}",
        *(extra or []),
        "END:VEVENT",
    ]


def _calendar(*events: list[str]) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//callsheet//generated practice//EN"]
    for ev in events:
        lines += ev
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


def generate(years: int, caseload: int, seed: int, today: date) -> tuple[list[Client], dict[str, str]]:
    """Return the clients and {file name: iCalendar text}."""
    rng = random.Random(seed)
    begin = today - timedelta(days=365 * years)
    clients: list[Client] = []
    files: dict[str, str] = {}
    serial = 0

    def new_client(start: date) -> Client:
        nonlocal serial
        serial += 1
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}-{serial}"
        length = timedelta(days=rng.randint(60, 900))
        return Client(
            id=f"g{serial:05d}",
            name=name,
            weekday=rng.randrange(5),
            slot=rng.choice(SLOTS),
            every=1 if rng.random() < 0.75 else 2,
            start=start,
            end=start + length,
            series=rng.random() < 0.2,
        )

    active = [new_client(begin + timedelta(days=rng.randrange(60))) for _ in range(caseload)]
    day = begin
    horizon = today + timedelta(days=60)
    while day <= horizon:
        for n, client in enumerate(active):
            if client.end < day:
                clients.append(client)
                active[n] = new_client(day + timedelta(days=rng.randint(1, 10)))
        day += timedelta(days=7)
    clients.extend(active)
    for client in clients:
        first = client.start + timedelta(days=(client.weekday - client.start.weekday()) % 7)
        sessions = []
        at = first
        while at <= min(client.end, horizon):
            sessions.append(datetime.combine(at, client.slot, TZ))
            at += timedelta(weeks=client.every)
        if not sessions:
            continue
        if client.series:
            rule = f"FREQ=WEEKLY;INTERVAL={client.every};COUNT={len(sessions)}"
            exdate = sessions[len(sessions) // 3] if len(sessions) > 3 else None
            master = _event(
                f"{client.id}-series",
                client.name,
                sessions[0],
                50,
                [f"RRULE:{rule}"] + ([f"EXDATE;TZID={TZ_NAME}:{_fmt(exdate)}"] if exdate else []),
            )
            overrides = []
            if len(sessions) > 5:
                moved = sessions[len(sessions) // 2]
                overrides.append(
                    _event(
                        f"{client.id}-series",
                        client.name,
                        moved + timedelta(hours=1),
                        50,
                        [f"RECURRENCE-ID;TZID={TZ_NAME}:{_fmt(moved)}"],
                    )
                )
                gone = sessions[len(sessions) // 2 + 1]
                overrides.append(
                    _event(
                        f"{client.id}-series",
                        client.name,
                        gone,
                        50,
                        [f"RECURRENCE-ID;TZID={TZ_NAME}:{_fmt(gone)}", "STATUS:CANCELLED"],
                    )
                )
            files[f"{client.id}-series.ics"] = _calendar(master, *overrides)
            continue
        for k, start in enumerate(sessions):
            roll = rng.random()
            extra: list[str] = []
            summary = client.name
            if roll < 0.08:
                extra.append("STATUS:CANCELLED")
                lm = start - timedelta(hours=rng.randint(2, 96))
                extra.append(f"LAST-MODIFIED:{lm.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}")
            elif roll < 0.11 and start.date() < today:
                summary = f"{client.name} no show"
            files[f"{client.id}-{k:04d}.ics"] = _calendar(
                _event(f"{client.id}-{k:04d}", summary, start, 50, extra)
            )
    personal = begin
    k = 0
    while personal <= horizon:
        if rng.random() < 0.85:
            start = datetime.combine(personal, time(rng.choice((8, 12, 17))), TZ)
            files[f"personal-{k:05d}.ics"] = _calendar(
                _event(
                    f"personal-{k:05d}",
                    rng.choice(
                        ["Supervision", "Dentist", "Lunch with a colleague", "Training", "Admin block"]
                    ),
                    start,
                    60,
                )
            )
            k += 1
        personal += timedelta(days=1)
    return clients, files


def _roster(clients: list[Client], today: date) -> str:
    out = []
    for c in clients:
        status = "discharged" if c.end < today - timedelta(days=200) else "active"
        out += [
            "[[clients]]",
            f'id = "{c.id}"',
            f'name = "{c.name}"',
            'phone = "+1 555 0100"',
            "consent_to_call = true",
            "voicemail_ok = true",
            f'status = "{status}"',
            "",
        ]
    return "\n".join(out)


CONFIG = f"""roster = "clients.toml"
state_dir = "var"

[practice]
timezone = "{TZ_NAME}"
therapist_name = "Dr. Bench"
callback_number = "+1 555 0100"

[source]
kind = "vdir"
path = "calendar"

[reminders]
kind = "vdir"
events_path = "out/calls"
tasks_path = "out/call-tasks"
"""


def write(out: Path, years: int = 10, caseload: int = 28, seed: int = 7, today: date | None = None) -> int:
    """Write the practice into `out`; return the number of calendar objects."""
    today = today or datetime.now(TZ).date()
    clients, files = generate(years, caseload, seed, today)
    calendar = out / "calendar"
    calendar.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (calendar / name).write_text(text, encoding="utf-8")
    fd = os.open(out / "clients.toml", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(_roster(clients, today))
    (out / "config.toml").write_text(CONFIG, encoding="utf-8")
    return len(files)


def write_radicale(storage: Path, calendar: Path, user: str = "therapist", name: str = "practice") -> Path:
    """Lay a calendar folder out as Radicale's filesystem storage (before Radicale starts)."""
    target = storage / "collection-root" / user / name
    target.mkdir(parents=True, exist_ok=True)
    (storage / "collection-root" / user / ".Radicale.props").write_text("{}", encoding="utf-8")
    (target / ".Radicale.props").write_text(
        json.dumps(
            {"tag": "VCALENDAR", "D:displayname": name, "C:supported-calendar-component-set": "VEVENT"}
        ),
        encoding="utf-8",
    )
    for path in calendar.glob("*.ics"):
        (target / path.name).write_bytes(path.read_bytes())
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--caseload", type=int, default=28)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--radicale", type=Path, help="also write a Radicale storage folder here")
    args = parser.parse_args()
    count = write(args.out, args.years, args.caseload, args.seed)
    print(f"{count} calendar objects in {args.out / 'calendar'}")
    if args.radicale:
        print(f"Radicale collection: {write_radicale(args.radicale, args.out / 'calendar')}")


if __name__ == "__main__":
    main()
