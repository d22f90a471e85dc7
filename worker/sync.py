"""Step 1 of a pass: read a source incrementally and store what changed (docs/design.md "Map").

Owns the expansion window and the source-loss guard: a read in which a source that held
objects lists none, or loses more than half of them (at least `LOSS_MIN`) at once, changes
nothing and fails with `SourceLossError`, whose way out is `run --accept-source-loss`. Every
kind of source passes through here (vdir listings, CalDAV sync-collection deletions and full
listings, Google deletions), so the guard exists once.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

import structlog

from connectors.base import Source
from worker import attendance as attendance_mod
from worker.config import Settings
from worker.errors import SourceLossError
from worker.model import Event, SourceBatch, Window
from worker.policy import markers_of
from worker.roster import AMBIGUOUS, Roster
from worker.state import Store, StoredOccurrence

log = structlog.get_logger()

# How far ahead recurrences are expanded: far enough that a booking beyond `lookahead`
# still counts as "booked" for the rebooking rules.
MIN_AHEAD = timedelta(days=180)
# A loss of at least this many objects, and more than half of what the source held, is a
# source-loss; so is a source that held objects and now lists none.
LOSS_MIN = 5


def window_for(settings: Settings, now: datetime) -> Window:
    """The expansion window, on local day boundaries so it moves once a day."""
    tz = settings.practice.tz
    today = now.astimezone(tz).date()
    start = datetime.combine(today - settings.rules.history, datetime.min.time(), tz)
    ahead = max(settings.rules.lookahead, MIN_AHEAD)
    end = datetime.combine(today + ahead + timedelta(days=1), datetime.min.time(), tz)
    return Window(start=start, end=end)


def ref_hash(text: str) -> str:
    """A short hash that stands for a uid or file name in logs (they can carry client data)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _stored(
    events: Iterable[Event], roster: Roster, markers: attendance_mod.MarkerRules, counts: Counter[str]
) -> list[StoredOccurrence]:
    out = []
    for event in events:
        match = roster.match(event)
        if match is AMBIGUOUS:
            counts["ambiguous"] += 1
            log.warning("source.event.ambiguous", uid=ref_hash(event.uid))
            match = None
        if match is None:
            counts["unmatched"] += 1
            obs, busy = attendance_mod.unmatched(event)
        else:
            counts["matched"] += 1
            obs = attendance_mod.observe(event, match, markers, declined=roster.declined(event, match))
            busy = event.status != "cancelled" and not event.transparent and not obs.cancelled
        out.append(StoredOccurrence(observation=obs, busy=busy))
    return out


def losses(known: set[str], batch: SourceBatch) -> tuple[int, int]:
    """How many of the `known` objects this batch loses, and how many the source holds after it."""
    after = set(batch.changed) if batch.complete else (known - batch.removed) | set(batch.changed)
    return len(known - after), len(after)


def check_loss(source: str, known: set[str], batch: SourceBatch) -> None:
    """Raise SourceLossError when the batch would empty the source or lose most of it.

    Raises:
        SourceLossError: with the counts and the way out (`run --accept-source-loss`).
    """
    lost, after = losses(known, batch)
    if not known or lost == 0:
        return
    if after == 0 or (lost >= LOSS_MIN and lost * 2 > len(known)):
        raise SourceLossError(
            f"{lost} of the {len(known)} calendar objects of source '{source}' vanished at once "
            f"({after} left). Nothing was changed: an unmounted folder, an emptied or re-pointed "
            "calendar looks exactly like this. If the appointments really were removed, run once "
            "with: callsheet run --once --accept-source-loss",
            source=source,
            operation="list",
            lost=lost,
            held=len(known),
        )


def sync_source(
    source: Source,
    settings: Settings,
    state: Store,
    roster: Roster,
    now: datetime,
    *,
    accept_loss: bool = False,
) -> Counter[str]:
    """Read one source incrementally and store what changed (nothing when the guard fires)."""
    window = window_for(settings, now)
    counts: Counter[str] = Counter()
    batch = source.read(window, state.cursor(source.name))
    # objects that lie wholly before the window may drop out of a listing without being
    # deleted (Google lists by window): they are no loss
    known = state.objects(source.name) - state.aged_out(source.name, window.start)
    if not accept_loss:
        check_loss(source.name, known, batch)
    lost, after = losses(known, batch)
    if lost and accept_loss:
        log.warning("source.loss.accepted", source=source.name, lost=lost, held=len(known))
    markers = markers_of(settings)
    changed = {item: _stored(events, roster, markers, counts) for item, events in batch.changed.items()}
    state.apply_source(
        source.name,
        changed=changed,
        removed=batch.removed,
        complete=batch.complete,
        window_start=window.start,
        window_end=window.end,
        cursor=batch.cursor,
        now=now,
        exdate_is_cancellation=settings.source.exdate_is_cancellation,
    )
    counts["changed"] += len(batch.changed)
    counts["removed"] += len(batch.removed)
    counts["bad"] += batch.bad
    counts["objects"] = after
    return counts
