"""Benchmark: the rules and placement for 100,000 appointments of 1,000 clients.

Builds a synthetic caseload in memory (no I/O, no calendar parsing): weekly and fortnightly
clients, some who stopped coming, no-shows, cancellations, acquaintances, discharged clients,
and a crowded diary so that the conflict rules and the free-slot search have work to do. It
times `rules.needs` and `placement.place` (plus the alternative slots of every conflict call)
and prints them against a baseline measured in the same run: sorting the same appointments
by (client, start) and walking them once, the least any rule pass must do. Target: rules +
placement under 1 second.

Usage: python scripts/bench_rules.py [--clients N] [--per-client N] [--repeat N] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker import placement, rules
from worker.model import (
    Appointment,
    Attendance,
    Busy,
    Client,
    ClientId,
    Reason,
)

TZ = ZoneInfo("America/Chicago")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=TZ)
T = TypeVar("T")


def caseload(n_clients: int, per_client: int, seed: int) -> tuple[dict[ClientId, Client], list[Appointment]]:
    """A reproducible synthetic practice: clients and their appointments."""
    rnd = random.Random(seed)
    clients: dict[ClientId, Client] = {}
    appointments: list[Appointment] = []
    ids = [ClientId(f"c{n:04d}") for n in range(n_clients)]
    for n, cid in enumerate(ids):
        friends = frozenset({ids[n + 1]}) if n + 1 < n_clients and rnd.random() < 0.1 else frozenset()
        clients[cid] = Client(
            id=cid,
            name=f"Client {n}",
            alias=f"C{n}",
            phone="+1 555 0100",
            consent_to_call=True,
            voicemail_ok=True,
            acquainted_with=friends,
            status="discharged" if rnd.random() < 0.05 else "active",
        )
        cadence = timedelta(days=rnd.choice((7, 7, 7, 14)))
        lapsing = rnd.random() < 0.05  # still booked, but cancels or misses every time lately
        weekday = rnd.randrange(5)
        minute = rnd.randrange(9 * 4, 16 * 4) * 15
        # the last appointment: most clients are still coming, some stopped weeks ago
        last_week = rnd.choice((4, 3, 2, 1, 0, -1, -2, -4, -8, -20))
        first_day = (NOW + timedelta(weeks=last_week) - cadence * (per_client - 1)).date()
        first_day += timedelta(days=(weekday - first_day.weekday()) % 7)
        for k in range(per_client):
            day = first_day + cadence * k
            # stored times are UTC, as the runner reads them back from state
            local_start = datetime(day.year, day.month, day.day, tzinfo=TZ) + timedelta(minutes=minute)
            start = local_start.astimezone(UTC)
            end = start + timedelta(minutes=50)
            roll = rnd.random()
            if lapsing and NOW - timedelta(days=60) < end <= NOW:
                roll = rnd.choice((0.0, 0.07))
            cancelled_at = None
            if roll < 0.06:
                attendance = Attendance.CANCELLED
                cancelled_at = start - timedelta(hours=rnd.randrange(1, 96))
                if cancelled_at >= start - timedelta(hours=24):
                    attendance = Attendance.LATE_CANCEL
            elif end > NOW:
                attendance = Attendance.SCHEDULED if start > NOW else Attendance.IN_PROGRESS
            elif roll < 0.10:
                attendance = Attendance.NO_SHOW
            else:
                attendance = Attendance.ATTENDED
            uid = f"{cid}-{k}"
            appointments.append(
                Appointment(
                    id=f"{uid}|",
                    uid=uid,
                    recurrence_id="",
                    client_id=cid,
                    start=start,
                    end=end,
                    attendance=attendance,
                    cancelled_at=cancelled_at,
                    created=start - timedelta(days=30),
                )
            )
    rnd.shuffle(appointments)
    return clients, appointments


def best_of(repeat: int, work: Callable[[], T]) -> tuple[float, T]:
    """The shortest wall time of `repeat` runs, and the last result."""
    best = float("inf")
    result: T | None = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return best, result


def baseline(appointments: Sequence[Appointment]) -> int:
    """Sort by (client, start) and walk once: the floor for any per-client rule pass."""
    count = 0
    for a in sorted(appointments, key=lambda a: (a.client_id, a.start)):
        if a.attendance is Attendance.ATTENDED:
            count += 1
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--per-client", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    clients, appointments = caseload(args.clients, args.per_client, args.seed)
    policy = rules.Policy(check_in=True)
    hours = placement.Hours(
        tz=TZ,
        weekdays=frozenset(range(5)),
        start=datetime.min.time().replace(hour=9),
        end=datetime.min.time().replace(hour=17),
    )
    horizon_end = NOW + timedelta(days=150)
    busy = [
        Busy(a.start, a.end)
        for a in appointments
        if not a.is_cancelled and a.end > NOW - timedelta(days=1) and a.start < horizon_end
    ]

    t_base, _ = best_of(args.repeat, lambda: baseline(appointments))
    t_rules, found = best_of(args.repeat, lambda: rules.needs(clients, appointments, now=NOW, policy=policy))
    due = [n for n in found if n.state == "due"]
    t_place, placed = best_of(args.repeat, lambda: placement.place(due, now=NOW, hours=hours, busy=busy))

    conflicts = [n for n in due if n.reason in (Reason.DOUBLE_BOOKED, Reason.ACQUAINTED_CONFLICT)]

    def alternatives() -> list[list[datetime]]:
        out = []
        for need in conflicts:
            own = Busy(need.appointment_start, need.appointment_end)
            others = [b for b in busy if b != own]
            out.append(placement.alternatives(need, now=NOW, hours=hours, busy=others))
        return out

    t_alt, _ = best_of(args.repeat, alternatives)

    by_reason: dict[str, int] = {}
    for n in found:
        by_reason[f"{n.reason.value}/{n.state}"] = by_reason.get(f"{n.reason.value}/{n.state}", 0) + 1
    total = t_rules + t_place
    print(f"appointments {len(appointments):,} of {len(clients):,} clients; busy intervals {len(busy):,}")
    print(f"needs {len(found):,} ({len(due):,} due, {len(placed):,} placed, {len(conflicts):,} conflicts)")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())))
    print(f"baseline (sort + walk)      {t_base * 1000:8.1f} ms")
    print(f"rules.needs                 {t_rules * 1000:8.1f} ms  ({t_rules / t_base:5.1f}x baseline)")
    print(f"placement.place             {t_place * 1000:8.1f} ms  ({t_place / t_base:5.1f}x baseline)")
    print(
        f"rules + placement           {total * 1000:8.1f} ms  ({total / t_base:5.1f}x baseline)"
        f"  target < 1000 ms: {'ok' if total < 1.0 else 'MISSED'}"
    )
    print(
        f"alternatives                {t_alt * 1000:8.1f} ms  (all {len(conflicts)} conflict calls together; "
        "the runner's share, outside the target)"
    )
    return 0 if total < 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
