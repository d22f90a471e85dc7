"""Fuzzing the CalDAV source: the vdir fuzzer's broken and hostile iCalendar, stored raw in a
Radicale calendar next to a good appointment. Whatever the server agrees to store, a pass never
crashes or hangs, the good appointment's call is found, a skipped object is named by its href
path in a warning, and no client data reaches the log.

Radicale refuses much of this input (HTTP 400); a refused object has nothing to test and the
example is dropped. A few inputs make Radicale itself spin (a second RRULE with COUNT=10^9: it
checks the count of the first rule only, then expands them all); such a PUT times out, the
server is restarted and the example dropped.
"""

from __future__ import annotations

import http.client
import io
import json
import threading
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import DavCollection, DavPractice, DavServer
from tests.integration.test_caldav_passes import NAMES
from tests.integration.test_fuzz_sources import BASE, GOOD, HOSTILE_LINES, _mutate, mutation
from tests.practice import local, vcalendar, vevent
from worker import log as logsetup
from worker.config import load_settings
from worker.runner import PassOutcome, run_pass

NOW = local("2026-03-11 12:00")
# the vdir fuzzer's victim is a weekly series with a description; this one is a plain one-off
# inside the window (so that an inserted RRULE or DESCRIPTION is not a duplicate Radicale refuses)
ONE_OFF = vcalendar(vevent("victim", "Blake Rowe", local("2026-03-10 10:00"))).encode()
# nothing of the objects' text may reach the log
SECRETS = (*NAMES, "line one", "line two", "broken bytes", "x" * 40)
PUT_TIMEOUT = 3.0  # seconds; Radicale answers a PUT in well under one
PASS_LIMIT = 30.0  # seconds; a pass over two objects takes a fraction of one


def _put_raw(collection: DavCollection, name: str, body: bytes) -> int | None:
    """PUT `body` as it is; the status, or None when Radicale did not answer in time."""
    conn = http.client.HTTPConnection("127.0.0.1", collection.server.port, timeout=PUT_TIMEOUT)
    try:
        conn.request(
            "PUT", f"{collection.path}{name}.ics", body, {"Content-Type": "text/calendar; charset=utf-8"}
        )
        response = conn.getresponse()
        response.read()
        return response.status
    except TimeoutError:
        return None
    finally:
        conn.close()


def _store(dp: DavPractice, name: str, body: bytes) -> bool:
    """Store one object raw in the source; False when the server would not (it is then running again)."""
    status = _put_raw(dp.source, name, body)
    if status is None:  # Radicale is stuck expanding: restart it (same port, same storage)
        server = dp.source.server
        assert server.proc is not None
        server.proc.kill()  # by its own pid; SIGTERM would wait for the spinning request
        server.proc.wait(timeout=10)
        server.proc = None
        server.start()
        server._request("DELETE", f"{dp.source.path}{name}.ics")  # in case it got stored
        return False
    return status in (200, 201, 204)


def _bounded_pass(dp: DavPractice) -> tuple[PassOutcome, list[dict[str, object]], str]:
    """A dry-run pass in a thread that must end within PASS_LIMIT: the outcome and the log lines."""
    stream = io.StringIO()
    logsetup.configure("info", stream=stream, json=True)
    result: list[PassOutcome] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(run_pass(load_settings(dp.config), NOW, dry_run=True))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread, which raises it
            failure.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(PASS_LIMIT)
    assert not worker.is_alive(), f"the pass hung (still running after {PASS_LIMIT}s)"
    if failure:
        raise failure[0]
    text = stream.getvalue()
    return result[0], [json.loads(line) for line in text.splitlines()], text


def _assert_pass_survived(
    outcome: PassOutcome, lines: list[dict[str, object]], text: str, victims: set[str]
) -> list[str]:
    """Check the good call is found, skips are counted and named by href path, and no text leaks.

    Returns:
        The href paths of the skipped objects.
    """
    assert any(n.client_id == "c001" and n.reason.value == "no_show" for n in outcome.plan.needs)
    read = next(line for line in lines if line["event"] == "source.read")
    # logs carry a digest of the href (it may name a client); map it back to the victim's href
    by_digest = {logsetup.digest(v): v for v in victims}
    logged = [str(line["item"]) for line in lines if line["event"] == "source.item.skipped"]
    assert read["bad"] == len(logged) == outcome.plan.counts["bad"]
    assert set(logged) <= set(by_digest), logged
    skipped = [by_digest[d] for d in logged]
    assert not [s for s in SECRETS if s in text]
    return skipped


@pytest.fixture
def source(
    dav_server_factory: Callable[..., DavServer], dav_practice: Callable[..., DavPractice]
) -> DavPractice:
    """A practice on a private Radicale (restartable) whose source calendar holds the good object."""
    dp = dav_practice(dav_server_factory("radicale"))
    assert _store(dp, "good", GOOD)
    return dp


@pytest.mark.slow
@settings(
    max_examples=30,
    deadline=None,  # a hang is caught by _bounded_pass; a server restart may take seconds
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(base=st.sampled_from([BASE, ONE_OFF]), steps=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_objects_never_break_a_pass(
    source: DavPractice, base: bytes, steps: list[tuple[str, int, bytes]]
) -> None:
    """Whatever the damage to one stored object, the pass finishes, the good object's call is found,
    and a skipped object is named by href path in a warning without any of its text."""
    dp = source
    stored = _store(dp, "victim", _mutate(base, steps))
    try:
        assume(stored)
        outcome, lines, text = _bounded_pass(dp)
        skipped = _assert_pass_survived(outcome, lines, text, {f"{dp.source.path}victim.ics"})
        event("victim skipped" if skipped else "victim read")
    finally:
        if stored:
            dp.source.delete("victim")


def test_each_hostile_line_alone(source: DavPractice) -> None:
    """Every hostile line Radicale stores is understood or skipped by href path, and absurd rules are refused."""
    dp = source
    stored: dict[str, bytes] = {}
    for base_name, base in (("series", BASE), ("one-off", ONE_OFF)):
        for n, line in enumerate(HOSTILE_LINES):
            name = f"hostile-{base_name}-{n:02d}"
            if _store(
                dp, name, _mutate(base.replace(b"UID:victim", f"UID:{name}".encode()), [("insert", 5, line)])
            ):
                stored[f"{dp.source.path}{name}.ics"] = line
    assert len(stored) >= 10, "Radicale stored too few of the hostile objects to tell anything"
    outcome, lines, text = _bounded_pass(dp)
    skipped = set(_assert_pass_survived(outcome, lines, text, set(stored)))
    for path, line in stored.items():
        if b"SECONDLY" in line or b"MINUTELY" in line or b"BYMINUTE" in line:
            assert path in skipped, path
