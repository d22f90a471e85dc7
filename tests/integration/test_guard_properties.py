"""Random sequences of passes with random accidents (issue 11): the source emptied and restored,
reminders deleted or completed by hand, needs resolved and returning, clock jumps, refused
writes, a lost state. Once the accidents stop and two clean passes run, every due need has
exactly one open event and one open task, no tombstone was lost, and an item that is not ours
was never changed.
"""

from __future__ import annotations

import contextlib
import shutil
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fakes.memory import MemorySink
from tests.practice import ClientSpec, Practice, local, vevent
from worker.config import load_settings
from worker.errors import GuardError
from worker.model import ItemKind
from worker.runner import run_pass
from worker.state import State

START = local("2026-03-11 08:00")
CLIENTS = tuple(ClientSpec(f"c{n:03d}", f"Client{n} Person{n}") for n in range(1, 6))
FOREIGN = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:callsheet-0000000000000000000000000e-e1\r\n"
    b"DTSTART:20260312T150000Z\r\nSUMMARY:someone else's\r\nX-CALLSHEET-KEY:0000000000000000000000000e\r\n"
    b"X-CALLSHEET-OWNER:ffffffffffffffff\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(1, 30)),
        st.tuples(st.just("empty"), st.just(0)),
        st.tuples(st.just("restore"), st.just(0)),
        st.tuples(st.just("delete_event"), st.integers(0, 9)),
        st.tuples(st.just("complete_task"), st.integers(0, 9)),
        st.tuples(st.just("move_away"), st.integers(1, 2)),
        st.tuples(st.just("move_back"), st.integers(1, 2)),
        st.tuples(st.just("clock_back"), st.integers(2, 48)),
        st.tuples(st.just("refuse"), st.sampled_from(["task/", "event/", ""])),
        st.tuples(st.just("lose_state"), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


def _book(practice: Practice, n: int, hour: int) -> None:
    practice.add(f"next-{n}", vevent(f"next-{n}", f"Client{n} Person{n}", local(f"2026-03-13 {hour:02d}:00")))


def _practice(root: Path) -> Practice:
    practice = Practice(root, clients=CLIENTS)
    for n in range(1, 6):
        start = local("2026-03-09 09:00") + timedelta(hours=n)
        practice.add(f"missed-{n}", vevent(f"missed-{n}", f"Client{n} Person{n} no show", start))
    # clients 1 and 2 double-booked on Friday (a conflict need that can resolve and return)
    _book(practice, 1, 10)
    _book(practice, 2, 10)
    return practice


def _ours(sink: MemorySink, key: str, kind: ItemKind) -> list[str]:
    return [ref for ref in sink.items if ref.startswith(f"{kind}/callsheet-{key}-")]


def _current(sink: MemorySink) -> tuple[dict[tuple[str, str], list[str]], int]:
    """The statuses of each slot's newest incarnation, and the most copies of one incarnation."""
    newest: dict[tuple[str, str], int] = {}
    statuses: dict[tuple[str, str, int], list[str]] = {}
    for item in sink.managed():
        if not item.owner:
            continue
        slot = (item.key, item.kind)
        newest[slot] = max(newest.get(slot, 0), item.generation)
        statuses.setdefault((item.key, item.kind, item.generation), []).append(item.status)
    current = {slot: statuses[(slot[0], slot[1], gen)] for slot, gen in newest.items()}
    return current, max((len(v) for v in statuses.values()), default=0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
@example([("empty", 0), ("lose_state", 0), ("restore", 0), ("lose_state", 0)])
@example([("move_away", 1), ("move_away", 2), ("lose_state", 0)])
def test_after_any_accidents_two_clean_passes_leave_one_event_and_one_task_per_due_need(
    tmp_path_factory: object, plan: list[tuple[str, object]]
) -> None:
    """Whatever happened, two clean passes restore exactly one open event and task per due need."""
    root = tmp_path_factory.mktemp("p")  # type: ignore[attr-defined]
    practice = _practice(root / "practice")
    config = load_settings(practice.config)
    sink = MemorySink()
    sink.items["event/someone-else.ics"] = FOREIGN
    sink.etags["event/someone-else.ics"] = 1
    clock = START
    latest = START
    away = root / "away"
    tombstones: set[str] = set()

    def one_pass(now: object) -> None:
        with contextlib.suppress(GuardError):  # a guard refused: nothing changed, by design
            run_pass(config, now, sink=sink)  # type: ignore[arg-type]
        tombstones.update(_tombstones(config.state_dir))

    one_pass(clock)
    for action, arg in plan:
        if action == "tick":
            clock = latest = max(latest, clock) + timedelta(hours=int(arg))  # type: ignore[call-overload]
        elif action == "empty" and not away.exists():
            practice.calendar.rename(away)
            practice.calendar.mkdir()
        elif action == "restore" and away.exists():
            shutil.rmtree(practice.calendar)
            away.rename(practice.calendar)
        elif action in ("delete_event", "complete_task"):
            kind: ItemKind = "event" if action == "delete_event" else "task"
            mine = sorted(r for r in sink.items if r.startswith(f"{kind}/callsheet-"))
            if mine:
                ref = mine[int(arg) % len(mine)]  # type: ignore[call-overload]
                if kind == "event":
                    sink.items.pop(ref)
                else:
                    key = ref.split("callsheet-", 1)[1][:26]
                    sink.therapist_completes(key)
        elif action == "move_away" and not away.exists():
            _book(practice, int(arg), 15)  # type: ignore[call-overload]
        elif action == "move_back" and not away.exists():
            _book(practice, int(arg), 10)  # type: ignore[call-overload]
        elif action == "clock_back":
            clock = latest - timedelta(hours=int(arg))  # type: ignore[call-overload]
        elif action == "refuse":
            sink.refuse = {str(arg)} if arg else set()
        elif action == "lose_state":
            shutil.rmtree(config.state_dir, ignore_errors=True)
            # a lost state loses its tombstones by definition (the sink cannot tell the
            # therapist's completion from callsheet's own): track those recorded since
            tombstones = set()
        one_pass(clock)

    # the accidents stop: the source is back, the server accepts, the clock is right
    if away.exists():
        shutil.rmtree(practice.calendar)
        away.rename(practice.calendar)
    sink.refuse = set()
    final = latest + timedelta(days=1, hours=1)
    for minutes in (0, 5):
        outcome = run_pass(config, final + timedelta(minutes=minutes), sink=sink)
    plan_after = outcome.plan
    due = {n.key for n in plan_after.open_calls()}
    handled = plan_after.handled
    current, copies = _current(sink)
    assert copies == 1  # never two items of one incarnation
    letters = {n.key for n in plan_after.needs if n.reason.value == "termination_letter"}
    for key in due:
        for kind in ("task",) if key in letters else ("event", "task"):
            assert current.get((key, kind)) == ["open"], (key, kind, current)
    for key in handled:
        assert current.get((key, "task"), ["completed"]) != ["open"]  # handled: its task is closed
    live = {n.key for n in plan_after.needs}
    assert {k for k in tombstones if k in live} <= handled  # no tombstone of a live need was lost
    assert sink.items["event/someone-else.ics"] == FOREIGN  # never ours, never changed


def _tombstones(state_dir: Path) -> set[str]:
    if not (state_dir / "state.db").exists():
        return set()
    state = State.snapshot(state_dir)
    try:
        return {k for (k, _), r in state.records().items() if r.status == "tombstone"}
    finally:
        state.close()
