"""Step 3 of a pass: carry out the plan's actions, one item at a time (docs/design.md "Map").

The only code that writes to a sink during a pass. Each action is recorded in state as soon
as it is done, so a crash loses at most the record of one write (adopted next pass by name).
One refused item never stops the others: a permanent refusal (`RefusedError`) is recorded and
not tried again for `PERMANENT_RETRY`; a temporary failure is retried next pass; after
`DOWN_AFTER` temporary failures in a row the server is taken to be down and the rest of the
pass is left for the next one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from connectors.base import Sink
from worker.errors import (
    AuthError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    RefusedError,
    TransientError,
)
from worker.model import Adopt, Create, Keep, Reminder, Tombstone, Update, Withdraw
from worker.planning import Plan, action_key
from worker.state import Store

log = structlog.get_logger()

PERMANENT_RETRY = timedelta(days=1)
DOWN_AFTER = 3


def _record_open(
    state: Store, r: Reminder, now: datetime, *, ref: str, etag: str, payload: str, start: datetime | None
) -> None:
    """State now knows this item as ours and open, with what it holds."""
    state.save_record(
        r.key,
        r.kind,
        status="open",
        now=now,
        ref=ref,
        etag=etag,
        payload_hash=payload,
        start=start,
        client_id=r.client_id,
        reason=r.reason.value,
        generation=r.generation,
    )


def failure_class(exc: ConnectorError) -> tuple[str, bool]:
    """The class of a failed write as health and status name it, and whether it is permanent."""
    if isinstance(exc, RefusedError):
        return "refused", True
    if isinstance(exc, ConflictError | NotFoundError):
        return "changed", False
    if isinstance(exc, TransientError):
        return "temporary", False
    return "unreachable", False


def apply(
    plan: Plan, sink: Sink, state: Store, *, should_stop: Callable[[], bool] = lambda: False
) -> Counter[str]:
    """Carry out the plan's actions, recording each in state as soon as it is done.

    Returns counts: created, updated, resolved, tombstoned, adopted, kept, failed (and
    failed_<class>), deferred (permanent refusals not retried yet).

    Raises:
        AuthError: the sink refused our credentials: nothing more can be written.
    """
    done: Counter[str] = Counter()
    now = plan.now
    known_failures = state.failures()
    down = 0
    for index, action in enumerate(plan.actions):
        if should_stop():
            # SIGTERM: every action so far is recorded; the rest is planned again next pass
            log.info("pass.abandoned", count=len(plan.actions) - index)
            break
        if isinstance(action, Create):
            earlier = known_failures.get((action.reminder.key, action.reminder.kind))
            if earlier is not None and earlier.permanent and now - earlier.last_at < PERMANENT_RETRY:
                done["deferred"] += 1
                continue
        try:
            _apply_one(action, sink, state, now, done)
            down = 0
        except AuthError:
            raise
        except ConnectorError as exc:
            kind, permanent = failure_class(exc)
            done["failed"] += 1
            done[f"failed_{kind}"] += 1
            item_kind = action.reminder.kind if isinstance(action, Create | Adopt | Update) else action.kind
            generation = action.reminder.generation if isinstance(action, Create | Adopt | Update) else 0
            state.note_failure(
                action_key(action), item_kind, generation=generation, error=kind, permanent=permanent, now=now
            )
            log.warning("reminder.failed", key=action_key(action), kind=item_kind, failure=kind)
            if not permanent and kind != "changed":
                down += 1
                if down >= DOWN_AFTER:
                    left = len(plan.actions) - index - 1
                    log.warning("pass.sink_down", left=left)
                    done["failed"] += left
                    done["failed_unreachable"] += left
                    break
    return done


def _apply_one(action: object, sink: Sink, state: Store, now: datetime, done: Counter[str]) -> None:
    match action:
        case Create(reminder=r):
            receipt = sink.create(r)
            if receipt.gone:
                state.save_record(
                    r.key,
                    r.kind,
                    status="tombstone",
                    now=now,
                    note="deleted earlier",
                    generation=r.generation,
                )
                done["tombstoned"] += 1
                return
            _record_open(
                state, r, now, ref=receipt.ref, etag=receipt.etag, payload=r.payload_hash, start=r.start
            )
            done["created"] += 1
            log.debug("reminder.created", key=r.key, kind=r.kind, reason=r.reason.value, client=r.client_id)
        case Adopt(reminder=r, item=item):
            _record_open(
                state, r, now, ref=item.ref, etag=item.etag, payload=item.payload_hash, start=item.start
            )
            done["adopted"] += 1
        case Update(reminder=r, item=item):
            receipt = sink.update(r, item)
            _record_open(
                state,
                r,
                now,
                ref=receipt.ref or item.ref,
                etag=receipt.etag,
                payload=r.payload_hash,
                start=item.start,
            )
            done["updated"] += 1
        case Withdraw(key=key, kind=kind, item=item, note=note, delete=delete):
            if item is not None and (delete or kind == "task"):
                sink.withdraw(item, note=note, delete=delete)
            generation = item.generation if item is not None else None
            state.save_record(key, kind, status="withdrawn", now=now, note=note, generation=generation)
            done["resolved"] += 1
            log.debug("reminder.resolved", key=key, kind=kind)
        case Tombstone(key=key, kind=kind, why=why):
            state.save_record(key, kind, status="tombstone", now=now, note=why)
            done["tombstoned"] += 1
            log.debug("reminder.tombstoned", key=key, kind=kind)
        case Keep():
            done["kept"] += 1
