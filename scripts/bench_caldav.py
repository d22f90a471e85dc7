#!/usr/bin/env python3
"""Benchmark CalDAV passes on a practice in Radicale, against vdirsyncer and the caldav library.

For each --years (default 1 and 10) the practice (scripts/generate_practice.py: 28 clients at a
time; 10 years is over 13,000 objects) is laid out as Radicale's storage folder before Radicale
starts (inserting that many objects over HTTP would take hours: each new object costs O(N)).

**Whole processes, against vdirsyncer** (the issue's targets: callsheet warm <= 0.5x and cold
<= 1.5x vdirsyncer). Each round runs, one after the other on the same Radicale:

- vdirsyncer cold: `vdirsyncer discover` + `vdirsyncer sync` of a pair (the practice calendar as a
  caldav storage, an empty folder as a filesystem storage), with an empty status folder: every
  object is listed, downloaded and written to the folder;
- callsheet cold: `callsheet run --once` with empty state and two fresh (empty) reminder
  calendars: start-up, read every object, plan, write the reminders;
- vdirsyncer warm: `vdirsyncer sync` again, nothing changed;
- callsheet warm: `callsheet run --once` again, nothing changed.

Each is its own process started from this venv (vdirsyncer from the `bench` extra: `make bench`),
timed from start to exit (wall) with its CPU time (user + sys) and Radicale's CPU time meanwhile
(from /proc: nothing else talks to this Radicale). The ratios are callsheet over vdirsyncer in
the same round; the table shows medians of --repeat rounds and their range. On a shared, busy
machine wall time swings with the load; the CPU ratio (client + server CPU seconds) does not.

**In process** (`--library`, on by default), medians of --repeat runs, ratio to the naive floor:

- naive floor: every object fetched with the caldav library (`get_objects_by_sync_token`, then
  `multiget` per 500 hrefs), then parsed and expanded with icalendar + recurring-ical-events
  over the pass window (what a simple script pays on every run);
- caldav alone, fetch: the same without parsing;
- caldav alone, window: `calendar.search(start, end, event=True, expand=True)` over the pass
  window (Radicale refuses a REPORT answering more than 10,000 VEVENTs);
- source read, cold / warm: `CalDavSource.read` with no cursor / with the previous cursor;
- pass, cold / warm: `run_pass` with empty state and reminder calendars / again.

Requests are counted on DAVClient.request (the library) and Transport.exchange (ours).

    python scripts/bench_caldav.py [--years 1,10] [--caseload 28] [--repeat 3] [--no-library] [--keep DIR]
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import icalendar  # noqa: E402
import recurring_ical_events  # noqa: E402
from caldav.davclient import DAVClient  # noqa: E402
from generate_practice import TZ_NAME, write, write_radicale  # noqa: E402

from connectors.caldav import CalDavSource  # noqa: E402
from tests.servers import free_port, start_radicale  # noqa: E402
from worker import log  # noqa: E402
from worker.config import load_settings  # noqa: E402
from worker.runner import run_pass, window_for  # noqa: E402

USER = "therapist"
REQUESTS: Counter[str] = Counter()
# Calendar apps store a VTIMEZONE in every object; the generator leaves it out. Without one,
# Radicale (vobject) synthesises it from pytz on first read, about 0.1 s per object.
VTIMEZONE = (
    "BEGIN:VTIMEZONE\r\nTZID:America/Chicago\r\n"
    "BEGIN:DAYLIGHT\r\nTZOFFSETFROM:-0600\r\nTZOFFSETTO:-0500\r\nTZNAME:CDT\r\n"
    "DTSTART:20070311T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\nEND:DAYLIGHT\r\n"
    "BEGIN:STANDARD\r\nTZOFFSETFROM:-0500\r\nTZOFFSETTO:-0600\r\nTZNAME:CST\r\n"
    "DTSTART:20071104T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\nEND:STANDARD\r\n"
    "END:VTIMEZONE\r\n"
)


def _add_timezones(calendar: Path) -> None:
    for path in calendar.glob("*.ics"):
        text = path.read_text(encoding="utf-8")
        if "BEGIN:VTIMEZONE" not in text:
            path.write_text(text.replace("BEGIN:VEVENT", VTIMEZONE + "BEGIN:VEVENT", 1), encoding="utf-8")


def _count_requests() -> None:
    """Count the caldav library's requests (the yardstick) and the connector's (Transport.exchange)."""
    from connectors.caldav.transport import Answer, Transport

    original = DAVClient.request

    def counting(self: DAVClient, url: Any, method: str = "GET", *args: Any, **kwargs: Any) -> Any:
        REQUESTS[method] += 1
        return original(self, url, method, *args, **kwargs)

    DAVClient.request = counting  # type: ignore[method-assign, unused-ignore]
    exchange = Transport.exchange

    def counted(self: Transport, method: str, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        REQUESTS[method] += 1
        return exchange(self, method, url, body, headers)

    Transport.exchange = counted  # type: ignore[method-assign]


def _start_radicale(storage: Path, port: int) -> subprocess.Popen[bytes]:
    # vdirsyncer asks for every object in one calendar-multiget; Radicale refuses a REPORT
    # holding more than 10,000 VEVENTs unless told otherwise
    try:
        return start_radicale(storage, port, ["--reporting-max-expand-occurrence", "1000000"])
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


def _mkcalendar(port: int, name: str, component: str) -> str:
    path = f"/{USER}/{name}/"
    body = (
        '<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" '
        'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
        f'<C:supported-calendar-component-set><C:comp name="{component}"/>'
        "</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("MKCALENDAR", path, body=body.encode(), headers={"Content-Type": "application/xml"})
        response = conn.getresponse()
        response.read()
        if response.status not in (200, 201):
            raise SystemExit(f"MKCALENDAR {path}: HTTP {response.status}")
    finally:
        conn.close()
    return f"http://127.0.0.1:{port}{path}"


def _configure(folder: Path, port: int, timeout: str) -> Path:
    """Point the generated practice at Radicale: fresh reminder calendars, fresh state."""
    config = folder / "config.toml"
    text = config.read_text(encoding="utf-8")
    head = text.split("[source]")[0]
    tag = uuid.uuid4().hex[:8]
    events = _mkcalendar(port, f"calls-{tag}", "VEVENT")
    tasks = _mkcalendar(port, f"call-tasks-{tag}", "VTODO")
    config.write_text(
        head
        + f'[source]\nkind = "caldav"\nurl = "http://127.0.0.1:{port}/{USER}/practice/"\ntimeout = "{timeout}"\n\n'
        + f'[reminders]\nkind = "caldav"\nevents_url = "{events}"\ntasks_url = "{tasks}"\n',
        encoding="utf-8",
    )
    shutil.rmtree(folder / "var", ignore_errors=True)
    return config


def _timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median seconds and median request count of `repeat` runs."""
    times, counts = [], []
    for _ in range(repeat):
        REQUESTS.clear()
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
        counts.append(sum(REQUESTS.values()))
    return statistics.median(times), statistics.median(counts)


# -- whole processes ---------------------------------------------------------------------------

BIN = Path(sys.executable).parent


@dataclass(frozen=True, slots=True)
class Run:
    """One process: wall seconds from start to exit, its CPU seconds (user + sys), and the CPU
    seconds Radicale spent meanwhile (serving it: nothing else talks to this Radicale)."""

    wall: float
    cpu: float
    server: float = 0.0

    def __add__(self, other: Run) -> Run:
        return Run(self.wall + other.wall, self.cpu + other.cpu, self.server + other.server)


SERVER_PID = 0  # Radicale's process, whose CPU time /proc tells


def _server_cpu() -> float:
    """Radicale's CPU seconds so far (user + sys, all threads); 0 where /proc is not there."""
    try:
        fields = Path(f"/proc/{SERVER_PID}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Both run as installed: bytecode compiled (pip compiles vdirsyncer's at install; callsheet's own
# modules are compiled by _compile_project, and a PYTHONDONTWRITEBYTECODE=1 in the environment
# would otherwise make each callsheet process compile them from source: ~0.1 s).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _compile_project() -> None:
    import compileall

    for package in ("worker", "connectors"):
        compileall.compile_dir(str(ROOT / package), quiet=1)


def _process(argv: list[str], logfile: Path, cwd: Path) -> Run:
    """Run one command to its end, output appended to `logfile`; SystemExit when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = _server_cpu()
    with logfile.open("ab") as out:
        began = time.perf_counter()
        code = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cwd, env=ENV, check=False
        )
        wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:1] + argv[-2:])} exited {code.returncode}; see {logfile}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, _server_cpu() - served)


def _vdirsyncer_config(home: Path, url: str) -> Path:
    """A vdirsyncer pair: the practice calendar (caldav) into an empty folder (filesystem)."""
    shutil.rmtree(home, ignore_errors=True)
    (home / "local").mkdir(parents=True)
    config = home / "config"
    config.write_text(
        f'[general]\nstatus_path = "{home / "status"}/"\n\n'
        '[pair practice]\na = "practice_remote"\nb = "practice_local"\ncollections = null\n\n'
        f'[storage practice_remote]\ntype = "caldav"\nurl = "{url}"\n\n'
        f'[storage practice_local]\ntype = "filesystem"\npath = "{home / "local"}/"\nfileext = ".ics"\n',
        encoding="utf-8",
    )
    return config


@dataclass(slots=True)
class Rounds:
    """The four whole-process figures of every round."""

    vdirsyncer_cold: list[Run] = field(default_factory=list)
    callsheet_cold: list[Run] = field(default_factory=list)
    vdirsyncer_warm: list[Run] = field(default_factory=list)
    callsheet_warm: list[Run] = field(default_factory=list)
    python: list[Run] = field(default_factory=list)  # `python -c pass`: the floor of any process


def _rounds(folder: Path, port: int, timeout: str, repeat: int) -> tuple[Rounds, int]:
    """`repeat` rounds of vdirsyncer and callsheet, cold then warm; and the files vdirsyncer wrote."""
    url = f"http://127.0.0.1:{port}/{USER}/practice/"
    logfile = folder / "processes.log"
    vdirsyncer = str(BIN / "vdirsyncer")
    if not Path(vdirsyncer).exists():
        raise SystemExit("vdirsyncer is not installed in this venv: `make bench` installs the bench extra")
    callsheet = [str(BIN / "callsheet")]
    _compile_project()
    out = Rounds()
    synced = 0
    for _ in range(repeat):
        home = folder / "vdirsyncer"
        vconf = _vdirsyncer_config(home, url)
        discover = _process([vdirsyncer, "-c", str(vconf), "discover"], logfile, folder)
        first = _process([vdirsyncer, "-c", str(vconf), "sync"], logfile, folder)
        out.vdirsyncer_cold.append(discover + first)
        synced = len(list((home / "local").glob("*.ics")))
        config = _configure(folder, port, timeout)  # empty state, fresh reminder calendars
        out.callsheet_cold.append(
            _process([*callsheet, "--config", str(config), "run", "--once"], logfile, folder)
        )
        out.vdirsyncer_warm.append(_process([vdirsyncer, "-c", str(vconf), "sync"], logfile, folder))
        out.callsheet_warm.append(
            _process([*callsheet, "--config", str(config), "run", "--once"], logfile, folder)
        )
        out.python.append(_process([sys.executable, "-c", "pass"], logfile, folder))
    return out, synced


# -- one practice ------------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    years: int
    objects: int
    occurrences: int
    synced: int
    setup: float
    rounds: Rounds
    rows: list[tuple[str, float, float]]  # in process: (figure, seconds, requests)
    written: dict[str, int]


def _practice(args: argparse.Namespace, years: int) -> Result:
    folder = (
        (args.keep / f"{years}y") if args.keep else Path(tempfile.mkdtemp(prefix="callsheet-bench-caldav-"))
    )
    proc = None
    try:
        began = time.perf_counter()
        objects = write(folder, years, args.caseload)
        _add_timezones(folder / "calendar")
        storage = folder / "radicale"
        shutil.rmtree(storage, ignore_errors=True)
        write_radicale(storage, folder / "calendar", user=USER, name="practice")
        port = free_port()
        proc = _start_radicale(storage, port)
        global SERVER_PID
        SERVER_PID = proc.pid
        now = datetime.now(ZoneInfo(TZ_NAME)).replace(microsecond=0)
        url = f"http://127.0.0.1:{port}/{USER}/practice/"
        client = DAVClient(url=url, timeout=600)
        calendar = client.calendar(url=url)  # type: ignore[no-untyped-call, unused-ignore]

        def fetch_all() -> int:
            hrefs = [o.url for o in calendar.get_objects_by_sync_token(load_objects=False)]
            return sum(len(calendar.multiget(hrefs[i : i + 500])) for i in range(0, len(hrefs), 500))

        # Radicale builds its item cache and sync history on first use: not ours to time
        fetch_all()
        setup = time.perf_counter() - began
        rounds, synced = _rounds(folder, port, args.timeout, args.repeat)
        rows: list[tuple[str, float, float]] = []
        occurrences = 0
        written: dict[str, int] = {}
        if args.library:
            occurrences, written = _in_process(args, folder, port, calendar, fetch_all, rows, now)
        client.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return Result(years, objects, occurrences, synced, setup, rounds, rows, written)


def _in_process(
    args: argparse.Namespace,
    folder: Path,
    port: int,
    calendar: Any,
    fetch_all: Callable[[], int],
    rows: list[tuple[str, float, float]],
    now: datetime,
) -> tuple[int, dict[str, int]]:
    """The in-process figures (appended to `rows`); the occurrences in the window, the last warm counts."""
    config = _configure(folder, port, args.timeout)
    settings = load_settings(config)
    window = window_for(settings, now)

    def naive_floor() -> int:
        # what a simple script pays on every run: fetch everything, parse and expand it all
        hrefs = [o.url for o in calendar.get_objects_by_sync_token(load_objects=False)]
        count = 0
        for i in range(0, len(hrefs), 500):
            for obj in calendar.multiget(hrefs[i : i + 500]):
                parsed = icalendar.Calendar.from_ical(obj.data)
                count += len(recurring_ical_events.of(parsed).between(window.start, window.end))
        return count

    rows.append(("naive floor: fetch+parse+expand", *_timed(naive_floor, args.repeat)))
    rows.append(("caldav alone, fetch", *_timed(fetch_all, args.repeat)))
    occurrences = len(calendar.search(start=window.start, end=window.end, event=True, expand=True))
    rows.append(
        (
            "caldav alone, window",
            *_timed(
                lambda: calendar.search(start=window.start, end=window.end, event=True, expand=True),
                args.repeat,
            ),
        )
    )
    cursor: dict[str, object] = {}

    def read_cold() -> None:
        source = CalDavSource(settings, settings.source)
        try:
            cursor.clear()
            cursor.update(source.read(window, None).cursor)
        finally:
            source.close()

    def read_warm() -> None:
        source = CalDavSource(settings, settings.source)
        try:
            batch = source.read(window, dict(cursor))
            assert not batch.changed and not batch.removed, "the calendar changed during the benchmark"
        finally:
            source.close()

    rows.append(("source read, cold", *_timed(read_cold, args.repeat)))
    rows.append(("source read, warm", *_timed(read_warm, args.repeat)))

    def pass_cold() -> None:
        fresh = load_settings(_configure(folder, port, args.timeout))
        run_pass(fresh, now)

    rows.append(("pass, cold (writes reminders)", *_timed(pass_cold, args.repeat)))
    settings = load_settings(config)
    written = dict(run_pass(settings, now).counts)
    rows.append(("pass, warm (nothing changed)", *_timed(lambda: run_pass(settings, now), args.repeat)))
    return occurrences, written


# -- the report --------------------------------------------------------------------------------


def _median(runs: list[Run], what: str = "wall") -> float:
    return float(statistics.median(float(getattr(r, what)) for r in runs))


def _ratios(ours: list[Run], theirs: list[Run], what: str = "wall") -> list[float]:
    """Per-round ratios of wall time, or (what="cpu") of the client's plus the server's CPU time."""

    def cost(run: Run) -> float:
        return run.wall if what == "wall" else run.cpu + run.server

    return [cost(a) / cost(b) for a, b in zip(ours, theirs, strict=True)]


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def _report(result: Result, repeat: int) -> None:
    r = result.rounds
    print(
        f"\n== {result.years} year(s): {result.objects} objects ({result.synced} synced by vdirsyncer); "
        f"{result.occurrences or '-'} occurrences in the pass window; setup {result.setup:.1f} s"
    )
    print(
        f"{'whole process':<44}{'wall s':>8}{'range':>14}{'CPU s':>8}{'server':>8}{'ratio':>7}{'range':>12}"
        f"{'CPU ratio':>10}"
    )
    cold, warm = _ratios(r.callsheet_cold, r.vdirsyncer_cold), _ratios(r.callsheet_warm, r.vdirsyncer_warm)
    cpu_cold = _ratios(r.callsheet_cold, r.vdirsyncer_cold, "cpu")
    cpu_warm = _ratios(r.callsheet_warm, r.vdirsyncer_warm, "cpu")
    lines = [
        ("vdirsyncer cold: discover + first sync", r.vdirsyncer_cold, [], []),
        ("callsheet cold: run --once, empty state", r.callsheet_cold, cold, cpu_cold),
        ("vdirsyncer warm: sync, nothing changed", r.vdirsyncer_warm, [], []),
        ("callsheet warm: run --once, nothing changed", r.callsheet_warm, warm, cpu_warm),
        ("python -c pass (any process's floor)", r.python, [], []),
    ]
    for name, runs, ratios, cpus in lines:
        walls = [x.wall for x in runs]
        tail = (
            f"{statistics.median(ratios):>7.2f}{_span(ratios):>12}{statistics.median(cpus):>10.2f}"
            if ratios
            else ""
        )
        print(
            f"{name:<44}{_median(runs):>8.3f}{_span(walls):>14}{_median(runs, 'cpu'):>8.3f}"
            f"{_median(runs, 'server'):>8.3f}{tail}"
        )
    print(
        f"(median of {repeat} rounds; ratio = callsheet / vdirsyncer wall time of the same round; "
        "server = Radicale's CPU seconds meanwhile; CPU ratio = the same of CPU + server)"
    )
    if result.rows:
        base = result.rows[0][1]
        print(f"{'in process':<44}{'seconds':>8}{'ratio':>14}{'requests':>10}")
        for name, seconds, requests in result.rows:
            print(f"{name:<44}{seconds:>8.3f}{seconds / base:>14.3f}{requests:>10.0f}")
        print(
            f"(ratio = seconds / '{result.rows[0][0]}'; median of {repeat}; "
            f"the last warm pass: {result.written or 'nothing written'})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--years", default="1,10", help="comma-separated practice lengths (default 1,10)")
    parser.add_argument("--caseload", type=int, default=28)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", default="120s", help="per-request timeout of the connector")
    parser.add_argument(
        "--library",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the in-process figures (caldav library, source reads, run_pass)",
    )
    parser.add_argument("--keep", type=Path, help="write the practices and storage here and keep them")
    args = parser.parse_args()
    years = [int(y) for y in str(args.years).split(",") if y.strip()]
    log.configure("warning")
    _count_requests()
    machine = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    print(f"{machine}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start")
    results = []
    for n in years:
        results.append(_practice(args, n))
        _report(results[-1], args.repeat)
    print("\n== summary: callsheet / vdirsyncer, whole processes, medians of per-round ratios")
    print(
        f"{'years':>5}{'objects':>9}{'cold':>7}{'range':>12}{'target':>8}{'warm':>7}{'range':>12}{'target':>8}"
        f"{'CPU cold':>10}{'CPU warm':>10}"
    )
    for res in results:
        rr = res.rounds
        cold, warm = (
            _ratios(rr.callsheet_cold, rr.vdirsyncer_cold),
            _ratios(rr.callsheet_warm, rr.vdirsyncer_warm),
        )
        cpu_cold = statistics.median(_ratios(rr.callsheet_cold, rr.vdirsyncer_cold, "cpu"))
        cpu_warm = statistics.median(_ratios(rr.callsheet_warm, rr.vdirsyncer_warm, "cpu"))
        print(
            f"{res.years:>5}{res.objects:>9}{statistics.median(cold):>7.2f}{_span(cold):>12}{'<= 1.5':>8}"
            f"{statistics.median(warm):>7.2f}{_span(warm):>12}{'<= 0.5':>8}{cpu_cold:>10.2f}{cpu_warm:>10.2f}"
        )
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
