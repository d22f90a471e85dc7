#!/usr/bin/env python3
"""Benchmark a pass on a 10-year local-folder practice against the naive floor.

The naive floor parses and expands every object with icalendar + recurring-ical-events, as a
simple script would on every run. Measured in the same process tree, reported as ratios:

- cold pass (empty state): target <= 0.5 x the floor
- warm pass (nothing changed): target <= 0.05 x the floor
- peak memory (max RSS) of a cold pass in a child process: target < 200 MB

    python scripts/bench_vdir.py [--years 10] [--caseload 28] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_practice import TZ_NAME, write

from worker import log
from worker.config import load_settings
from worker.runner import run_pass


def naive_floor(calendar: Path, start: datetime, end: datetime) -> int:
    """Parse and expand every object in the folder; return the number of occurrences."""
    count = 0
    for path in sorted(calendar.glob("*.ics")):
        cal = icalendar.Calendar.from_ical(path.read_bytes())
        count += len(recurring_ical_events.of(cal).between(start, end))
    return count


def _timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _child_peak(config: Path, now: str) -> float:
    code = (
        "import resource, sys\n"
        "from datetime import datetime\n"
        "from pathlib import Path\n"
        "from worker.config import load_settings\n"
        "from worker.runner import run_pass\n"
        f"run_pass(load_settings(Path({str(config)!r})), datetime.fromisoformat({now!r}))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024  # KiB -> MiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--caseload", type=int, default=28)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the practice here and keep it")
    args = parser.parse_args()
    log.configure("warning")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="callsheet-bench-"))
    try:
        objects = write(folder, args.years, args.caseload)
        config = folder / "config.toml"
        settings = load_settings(config)
        now = datetime.now(ZoneInfo(TZ_NAME)).replace(microsecond=0)
        window_start, window_end = now - timedelta(days=400), now + timedelta(days=180)

        floor = _timed(lambda: naive_floor(folder / "calendar", window_start, window_end), args.repeat)

        def cold() -> None:
            shutil.rmtree(settings.state_dir, ignore_errors=True)
            shutil.rmtree(folder / "out", ignore_errors=True)
            run_pass(settings, now)

        cold_time = _timed(cold, args.repeat)
        run_pass(settings, now)
        warm_time = _timed(lambda: run_pass(settings, now), args.repeat)
        shutil.rmtree(settings.state_dir, ignore_errors=True)
        shutil.rmtree(folder / "out", ignore_errors=True)
        peak = _child_peak(config, now.isoformat())
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    machine = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    print(f"practice: {args.years} years, {args.caseload} clients at a time, {objects} objects; {machine}")
    print(f"{'figure':<32}{'seconds':>10}{'ratio to floor':>16}{'target':>10}")
    print(f"{'naive floor (parse+expand all)':<32}{floor:>10.3f}{1.0:>16.3f}{'':>10}")
    print(f"{'cold pass (empty state)':<32}{cold_time:>10.3f}{cold_time / floor:>16.3f}{'<= 0.5':>10}")
    print(f"{'warm pass (nothing changed)':<32}{warm_time:>10.3f}{warm_time / floor:>16.3f}{'<= 0.05':>10}")
    print(f"{'peak memory, cold pass (MiB)':<32}{peak:>10.1f}{'':>16}{'< 200':>10}")
    print(f"(this benchmark process peaked at {own:.0f} MiB)")


if __name__ == "__main__":
    main()
