"""Attendance: what an event says about an appointment (markers, status, declines) and how
that reads at a given `now`.

Two steps keep the state free of client text: `observe` turns an Event into an Observation
(facts only, stored as history); `attendance_at` judges an Observation at `now`. Pure: no
I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from worker.model import Appointment, Attendance, ClientId, Event, Observation


@lru_cache(maxsize=64)
def _words(words: tuple[str, ...]) -> re.Pattern[str] | None:
    cleaned = sorted({w.strip() for w in words if w.strip()}, key=lambda w: (-len(w), w))
    if not cleaned:
        return None
    # "Whole words" bounds only the ends that are word characters: a symbol marker such as
    # "✓" must still match in "J.S.✓", while "DNA" must not match inside "DNAs" or "mDNA".
    body = "|".join(
        (r"(?<!\w)" if re.match(r"\w", w) else "")
        + re.escape(w)
        + (r"(?!\w)" if re.search(r"\w$", w) else "")
        for w in cleaned
    )
    return re.compile(f"(?:{body})", re.IGNORECASE)


def has_marker(words: tuple[str, ...], texts: Iterable[str]) -> bool:
    """True when any marker word or phrase appears as whole words in any text (any case)."""
    pattern = _words(words)
    return pattern is not None and any(pattern.search(t) for t in texts if t)


@dataclass(frozen=True, slots=True)
class MarkerRules:
    """The marker words and colours that turn on each attendance."""

    no_show: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()
    arrived: tuple[str, ...] = ()
    no_show_colors: tuple[str, ...] = ()
    cancelled_colors: tuple[str, ...] = ()


def unmatched(event: Event) -> tuple[Observation, bool]:
    """A personal (unmatched) event: kept only as busy time, with no client.

    Returns the observation and whether it blocks time (not cancelled, not transparent).
    """
    obs = Observation(
        id=event.appointment_id,
        uid=event.uid,
        recurrence_id=event.recurrence_id,
        client_id=ClientId(""),
        start=event.start,
        end=event.end,
        cancelled=event.status == "cancelled",
        item=event.item,
        source=event.source,
    )
    return obs, event.status != "cancelled" and not event.transparent


def observe(event: Event, client_id: ClientId, markers: MarkerRules, *, declined: bool) -> Observation:
    """Turn a matched event into the facts the rules need (no titles, no descriptions)."""
    texts = (event.summary, *event.categories, *event.description.splitlines())
    color = event.color.strip().lower()
    cancelled = (
        event.status == "cancelled"
        or declined
        or has_marker(markers.cancelled, texts)
        or (bool(color) and color in {c.lower() for c in markers.cancelled_colors})
    )
    no_show = not cancelled and (
        has_marker(markers.no_show, texts)
        or (bool(color) and color in {c.lower() for c in markers.no_show_colors})
    )
    arrived = not cancelled and not no_show and has_marker(markers.arrived, texts)
    cancelled_at = None
    if cancelled:
        cancelled_at = event.last_modified or event.start
    return Observation(
        id=event.appointment_id,
        uid=event.uid,
        recurrence_id=event.recurrence_id,
        client_id=client_id,
        start=event.start,
        end=event.end,
        cancelled=cancelled,
        cancelled_at=cancelled_at,
        no_show=no_show,
        arrived=arrived,
        created=event.created,
        item=event.item,
        source=event.source,
    )


def attendance_at(obs: Observation, now: datetime, *, late_cancel_within: timedelta) -> Attendance:
    """Judge an observation at `now` (docs/policy.md "What happened to an appointment")."""
    if obs.cancelled:
        at = obs.cancelled_at or obs.start
        return Attendance.LATE_CANCEL if at >= obs.start - late_cancel_within else Attendance.CANCELLED
    if obs.no_show:
        return Attendance.NO_SHOW
    if obs.arrived:
        return Attendance.ARRIVED
    if obs.end <= now:
        return Attendance.ATTENDED
    if obs.start <= now:
        return Attendance.IN_PROGRESS
    return Attendance.SCHEDULED


def appointment_at(obs: Observation, now: datetime, *, late_cancel_within: timedelta) -> Appointment:
    """The appointment an observation describes, judged at `now`."""
    return Appointment(
        id=obs.id,
        uid=obs.uid,
        recurrence_id=obs.recurrence_id,
        client_id=obs.client_id,
        start=obs.start,
        end=obs.end,
        attendance=attendance_at(obs, now, late_cancel_within=late_cancel_within),
        cancelled_at=obs.cancelled_at,
        created=obs.created,
    )
