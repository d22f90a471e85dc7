"""Fuzzing the vdir source with broken and hostile iCalendar: never a crash, never a hang; the bad
object is skipped with a warning naming it, and the pass goes on."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.practice import Practice, local, vcalendar, vevent
from worker import log as logsetup
from worker.config import load_settings
from worker.runner import run_pass

NOW = local("2026-03-11 12:00")
GOOD = vcalendar(vevent("good-missed", "Avery Quinn no show", local("2026-03-09 10:00"))).encode()
BASE = vcalendar(
    vevent(
        "victim",
        "Blake Rowe",
        local("2026-03-04 10:00"),
        rrule="FREQ=WEEKLY;COUNT=4",
        description="line one\nline two",
    )
).encode()

HOSTILE_LINES = [
    b"RRULE:FREQ=SECONDLY",
    b"RRULE:FREQ=MINUTELY;COUNT=1000000000",
    b"RRULE:FREQ=HOURLY;COUNT=1000000000",
    b"RRULE:FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23;BYMINUTE=0,5,10,15,20,25,30,35,40,45,50,55",
    b"RRULE:FREQ=YEARLY;COUNT=1000000000",
    b"RRULE:FREQ=DAILY;UNTIL=99991231T000000Z",
    b"RRULE:HELLO",
    b"RRULE:FREQ=WEEKLY;BYDAY=XX",
    b"DTSTART:19000101T090000Z",
    b"DTSTART;TZID=Mars/Olympus:20260304T100000",
    b"DTSTART:2026-03-04",
    b"DTSTART:",
    b"DTEND:19700101T000000Z",
    b"DURATION:P-1D",
    b"EXDATE:notadate",
    b"RECURRENCE-ID:20260311T160000Z",
    b"STATUS:CANCELLED",
    b"ATTENDEE;PARTSTAT=DECLINED:mailto:",
    b"CATEGORIES:\\,\\,\\,",
    b"DESCRIPTION:" + b"x" * 200_000,
    b"SUMMARY:\xff\xfe\xfa broken bytes",
    b"BEGIN:VEVENT",
    b"END:VCALENDAR",
    b"\x00\x01\x02",
    b" folded continuation without a start",
]

mutation = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 30), st.sampled_from(HOSTILE_LINES)),
    st.tuples(st.just("delete"), st.integers(0, 30), st.just(b"")),
    st.tuples(st.just("truncate"), st.integers(0, len(BASE)), st.just(b"")),
    st.tuples(st.just("garbage"), st.integers(0, 30), st.binary(min_size=1, max_size=40)),
)


def _mutate(data: bytes, steps: list[tuple[str, int, bytes]]) -> bytes:
    lines = data.split(b"\r\n")
    for op, at, payload in steps:
        at = at % max(len(lines), 1)
        if op == "insert":
            lines.insert(max(at, 1), payload)
        elif op == "delete" and len(lines) > 1:
            del lines[at]
        elif op == "truncate":
            return b"\r\n".join(lines)[:at]
        elif op == "garbage":
            lines.insert(at, payload)
    return b"\r\n".join(lines)


@settings(
    max_examples=60,
    deadline=timedelta(seconds=20),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_objects_never_break_a_pass(
    tmp_path_factory: object, steps: list[tuple[str, int, bytes]]
) -> None:
    """Whatever the damage to one object, the pass finishes, the good object's call is found, and a
    skipped object is named in a warning."""
    root = tmp_path_factory.mktemp("fuzz")  # type: ignore[attr-defined]
    practice = Practice(Path(root))
    (practice.calendar / "good.ics").write_bytes(GOOD)
    (practice.calendar / "victim.ics").write_bytes(_mutate(BASE, steps))
    stream = io.StringIO()
    logsetup.configure("info", stream=stream, json=True)
    outcome = run_pass(load_settings(practice.config), NOW, dry_run=True)
    assert any(n.client_id == "c001" and n.reason.value == "no_show" for n in outcome.plan.needs)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    read = next(line for line in lines if line["event"] == "source.read")
    skipped = [line for line in lines if line["event"] == "source.item.skipped"]
    assert read["bad"] == len(skipped)
    assert all(line["item"] == logsetup.digest("victim.ics") for line in skipped)  # never the file name


def test_each_hostile_line_alone(tmp_path: Path) -> None:
    """Every hostile line on its own is either understood or skipped by name, within seconds."""
    practice = Practice(tmp_path)
    (practice.calendar / "good.ics").write_bytes(GOOD)
    for n, line in enumerate(HOSTILE_LINES):
        (practice.calendar / f"hostile-{n:02d}.ics").write_bytes(_mutate(BASE, [("insert", 5, line)]))
    (practice.calendar / "latin1.ics").write_bytes(
        GOOD.replace(b"Avery Quinn", "Avery Quinn é".encode("latin-1")).replace(b"good-missed", b"latin")
    )
    stream = io.StringIO()
    logsetup.configure("info", stream=stream, json=True)
    outcome = run_pass(load_settings(practice.config), NOW, dry_run=True)
    assert any(n.client_id == "c001" for n in outcome.plan.needs)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    names = {logsetup.digest(n): n for n in [f"hostile-{n:02d}.ics" for n in range(len(HOSTILE_LINES))]}
    names[logsetup.digest("latin1.ics")] = "latin1.ics"
    logged = {line["item"] for line in lines if line["event"] == "source.item.skipped"}
    assert logged <= set(names)  # a digest of the file name, never the name itself
    skipped = {names[d] for d in logged}
    # the absurd rules are refused, not expanded
    for n, line in enumerate(HOSTILE_LINES):
        if b"SECONDLY" in line or b"MINUTELY" in line or b"BYMINUTE" in line:
            assert f"hostile-{n:02d}.ics" in skipped
    assert outcome.plan.counts["bad"] == len(skipped)
