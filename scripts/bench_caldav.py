#!/usr/bin/env python3
"""Benchmark CalDAV passes on a years-long practice in Radicale, against the caldav library alone.

The practice (scripts/generate_practice.py: 10 years, over 13,000 objects by default) is laid
out as Radicale's storage folder before Radicale starts (inserting that many objects over HTTP
would take hours: each new object costs O(N)). Then, side by side, medians of --repeat runs:

- caldav alone, fetch: every object with its body, the efficient way the library offers
  (`get_objects_by_sync_token(load_objects=False)`, then `multiget` per 500 hrefs; no parsing):
  the yardstick, what a script that simply re-reads the calendar on every run pays at least.
  (`calendar.get_events()` is one REPORT, but Radicale refuses a REPORT answering more than
  10,000 VEVENTs: `[reporting] max_expand_occurrence`.)
- caldav alone, window: `calendar.search(start, end, event=True, expand=True)` over the same
  window a pass uses (client-side expansion), i.e. what a simple script would do;
- source read, cold: `CalDavSource.read` with no cursor (sync-collection listing + multigets);
- source read, warm: the same with the cursor of the previous read, nothing changed;
- pass, cold: `run_pass` with an empty state and empty reminder calendars (reads, plans, writes);
- pass, warm: `run_pass` again, nothing changed.

Ratios are to the naive floor: fetch every object as above, then parse and expand each one
with icalendar + recurring-ical-events over the pass window (what a simple script pays on
every run). Requests are counted on DAVClient.request (the library) and Transport.exchange (ours).

    python scripts/bench_caldav.py [--years 10] [--caseload 28] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import http.client
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
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

    DAVClient.request = counting  # type: ignore[method-assign]
    exchange = Transport.exchange

    def counted(self: Transport, method: str, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        REQUESTS[method] += 1
        return exchange(self, method, url, body, headers)

    Transport.exchange = counted  # type: ignore[method-assign]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_radicale(storage: Path, port: int) -> subprocess.Popen[bytes]:
    with (storage.parent / "radicale.log").open("ab") as logfile:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "radicale",
                "--server-hosts",
                f"127.0.0.1:{port}",
                "--storage-filesystem-folder",
                str(storage),
                "--auth-type",
                "none",
                "--logging-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=logfile,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("OPTIONS", "/")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()
    proc.terminate()
    raise SystemExit("Radicale did not start")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--caseload", type=int, default=28)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", default="120s", help="per-request timeout of the connector")
    parser.add_argument("--keep", type=Path, help="write the practice and storage here and keep them")
    args = parser.parse_args()
    log.configure("warning")
    _count_requests()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="callsheet-bench-caldav-"))
    proc = None
    try:
        began = time.perf_counter()
        objects = write(folder, args.years, args.caseload)
        _add_timezones(folder / "calendar")
        storage = folder / "radicale"
        write_radicale(storage, folder / "calendar", user=USER, name="practice")
        port = _free_port()
        proc = _start_radicale(storage, port)
        config = _configure(folder, port, args.timeout)
        settings = load_settings(config)
        now = datetime.now(ZoneInfo(TZ_NAME)).replace(microsecond=0)
        window = window_for(settings, now)
        url = f"http://127.0.0.1:{port}/{USER}/practice/"
        client = DAVClient(url=url, timeout=600)
        calendar = client.calendar(url=url)  # type: ignore[no-untyped-call]

        def fetch_all() -> int:
            hrefs = [o.url for o in calendar.get_objects_by_sync_token(load_objects=False)]
            return sum(len(calendar.multiget(hrefs[i : i + 500])) for i in range(0, len(hrefs), 500))

        # Radicale builds its item cache and sync history on first use: not ours to time
        fetched = fetch_all()
        setup = time.perf_counter() - began

        def naive_floor() -> int:
            # what a simple script pays on every run: fetch everything, parse and expand it all
            hrefs = [o.url for o in calendar.get_objects_by_sync_token(load_objects=False)]
            count = 0
            for i in range(0, len(hrefs), 500):
                for obj in calendar.multiget(hrefs[i : i + 500]):
                    parsed = icalendar.Calendar.from_ical(obj.data)
                    count += len(recurring_ical_events.of(parsed).between(window.start, window.end))
            return count

        rows: list[tuple[str, float, float]] = []
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
        written = run_pass(settings, now).counts
        rows.append(("pass, warm (nothing changed)", *_timed(lambda: run_pass(settings, now), args.repeat)))
        client.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    base = rows[0][1]
    machine = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    print(
        f"practice: {args.years} years, {args.caseload} clients at a time, {objects} objects "
        f"({fetched} fetched by caldav); {occurrences} occurrences in the pass window; {machine}"
    )
    print(f"setup (generate, lay out storage, start Radicale, let it build its caches): {setup:.1f} s")
    print(f"{'figure':<34}{'seconds':>10}{'ratio':>9}{'requests':>10}")
    for name, seconds, requests in rows:
        print(f"{name:<34}{seconds:>10.3f}{seconds / base:>9.3f}{requests:>10.0f}")
    print(
        f"(ratio = seconds / '{rows[0][0]}'; median of {args.repeat}; "
        f"the last warm pass: {dict(written) or 'nothing written'})"
    )


if __name__ == "__main__":
    main()
