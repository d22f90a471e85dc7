"""Chaos between callsheet and Radicale: 200 passes through a proxy that fails about a quarter of
the requests at random (seeded): dropped connections before and after the server acted, 500s,
answers held past the client timeout, truncated and cut-off bodies. The practice changes along
the way (bookings, a no-show, the therapist deleting a reminder and completing a task on the
server, thirteen days going by). A pass may fail (exit 1) but never crashes; afterwards one
clean pass leaves exactly what a fault-free twin of the practice holds: one item per due need,
no duplicates, every tombstone kept, state and server in agreement.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import icalendar
import pytest

from tests.integration.conftest import CHAOS_KINDS, DavPractice, DavServer, FaultProxy
from tests.integration.test_caldav_faults import assert_one_item_per_need
from tests.integration.test_caldav_passes import CLIENTS, NAMES, NOW, due_needs, load_practice
from tests.practice import local, vevent
from worker.identity import file_name


@pytest.fixture(autouse=True)
def two_attempts(fast_retries: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Short retries, and only two attempts per request, so that whole passes fail now and then."""
    import connectors.caldav.transport as module

    monkeypatch.setattr(module, "RETRY", replace(module.RETRY, attempts=2))


PASSES = 200
START = local("2026-03-11 12:00")
STEP = timedelta(minutes=95)  # 200 passes: Wed 11 March noon to Tue 24 March 15:05
SEED = 20260311
FAULT_RATE = 0.25
# how often each fault kind is chosen (a "slow" one costs a whole client timeout)
WEIGHTS = {"drop": 4, "drop_after": 3, "500": 4, "slow": 1, "truncate": 3, "cut": 3}

# what happens to the appointments, by pass (the same in both practices)
SOURCE_CHANGES: dict[int, Callable[[DavPractice], object]] = {
    # Emery books again: the not-rebooked call resolves
    40: lambda dp: dp.add("emery-next", vevent("emery-next", "Emery Stone", local("2026-03-18 11:00"))),
    # Cameron's 17 March session is marked a no-show
    100: lambda dp: dp.add(
        "cameron-next", vevent("cameron-next", "Cameron Tate no show", local("2026-03-17 10:00"))
    ),
    # Emery is booked over Avery's 31 March session (a double booking) ...
    110: lambda dp: dp.add("emery-clash", vevent("emery-clash", "Emery Stone", local("2026-03-31 10:30"))),
    # ... and moved away before the call's (future) event comes round: it is withdrawn
    115: lambda dp: dp.add("emery-clash", vevent("emery-clash", "Emery Stone", local("2026-04-01 14:00"))),
}


def _clash_on(dp: DavPractice, n: int) -> None:
    dp.add(f"clash-{n}", vevent(f"clash-{n}", "Emery Stone", local("2026-03-31 10:20")))


def _clash_off(dp: DavPractice, n: int) -> None:
    dp.remove(f"clash-{n}")


# Then, for churn (writes to fail), a booking over Avery's 31 March session comes and goes every
# six passes: each time a new double-booking call is written, then withdrawn.
for _at in range(130, 194, 6):
    SOURCE_CHANGES[_at] = functools.partial(_clash_on, n=_at)
    SOURCE_CHANGES[_at + 3] = functools.partial(_clash_off, n=_at)

DELETE_EVENT_AT = 25  # the therapist deletes Avery's no-show event on the server
COMPLETE_TASK_AT = 60  # the therapist completes Blake's cancelled-not-rebooked task on the server

CRASH_SIGNS = ("Traceback", "unexpected error", "command.crashed")


@dataclass
class RandomFaults:
    """The proxy's chooser: about `rate` of the requests get a fault, picked by WEIGHTS."""

    rng: random.Random
    rate: float
    on: bool = True

    def __call__(self, method: str, path: str) -> str:
        if not self.on or self.rng.random() >= self.rate:
            return ""
        return self.rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]


@dataclass(frozen=True)
class Item:
    """One object with our key on the server, read directly (not through the proxy)."""

    name: str
    kind: str
    key: str
    client: str
    reason: str
    status: str
    start: datetime | None


def server_items(dp: DavPractice) -> list[Item]:
    """Every object in the events and tasks collections, straight from Radicale."""
    out = []
    for collection, comp_name, kind, when in (
        (dp.events, "VEVENT", "event", "DTSTART"),
        (dp.tasks, "VTODO", "task", "DUE"),
    ):
        for name, data in collection.objects().items():
            for comp in icalendar.Calendar.from_ical(data).walk(comp_name):
                status = str(comp.get("STATUS", "")).upper()
                start = getattr(comp.get(when), "dt", None)
                out.append(
                    Item(
                        name=name,
                        kind=kind,
                        key=str(comp["X-CALLSHEET-KEY"]),
                        client=str(comp["X-CALLSHEET-CLIENT"]),
                        reason=str(comp["X-CALLSHEET-REASON"]),
                        status="completed" if status == "COMPLETED" or "COMPLETED" in comp else "open",
                        start=start,
                    )
                )
    return out


def state_rows(dp: DavPractice) -> dict[tuple[str, str], tuple[str, str, datetime]]:
    """state.db reminders: {(key, kind): (status, ref, updated_at)}."""
    with sqlite3.connect(dp.practice.root / "var" / "state.db") as db:
        rows = db.execute("SELECT key, kind, status, ref, updated_at FROM reminders").fetchall()
    return {(k, kind): (status, ref, datetime.fromisoformat(at)) for k, kind, status, ref, at in rows}


def delete_event(dp: DavPractice, client: str, reason: str) -> str | None:
    """The therapist deletes our event for (client, reason) in her calendar app; its key, if found."""
    for item in server_items(dp):
        if item.kind == "event" and (item.client, item.reason) == (client, reason):
            dp.events.delete(item.name.removesuffix(".ics"))
            return item.key
    return None


def complete_task(dp: DavPractice, client: str, reason: str) -> str | None:
    """The therapist ticks off our open task for (client, reason); its key, if found."""
    for item in server_items(dp):
        if item.kind == "task" and item.status == "open" and (item.client, item.reason) == (client, reason):
            name = item.name.removesuffix(".ics")
            calendar = icalendar.Calendar.from_ical(dp.tasks.get(name))
            for todo in calendar.walk("VTODO"):
                todo.pop("STATUS", None)
                todo.add("status", "COMPLETED")
                todo.add("completed", datetime.now(UTC))
            dp.tasks.put(name, calendar.to_ical())
            return item.key
    return None


@dataclass
class Run:
    """One practice going through the timeline, with what the therapist did and what was seen."""

    dp: DavPractice
    deleted: tuple[int, str] | None = None  # (pass, key) of the event the therapist deleted
    completed: tuple[int, str] | None = None  # (pass, key) of the task the therapist completed
    seen: list[list[Item]] = field(default_factory=list)  # the server's items after each pass
    exits: Counter[int] = field(default_factory=Counter)

    def before_pass(self, i: int) -> None:
        if i in SOURCE_CHANGES:
            SOURCE_CHANGES[i](self.dp)
        if self.deleted is None and i >= DELETE_EVENT_AT:
            key = delete_event(self.dp, "c001", "no_show")
            self.deleted = (i, key) if key else None
        if self.completed is None and i >= COMPLETE_TASK_AT:
            key = complete_task(self.dp, "c002", "cancelled_not_rebooked")
            self.completed = (i, key) if key else None

    def ever(self) -> set[tuple[str, str, str, str]]:
        """(kind, key, client, reason) of every item this practice ever had on the server."""
        return {(x.kind, x.key, x.client, x.reason) for items in self.seen for x in items}


def test_two_hundred_passes_under_random_faults(
    dav_server_factory: Callable[..., DavServer],
    dav_practice: Callable[..., DavPractice],
    fault_proxy: Callable[[DavServer], FaultProxy],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Under random faults passes exit 0 or 1 and never crash, and one clean pass then leaves exactly
    the reminders, tombstones and state of a fault-free twin."""
    server = dav_server_factory("radicale")
    proxy = fault_proxy(server)
    chooser = RandomFaults(random.Random(SEED), FAULT_RATE)
    proxy.faults.choose, proxy.faults.slow_by = chooser, 1.5
    chaos = Run(dav_practice(server, clients=CLIENTS, url_of=proxy.url_for, timeout="1s"))
    twin = Run(dav_practice(server, clients=CLIENTS))  # the same practice, straight to Radicale
    for run in (chaos, twin):
        load_practice(run.dp)

    now = START
    for i in range(PASSES):
        now = START + i * STEP
        for run in (chaos, twin):
            run.before_pass(i)
            code = run.dp.run(now.isoformat())
            run.exits[code] += 1
            out, err = capsys.readouterr()
            assert code in (0, 1), (i, code, err[-2000:])
            assert not any(sign in err for sign in CRASH_SIGNS), (i, err[-2000:])
            assert not any(name in out + err for name in NAMES), (i, err[-2000:])
            run.seen.append(server_items(run.dp))
            per_slot = Counter((x.kind, x.key) for x in run.seen[-1])
            assert max(per_slot.values(), default=1) == 1, (i, per_slot)  # never a duplicate
    injected = Counter(proxy.faults.injected)
    assert set(injected) == set(CHAOS_KINDS), injected
    assert twin.exits == Counter({0: PASSES})
    assert chaos.exits[1] > 0 and chaos.exits[0] > PASSES // 2, (chaos.exits, injected)

    chooser.on = False
    final = now.isoformat()
    assert chaos.dp.run(final) == 0
    assert twin.dp.run(final) == 0
    chaos.seen.append(server_items(chaos.dp))
    twin.seen.append(server_items(twin.dp))
    assert chaos.deleted and chaos.completed and twin.deleted and twin.completed

    # the same calls are due as in the fault-free twin, and every one is kept as it is
    lines = chaos.dp.plan(final, capsys)
    assert due_needs(lines) == due_needs(twin.dp.plan(final, capsys))
    # nothing left to resolve; what the therapist handled shows as handled
    assert {x["state"] for x in lines} <= {"due", "upcoming", "stale", "handled"}
    deleted_key, completed_key = chaos.deleted[1], chaos.completed[1]
    due = {x["key"]: x for x in lines if x["state"] in ("due", "handled")}
    assert due[deleted_key]["action"] == "none"  # the therapist handled it: a tombstone
    assert {x["action"] for k, x in due.items() if k != deleted_key} == {"keep"}
    assert {(x["client"], x["reason"]) for x in due.values()} == {
        ("c001", "no_show"),
        ("c002", "termination_letter"),
        ("c003", "no_show"),
        ("c003", "not_rebooked"),
    }

    # exactly one object per key and kind, named after it; one open event and task per open need
    items = chaos.seen[-1]
    per_key = Counter((x.kind, x.key) for x in items)
    assert max(per_key.values()) == 1, per_key
    assert all(x.name == file_name(x.key, x.kind, 1) for x in items)
    held = {(x.key, x.kind): x for x in items}
    for key, need in due.items():
        if key == deleted_key:
            continue
        kinds = ("task",) if need["reason"] == "termination_letter" else ("event", "task")
        for kind in kinds:
            assert held[(key, kind)].status == "open", (need, kind)
        assert need["reason"] != "termination_letter" or (key, "event") not in held

    # tombstones: the deleted event never came back; the completed task stayed completed
    deleted_at, completed_at = chaos.deleted[0], chaos.completed[0]
    for items_then in chaos.seen[deleted_at:]:
        assert not [x for x in items_then if (x.kind, x.key) == ("event", deleted_key)]
    for items_then in chaos.seen[completed_at:]:
        assert [x.status for x in items_then if (x.kind, x.key) == ("task", completed_key)] == ["completed"]
    rows = state_rows(chaos.dp)
    assert rows[(deleted_key, "event")][0] == "tombstone"
    assert held[(deleted_key, "task")].status == "completed"  # its task was closed for her
    assert rows[(completed_key, "task")][0] == "tombstone"
    sibling = held.get((completed_key, "event"))  # its event: deleted, or past and left alone
    assert sibling is None or rows[(completed_key, "event")][0] == "withdrawn"

    # state and server agree: each open row is an open item with our key, and vice versa (bar
    # past events that were withdrawn and left in place)
    for (key, kind), (status, ref, _at) in rows.items():
        if status == "open":
            assert held[(key, kind)].status == "open", (key, kind)
            assert ref.endswith("/" + file_name(key, kind, 1))
    for (key, kind), item in held.items():
        if item.status != "open":
            continue
        assert (key, kind) in rows, ("an open item state does not know", key, kind)
        status, _ref, at = rows[(key, kind)]
        assert status == "open" or (
            kind == "event" and status == "withdrawn" and item.start is not None and item.start <= at
        ), (key, kind, status)

    # nothing was ever written that the fault-free twin did not write too, and the end is the same
    assert chaos.ever() <= twin.ever()
    open_rows = {slot for slot, row in rows.items() if row[0] == "open"}
    assert open_rows == {slot for slot, row in state_rows(twin.dp).items() if row[0] == "open"}
    reasons = {(client, reason) for _kind, _key, client, reason in twin.ever()}
    assert {
        ("c005", "not_rebooked"),
        ("c005", "double_booked"),
        ("c002", "cancelled_not_rebooked"),
    } <= reasons


def test_answer_cut_off_is_retried(
    dav_server_factory: Callable[..., DavServer],
    dav_practice: Callable[..., DavPractice],
    fault_proxy: Callable[[DavServer], FaultProxy],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An answer that breaks off before its end is retried like a dropped connection, and the pass succeeds."""
    server = dav_server_factory("radicale")
    proxy = fault_proxy(server)
    dp = dav_practice(server, clients=CLIENTS, url_of=proxy.url_for)
    load_practice(dp)
    reports = itertools.count()
    proxy.faults.choose = lambda method, _path: (
        "cut" if method in ("REPORT", "PROPFIND") and next(reports) % 2 == 0 else ""
    )
    capsys.readouterr()
    assert dp.run(NOW) == 0
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    retries = [x for x in lines if x["event"] == "connector.retry"]
    assert {x["error"] for x in retries} == {"IncompleteRead"}
    assert {"sync", "fetch", "list"} <= {x["operation"] for x in retries}
    assert proxy.faults.injected.count("cut") == len(retries)
    proxy.faults.choose = None
    assert_one_item_per_need(dp, capsys)
