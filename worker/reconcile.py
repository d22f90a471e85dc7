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
from dataclasses import dataclass
from datetime import datetime

from worker.model import (
    Action,
    Adopt,
    Create,
    ItemKind,
    Keep,
    Managed,
    Reminder,
    ReminderKey,
    Tombstone,
    Update,
    Withdraw,
)

RecordStatus = str  # "open" | "withdrawn" | "tombstone"


@dataclass(frozen=True, slots=True)
class Record:
    """What state remembers of one item we wrote."""

    key: ReminderKey
    kind: ItemKind
    status: RecordStatus
    ref: str = ""
    etag: str = ""
    payload_hash: str = ""
    start: datetime | None = None


Slot = tuple[ReminderKey, ItemKind]


def _withdraw(item: Managed, now: datetime, note: str) -> Withdraw:
    future = item.start is None or item.start > now
    return Withdraw(
        key=item.key, kind=item.kind, item=item, note=note, delete=item.kind == "event" and future
    )


def reconcile(
    desired: Iterable[Reminder],
    live_keys: Iterable[ReminderKey],
    records: Mapping[Slot, Record],
    held: Iterable[Managed],
    *,
    now: datetime,
) -> list[Action]:
    """Plan the actions for one pass.

    Args:
        desired: the reminders that should exist now (due needs, rendered and placed).
        live_keys: every need key that still exists in any state (due, upcoming, stale);
            an item whose key is not here has resolved.
        records: state, by (key, kind).
        held: every item carrying our key that the sink holds.
        now: the pass's time (future events are deleted on withdraw, past ones left).

    Returns:
        Actions in a stable order (by key, kind); Keep for items left as they are.
    """
    want = {(r.key, r.kind): r for r in desired}
    live = set(live_keys)
    items: dict[Slot, Managed] = {}
    for each in held:
        slot = (each.key, each.kind)
        # two items with one key (a copy made by hand): keep the open one
        if slot not in items or items[slot].status != "open":
            items[slot] = each
    handled: set[ReminderKey] = {k for (k, _), r in records.items() if r.status == "tombstone"}
    actions: dict[Slot, Action] = {}

    # First: what did the therapist do with items we wrote?
    for slot, written in records.items():
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
        if slot not in records and found.status != "open":
            actions[slot] = Tombstone(slot[0], slot[1], f"found {found.status}")
            handled.add(slot[0])

    for slot in sorted(set(want) | set(items) | set(records)):
        if slot in actions:
            continue
        key, kind = slot
        record = records.get(slot)
        item = items.get(slot)
        reminder = want.get(slot)
        if record is not None and record.status == "tombstone":
            if item is not None and item.status == "open" and key not in live:
                actions[slot] = _withdraw(item, now, "resolved")
            else:
                actions[slot] = Keep(key, kind)
            continue
        if record is not None and record.status == "withdrawn" and reminder is None:
            actions[slot] = Keep(key, kind)  # withdrawn earlier (a past event is left alone)
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
        if reminder is not None:
            if item is not None and item.status != "open":
                actions[slot] = Keep(key, kind)  # we closed it earlier; leave it closed
            elif item is None:
                actions[slot] = Create(reminder)
            elif item.payload_hash != reminder.payload_hash:
                actions[slot] = Update(reminder, item)  # also adopts it when state lost it
            elif record is None:
                actions[slot] = Adopt(reminder, item)
            else:
                actions[slot] = Keep(key, kind)
            continue
        if item is not None and item.status == "open":
            if key in live:
                actions[slot] = Keep(key, kind)  # still needed (stale or upcoming): leave it
            else:
                actions[slot] = _withdraw(item, now, "resolved")
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
    return "none"
