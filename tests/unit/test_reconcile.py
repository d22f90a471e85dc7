"""Reconciliation (pure): desired x state x sink -> actions, and its invariants."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.model import (
    Adopt,
    ClientId,
    Create,
    Keep,
    Managed,
    Reason,
    Reminder,
    ReminderKey,
    Tombstone,
    Update,
    Withdraw,
    reminder_key,
)
from worker.reconcile import Record, reconcile

NOW = datetime(2026, 3, 11, 17, 0, tzinfo=UTC)


def rem(n: int, kind: str = "event", text: str = "a", hours: int = 1) -> Reminder:
    key = reminder_key(f"c{n}", "no_show", f"uid-{n}", "")
    return Reminder(
        key=key,
        kind=kind,
        client_id=ClientId(f"c{n}"),
        reason=Reason.NO_SHOW,  # type: ignore[arg-type]
        start=NOW + timedelta(hours=hours),
        end=NOW + timedelta(hours=hours, minutes=15),
        title=f"t{text}",
        description=text,
        payload_hash=f"h{text}",
    )


def held(r: Reminder, status: str = "open", **kw: object) -> Managed:
    return Managed(
        key=r.key,
        kind=r.kind,
        ref=f"ref-{r.key}-{r.kind}",
        start=r.start,
        status=status,  # type: ignore[arg-type]
        payload_hash=r.payload_hash,
        generation=r.generation,
        **kw,
    )  # type: ignore[arg-type]


def record(r: Reminder, status: str = "open") -> Record:
    return Record(key=r.key, kind=r.kind, status=status, payload_hash=r.payload_hash, generation=r.generation)


def test_create_when_unknown() -> None:
    """A due reminder that is neither in state nor in the sink is created."""
    assert reconcile([rem(1)], [rem(1).key], {}, [], now=NOW) == [Create(rem(1))]


def test_adopt_when_state_lost_it() -> None:
    """An item with our key that state does not know is adopted (updated if its text is old)."""
    actions = reconcile([rem(1)], [rem(1).key], {}, [held(rem(1))], now=NOW)
    assert actions == [Adopt(rem(1), held(rem(1)))]
    newer = rem(1, text="b")
    assert reconcile([newer], [newer.key], {}, [held(rem(1))], now=NOW) == [Update(newer, held(rem(1)))]


def test_update_only_text_changes() -> None:
    """A changed need text updates the item; an unchanged one is kept."""
    r2 = rem(1, text="b")
    slot = (r2.key, "event")
    actions = reconcile([r2], [r2.key], {slot: record(rem(1))}, [held(rem(1))], now=NOW)
    assert actions == [Update(r2, held(rem(1)))]
    kept = reconcile([rem(1)], [rem(1).key], {slot: record(rem(1))}, [held(rem(1))], now=NOW)
    assert kept == [Keep(rem(1).key, "event")]


def test_deleted_by_therapist_is_tombstone_and_not_recreated() -> None:
    """Our event gone from the sink means handled: a tombstone, and then never a create."""
    slot = (rem(1).key, "event")
    first = reconcile([rem(1)], [rem(1).key], {slot: record(rem(1))}, [], now=NOW)
    assert first == [Tombstone(rem(1).key, "event", "deleted by the therapist")]
    after = reconcile([rem(1)], [rem(1).key], {slot: record(rem(1), "tombstone")}, [], now=NOW)
    assert after == [Keep(rem(1).key, "event")]


def test_completed_task_closes_its_event() -> None:
    """A task the therapist completed tombstones the key and withdraws the sibling event."""
    ev, task = rem(1), rem(1, kind="task")
    records = {(ev.key, "event"): record(ev), (task.key, "task"): record(task)}
    actions = reconcile([ev, task], [ev.key], records, [held(ev), held(task, "completed")], now=NOW)
    assert Tombstone(task.key, "task", "completed by the therapist") in actions
    (withdraw,) = [a for a in actions if isinstance(a, Withdraw)]
    assert withdraw.kind == "event" and withdraw.delete is True


def test_resolved_future_event_deleted_past_event_left() -> None:
    """A resolved need deletes its future event but leaves a past one alone."""
    future, past = rem(1, hours=2), rem(2, hours=-2)
    records = {(future.key, "event"): record(future), (past.key, "event"): record(past)}
    actions = reconcile([], [], records, [held(future), held(past)], now=NOW)
    deletes = {a.key: a.delete for a in actions if isinstance(a, Withdraw)}
    assert deletes == {future.key: True, past.key: False}


def test_stale_need_keeps_its_item() -> None:
    """A need that still exists but is no longer written (stale) keeps its existing item."""
    slot = (rem(1).key, "event")
    actions = reconcile([], [rem(1).key], {slot: record(rem(1))}, [held(rem(1))], now=NOW)
    assert actions == [Keep(rem(1).key, "event")]


def test_foreign_items_are_never_touched() -> None:
    """Only items reported by the sink (which carry our key) can be acted on."""
    actions = reconcile([], [], {}, [], now=NOW)
    assert actions == []


# -- the invariant: planning again after applying a plan yields nothing -------------------------


def _apply(
    actions: list[object],
    sink: dict[tuple[ReminderKey, str], Managed],
    records: dict[tuple[ReminderKey, str], Record],
) -> None:
    for a in actions:
        match a:
            case Create(reminder=r):
                sink[(r.key, r.kind)] = held(r)
                records[(r.key, r.kind)] = record(r)
            case Adopt(reminder=r, item=i):
                records[(r.key, r.kind)] = replace(record(r), payload_hash=i.payload_hash)
            case Update(reminder=r, item=i):
                sink[(r.key, r.kind)] = replace(i, payload_hash=r.payload_hash)
                records[(r.key, r.kind)] = record(r)
            case Withdraw(key=k, kind=kind, item=i, delete=d):
                if d:
                    sink.pop((k, kind), None)
                elif kind == "task" and i is not None:
                    sink[(k, kind)] = replace(i, status="completed")
                gen = (
                    i.generation if i is not None else records.get((k, kind), Record(k, kind, "")).generation
                )
                records[(k, kind)] = Record(key=k, kind=kind, status="withdrawn", generation=gen)
            case Tombstone(key=k, kind=kind):
                records[(k, kind)] = Record(key=k, kind=kind, status="tombstone")


world = st.fixed_dictionaries(
    {
        "desired": st.sets(st.integers(0, 6)),
        "live_extra": st.sets(st.integers(0, 6)),
        "held": st.sets(st.integers(0, 6)),
        "texts": st.dictionaries(st.integers(0, 6), st.sampled_from("ab")),
        "closed": st.sets(st.integers(0, 6)),
        "recorded": st.sets(st.integers(0, 6)),
        "hours": st.dictionaries(st.integers(0, 6), st.integers(-3, 3)),
    }
)


@settings(max_examples=300, deadline=None)
@given(world, st.sampled_from(["event", "task"]))
def test_second_plan_is_empty(w: dict[str, object], kind: str) -> None:
    """Whatever the starting point, applying a plan and planning again yields only Keeps."""
    texts: dict[int, str] = w["texts"]  # type: ignore[assignment]
    hours: dict[int, int] = w["hours"]  # type: ignore[assignment]

    def r(n: int) -> Reminder:
        return rem(n, kind=kind, text=texts.get(n, "a"), hours=hours.get(n, 1) or 1)

    desired = [r(n) for n in sorted(w["desired"])]  # type: ignore[call-overload]
    live = {r(n).key for n in w["desired"] | w["live_extra"]}  # type: ignore[operator]
    sink = {
        (r(n).key, kind): held(
            rem(n, kind=kind, hours=hours.get(n, 1) or 1), "completed" if n in w["closed"] else "open"
        )
        for n in w["held"]
    }  # type: ignore[union-attr]
    records = {(r(n).key, kind): record(rem(n, kind=kind)) for n in w["recorded"]}  # type: ignore[union-attr]
    first = reconcile(desired, live, records, sink.values(), now=NOW)
    _apply(first, sink, records)
    second = reconcile(desired, live, records, sink.values(), now=NOW)
    assert all(isinstance(a, Keep) for a in second), second
    creates = [a for a in first if isinstance(a, Create)]
    assert len({(a.reminder.key, a.reminder.kind) for a in creates}) == len(creates)
