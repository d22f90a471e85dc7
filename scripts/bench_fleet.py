"""A fleet cycle's cost: N small idle local-folder accounts, one warm pass each, served by 1, 2
and 4 `callsheet worker` processes, against one `callsheet run --once` process per account (the
cron way). Needs a PostgreSQL to hold the state and the queue:

    python scripts/bench_fleet.py --state-url postgresql://user@127.0.0.1:5432/db [--accounts 200]

Prints, per way of running: the wall time of the cycle, passes per second, and CPU seconds per
pass (user + system of the processes, start-up included). Every account is passed once before
(cold), so each measured pass is warm and idle (nothing to write).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from procrastinate.exceptions import AlreadyEnqueued  # noqa: E402

from worker import fleet, runner  # noqa: E402
from worker import log as logsetup  # noqa: E402
from worker.config import load_accounts  # noqa: E402

ROSTER = (
    '[[clients]]\nid = "c001"\nname = "Avery Quinn"\n\n'
    '[[clients]]\nid = "c002"\nname = "Blake Rowe"\nacquainted_with = ["c001"]\n'
)


def event(uid: str, title: str, start: datetime) -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start.strftime(fmt)}\r\n"
        f"DTEND:{(start + timedelta(minutes=50)).strftime(fmt)}\r\nSUMMARY:{title}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def practice(root: Path, state_url: str, accounts: int) -> Path:
    """`accounts` accounts of two clients and one call each; their state in `state_url`."""
    day = (datetime.now(UTC) + timedelta(days=3)).replace(hour=15, minute=0, second=0, microsecond=0)
    text = (
        f'state_dir = "var"\nstate_url = "{state_url}"\n\n[run]\nevery = "1h"\nlog_level = "info"\n\n'
        '[practice]\ntimezone = "UTC"\ntherapist_name = "Bench"\ncallback_number = "+1 555 0100"\n\n'
    )
    (root / "rosters").mkdir(parents=True)
    for i in range(accounts):
        name = f"b{i:04d}"
        calendar = root / "calendars" / name
        calendar.mkdir(parents=True)
        (calendar / "x1.ics").write_text(event("x1", "Avery Quinn", day))
        (calendar / "x2.ics").write_text(event("x2", "Blake Rowe", day + timedelta(minutes=55)))
        roster = root / "rosters" / f"{name}.toml"
        roster.write_text(ROSTER)
        roster.chmod(0o600)
        text += (
            f'[[accounts]]\nname = "{name}"\nroster = "rosters/{name}.toml"\n'
            f'[accounts.source]\nkind = "vdir"\npath = "calendars/{name}"\n'
            f'[accounts.reminders]\nkind = "vdir"\nevents_path = "out/{name}/calls"\n\n'
        )
    config = root / "config.toml"
    config.write_text(text)
    # the cron way: one config per account, naming only it (the same rows in the database)
    head, *tables = text.split("[[accounts]]")
    for i, table in enumerate(tables):
        (root / f"one-b{i:04d}.toml").write_text(head + "[[accounts]]" + table)
    return config


def enqueue(config: Path) -> None:
    """One pass of every account in the queue."""
    accounts = load_accounts(config)
    app = fleet.make_app(fleet.Fleet(accounts, tick=60))

    async def go() -> None:
        async with app.open_async():
            task = app.tasks[fleet.PASS_TASK]
            for a in accounts:
                # a worker's tick may have queued the account's pass already (its boundary fell
                # in the run): that pass counts the same
                with contextlib.suppress(AlreadyEnqueued):
                    await task.configure(queueing_lock=f"pass:{a.account}").defer_async(
                        account=a.account, slot=0
                    )

    asyncio.run(go())


def done_passes(logs: list[Path]) -> int:
    count = 0
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"fleet.pass_done"' in line:
                count += int(json.loads(line).get("status") == "ok")
    return count


def workers(config: Path, folder: Path, n: int, accounts: int, concurrency: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `n` workers serving one queued pass of every account."""
    enqueue(config)
    logs = [folder / f"w{n}-{k}.log" for k in range(n)]
    started = time.monotonic()
    procs = []
    for log in logs:
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "worker.cli",
                        "--config",
                        str(config),
                        "worker",
                        "--tick",
                        "60",
                        "--concurrency",
                        str(concurrency),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            )
    while done_passes(logs) < accounts:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"a worker exited early; see {folder}")
        time.sleep(0.05)
    wall = time.monotonic() - started
    cpu = 0.0
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        _pid, _status, usage = os.wait4(p.pid, 0)
        p.returncode = 0
        cpu += usage.ru_utime + usage.ru_stime
    return wall, cpu


def cron_way(config: Path, names: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `callsheet run --once` process per account, each with
    a config of its own account only."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    for name in names:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "--config",
                str(config.parent / f"one-{name}.toml"),
                "run",
                "--once",
            ],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-url", required=True, help="a PostgreSQL database (its tables are created)")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4, help="passes at once per worker")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    parser.add_argument("--cron", type=int, default=50, help="accounts run the cron way (0: skip)")
    args = parser.parse_args()
    logsetup.configure("warning")
    folder = Path(tempfile.mkdtemp(prefix="callsheet-bench-fleet-"))
    config = practice(folder, args.state_url, args.accounts)
    accounts = load_accounts(config)
    fleet.ensure_schema(accounts[0])
    cold = runner.run_accounts(accounts, datetime.now(UTC))  # cold passes, in this process
    assert all(r.error is None for r in cold), [str(r.error) for r in cold if r.error][:3]
    print(f"{args.accounts} idle local-folder accounts, warm passes; {os.cpu_count()} CPUs")
    print(f"{'way':<28}{'wall s':>8}{'passes/s':>10}{'CPU ms/pass':>13}")
    for n in (int(x) for x in args.workers.split(",")):
        wall, cpu = workers(config, folder, n, args.accounts, args.concurrency)
        label = f"{n} worker(s) x {args.concurrency}"
        print(f"{label:<28}{wall:>8.2f}{args.accounts / wall:>10.1f}{cpu / args.accounts * 1000:>13.1f}")
    if args.cron:
        names = [a.account for a in accounts[: args.cron]]
        wall, cpu = cron_way(config, names)
        label = f"one process per account ({len(names)})"
        print(f"{label:<28}{wall:>8.2f}{len(names) / wall:>10.1f}{cpu / len(names) * 1000:>13.1f}")
    print(f"(logs and practice in {folder})")


if __name__ == "__main__":
    main()
