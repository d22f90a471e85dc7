#!/usr/bin/env python3
"""Benchmark a pass on a 10-year local-folder practice against the naive floor.

The naive floor parses and expands every object with icalendar + recurring-ical-events, as a
simple script would on every run. Measured in one process, reported as ratios (issue 17):

- cold pass (empty state): target <= 0.15 x the floor
- warm pass (nothing changed): target <= 0.03 x the floor
- peak memory (max RSS) of a cold pass in a child process: target < 200 MB

Each repeat times a cold pass, the floor, and a warm pass, one after the other, so that a
machine shared with other work loads all three alike; the ratios are the medians of each
repeat's own ratios. Wall time is the figure; CPU time of the same runs is shown beside it.

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


def _timed(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Wall and CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


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

        runs: dict[str, list[tuple[float, float]]] = {"floor": [], "cold": [], "warm": []}
        for _ in range(args.repeat):
            shutil.rmtree(settings.state_dir, ignore_errors=True)
            shutil.rmtree(folder / "out", ignore_errors=True)
            runs["cold"].append(_timed(lambda: run_pass(settings, now)))
            runs["floor"].append(_timed(lambda: naive_floor(folder / "calendar", window_start, window_end)))
            run_pass(settings, now)  # the reminders are settled now (connectors/vdir.py): steady state
            runs["warm"].append(_timed(lambda: run_pass(settings, now)))
        shutil.rmtree(settings.state_dir, ignore_errors=True)
        shutil.rmtree(folder / "out", ignore_errors=True)
        peak = _child_peak(config, now.isoformat())
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    machine = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    print(f"practice: {args.years} years, {args.caseload} clients at a time, {objects} objects; {machine}")
    print(f"medians of {args.repeat} repeats")
    print(f"{'figure':<32}{'seconds':>10}{'ratio to floor':>16}{'CPU ratio':>11}{'target':>10}")

    def row(label: str, name: str, target: str) -> None:
        wall = statistics.median(w for w, _ in runs[name])
        ratio = statistics.median(w / f for (w, _), (f, _) in zip(runs[name], runs["floor"], strict=True))
        cpu = statistics.median(c / f for (_, c), (_, f) in zip(runs[name], runs["floor"], strict=True))
        print(f"{label:<32}{wall:>10.3f}{ratio:>16.3f}{cpu:>11.3f}{target:>10}")

    row("naive floor (parse+expand all)", "floor", "")
    row("cold pass (empty state)", "cold", "<= 0.15")
    row("warm pass (nothing changed)", "warm", "<= 0.03")
    print(f"{'peak memory, cold pass (MiB)':<32}{peak:>10.1f}{'':>27}{'< 200':>10}")
    print(f"(this benchmark process peaked at {own:.0f} MiB)")


if __name__ == "__main__":
    main()
