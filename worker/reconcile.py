"""Desired reminders x state x what the sink holds -> the actions that make them agree.

Pure: the runner is the only code that applies actions. Rules (docs/design.md "Reconciliation"):
- create what is due and unknown; adopt an item with our key that state lost (a crash between
  write and commit must not duplicate);
- update only the text of an item whose need changed; never move it (the therapist may have);
- withdraw what resolved: delete a future event, complete a task with a note, leave past
  events alone;
- the therapist deleting our event or completing/deleting our task means "handled": a
  tombstone, and that key is never created again. Its sibling item (the task of a deleted
  event, the event of a completed task) is withdrawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import assert_never

from worker.model import (
    Action,
    Adopt,
    Create,
    ItemKind,
    Keep,
    Managed,
    Record,
    Reminder,
    ReminderKey,
    Tombstone,
    Update,
    Withdraw,
)

__all__ = ["Record", "Slot", "action_name", "current_items", "reconcile"]

Slot = tuple[ReminderKey, ItemKind]
FIRST_GENERATION = 1  # worker.identity.FIRST_GENERATION (the pure core imports only the model)


def _withdraw(item: Managed, now: datetime, note: str) -> Withdraw:
    future = item.start is None or item.start > now
    return Withdraw(
        key=item.key, kind=item.kind, item=item, note=note, delete=item.kind == "event" and future
    )


def _newest(items: Iterable[Managed]) -> Managed | None:
    """The latest incarnation; of two with one generation (a copy), the open one."""
    best: Managed | None = None
    for each in items:
        if (
            best is None
            or each.generation > best.generation
            or (each.generation == best.generation and best.status != "open" and each.status == "open")
        ):
            best = each
    return best


def current_items(
    records: Mapping[Slot, Record], held: Iterable[Managed]
) -> tuple[dict[Slot, Managed], set[Slot]]:
    """The item of each slot's current incarnation, and the slots whose item is newer than state.

    With a record, the current item is the one of the record's generation (older ones are
    history: a withdrawn task stays completed, a past event stays), or a newer one that a
    crash left unrecorded. Without a record, the newest item found.
    """
    by_slot: dict[Slot, list[Managed]] = {}
    for each in held:
        by_slot.setdefault((each.key, each.kind), []).append(each)
    current: dict[Slot, Managed] = {}
    newer: set[Slot] = set()
    for slot, items in by_slot.items():
        record = records.get(slot)
        if record is None:
            found = _newest(items)
        else:
            ahead = [i for i in items if i.generation > record.generation]
            if ahead and record.status != "tombstone":
                found = _newest(ahead)
                newer.add(slot)
            else:
                found = _newest(i for i in items if i.generation == record.generation)
        if found is not None:
            current[slot] = found
    return current, newer


def reconcile(
    desired: Iterable[Reminder],
    live_keys: Iterable[ReminderKey],
    records: Mapping[Slot, Record],
    held: Iterable[Managed],
    *,
    now: datetime,
    notes: Mapping[ReminderKey, str] | None = None,
) -> list[Action]:
    """Plan the actions for one pass.

    Args:
        desired: the reminders that should exist now (due needs, rendered and placed).
        live_keys: every need key that still exists in any state (due, upcoming, stale);
            an item whose key is not here has resolved.
        records: state, by (key, kind).
        held: every item of ours the sink holds (ownership already judged), any generation.
        now: the pass's time (future events are deleted on withdraw, past ones left).
        notes: why each resolved key resolved, for the withdrawn task's note (default "resolved").

    Returns:
        Actions in a stable order (by key, kind); Keep for items left as they are. A Create
        carries the generation to write: the next one after a withdrawal or after items found.
    """
    want = {(r.key, r.kind): r for r in desired}
    live = set(live_keys)
    why = notes or {}
    items, newer = current_items(records, held)
    generations: dict[Slot, int] = {}
    for each in held:
        slot = (each.key, each.kind)
        generations[slot] = max(generations.get(slot, 0), each.generation)
    # a newer item than state knows (a crash between writing it and recording it): unrecorded
    known = {slot: r for slot, r in records.items() if slot not in newer}
    handled: set[ReminderKey] = {k for (k, _), r in known.items() if r.status == "tombstone"}
    actions: dict[Slot, Action] = {}

    # First: what did the therapist do with items we wrote?
    for slot, written in known.items():
        if written.status != "open":
            continue
        found = items.get(slot)
        if found is None:
            actions[slot] = Tombstone(slot[0], slot[1], "deleted by the therapist")
            handled.add(slot[0])
        elif found.status != "open":
            actions[slot] = Tombstone(slot[0], slot[1], f"{found.status} by the therapist")
            handled.add(slot[0])
    # Items state lost that the therapist already closed: remember that too.
    for slot, found in items.items():
        if slot not in known and found.status != "open":
            actions[slot] = Tombstone(slot[0], slot[1], f"found {found.status}")
            handled.add(slot[0])

    for slot in sorted(set(want) | set(items) | set(known)):
        if slot in actions:
            continue
        key, kind = slot
        record = known.get(slot)
        item = items.get(slot)
        reminder = want.get(slot)
        resolved_note = why.get(key, "resolved")
        if record is not None and record.status == "tombstone":
            if item is not None and item.status == "open" and key not in live:
                actions[slot] = _withdraw(item, now, resolved_note)
            else:
                actions[slot] = Keep(key, kind)
            continue
        if key in handled:
            # the sibling of an item the therapist handled
            if item is not None and item.status == "open" and (record is None or record.status == "open"):
                actions[slot] = _withdraw(item, now, "handled by the therapist")
            elif record is not None and record.status == "open":
                actions[slot] = Tombstone(key, kind, "handled by the therapist")
            else:
                actions[slot] = Keep(key, kind)
            continue
        if record is not None and record.status == "withdrawn":
            if reminder is None:
                actions[slot] = Keep(key, kind)  # withdrawn earlier (a past event is left alone)
            else:
                # the need came back: a fresh item (a new name), placed like a new one
                fresh = max(record.generation, generations.get(slot, 0)) + 1
                actions[slot] = Create(replace(reminder, generation=fresh))
            continue
        if reminder is not None:
            if item is not None and item.status != "open":
                actions[slot] = Keep(key, kind)  # we closed it earlier; leave it closed
            elif item is None:
                fresh = max(generations.get(slot, 0) + 1, FIRST_GENERATION)
                actions[slot] = Create(replace(reminder, generation=fresh))
            elif item.payload_hash != reminder.payload_hash:
                # also adopts it when state lost it
                actions[slot] = Update(replace(reminder, generation=item.generation), item)
            elif record is None:
                actions[slot] = Adopt(replace(reminder, generation=item.generation), item)
            else:
                actions[slot] = Keep(key, kind)
            continue
        if item is not None and item.status == "open":
            if key in live:
                actions[slot] = Keep(key, kind)  # still needed (stale or upcoming): leave it
            else:
                actions[slot] = _withdraw(item, now, resolved_note)
            continue
        actions[slot] = Keep(key, kind)
    return [actions[s] for s in sorted(actions)]


def action_name(action: Action) -> str:
    """The verb of an action as `plan --json` prints it."""
    match action:
        case Create():
            return "create"
        case Adopt():
            return "keep"
        case Update():
            return "update"
        case Withdraw():
            return "resolve"
        case Tombstone() | Keep():
            return "none"
        case _:
            assert_never(action)
