"""Google Calendar / Tasks JSON <-> worker.model values, in one place (no network here).

Reading: a Google event (an expanded instance, `singleEvents=true`) becomes an Event. Every
`dateTime` is read with its own offset, else its `timeZone`, else the calendar's zone; all-day
(`date`) events are not appointments and give None. An instance's `uid` is its series id
(`recurringEventId`) or its own id, and its `recurrence_id` is `originalStartTime` in UTC
("YYYYMMDDTHHMMSSZ"), "" for a single event: both stay the same when the instance moves.

Writing: a Reminder becomes an event body (id = the reminder key, private extended
properties, private, transparent, a popup alarm, no attendees) or a task body (the key on the
notes' last line, the date-only due in the practice time zone).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from worker.errors import DataError
from worker.identity import google_event_id, item_uid, parse_google_event_id
from worker.model import Attendee, Event, EventStatus, Managed, Reminder, ReminderKey

KEY_PROP = "x-callsheet-key"
REASON_PROP = "x-callsheet-reason"
CLIENT_PROP = "x-callsheet-client"
HASH_PROP = "x-callsheet-hash"
# One fixed name=value on every event we write: the single privateExtendedProperty filter
# that lists our items (a filter needs an exact value, and each key is different).
MARK_PROP = "x-callsheet-app"
OWNER_PROP = "x-callsheet-owner"
MARK_VALUE = "callsheet"
MARK_FILTER = f"{MARK_PROP}={MARK_VALUE}"

TASK_KEY_PREFIX = "callsheet-key:"
_KEY_LINE = re.compile(r"^callsheet-key:\s*([0-9a-v]{26})(?:\s+(.*))?$")
_KEY_ID = re.compile(r"^[0-9a-v]{26}$")

_PARTSTAT = {
    "needsAction": "NEEDS-ACTION",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
    "accepted": "ACCEPTED",
}

# The fields the source asks for when it lists the window (a trimmed partial response).
WINDOW_FIELDS = (
    "nextPageToken,timeZone,items(id,status,summary,description,start,end,recurringEventId,"
    "originalStartTime,attendees(email,responseStatus),colorId,created,updated,transparency)"
)
# "Has anything changed?": ids only.
CHANGES_FIELDS = "nextPageToken,nextSyncToken,items(id)"
# Establishing a sync token: no items at all, just the paging.
TOKEN_FIELDS = "nextPageToken,nextSyncToken"
MANAGED_EVENT_FIELDS = "nextPageToken,items(id,etag,status,start,extendedProperties)"
MANAGED_TASK_FIELDS = "nextPageToken,items(id,etag,status,due,notes,deleted,hidden)"


def zone(name: object, fallback: tzinfo) -> tzinfo:
    """An IANA zone by name, or `fallback` when absent or unknown."""
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return fallback
    return fallback


def parse_instant(text: object) -> datetime | None:
    """An RFC 3339 timestamp (`created`, `updated`) as an aware datetime, else None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_when(raw: object, fallback: tzinfo) -> datetime | date | None:
    """An EventDateTime: an aware datetime for `dateTime`, a date for all-day `date`.

    A dateTime keeps its own offset; without one it is read in its `timeZone`, else in
    `fallback` (the calendar's zone).

    Raises:
        DataError: the value cannot be read.
    """
    if not isinstance(raw, Mapping):
        return None
    text = raw.get("dateTime")
    if isinstance(text, str) and text:
        try:
            value = datetime.fromisoformat(text)
        except ValueError as exc:
            raise DataError("an unreadable dateTime") from exc
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone(raw.get("timeZone"), fallback))
        return value
    day = raw.get("date")
    if isinstance(day, str) and day:
        try:
            return date.fromisoformat(day)
        except ValueError as exc:
            raise DataError("an unreadable date") from exc
    return None


def recurrence_id(raw: object, fallback: tzinfo) -> str:
    """`originalStartTime` as DESIGN's recurrence id: UTC "YYYYMMDDTHHMMSSZ" (a date: "YYYYMMDD")."""
    value = parse_when(raw, fallback)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    return ""


def instance_key(raw: Mapping[str, Any]) -> str:
    """The identity of one listed instance: its id, else (recurringEventId, originalStartTime)."""
    ident = raw.get("id")
    if isinstance(ident, str) and ident:
        return ident
    series = raw.get("recurringEventId")
    original = raw.get("originalStartTime")
    if isinstance(series, str) and series and isinstance(original, Mapping):
        when = original.get("dateTime") or original.get("date") or ""
        return f"{series}@{when}"
    raise DataError("an event without id")


def series_id(raw: Mapping[str, Any]) -> str:
    """The id of the stored object an instance belongs to: its series, else itself."""
    series = raw.get("recurringEventId")
    if isinstance(series, str) and series:
        return series
    ident = raw.get("id")
    if isinstance(ident, str) and ident:
        return ident
    raise DataError("an event without id")


def is_deleted_single(raw: Mapping[str, Any]) -> bool:
    """A deleted event (not a cancelled instance of a live series): treated as absent."""
    return raw.get("status") == "cancelled" and not raw.get("recurringEventId")


def _status(raw: Mapping[str, Any]) -> EventStatus:
    value = raw.get("status")
    if value == "cancelled":
        return "cancelled"
    if value == "tentative":
        return "tentative"
    return "confirmed"


def _attendees(raw: Mapping[str, Any]) -> tuple[Attendee, ...]:
    out = []
    for entry in raw.get("attendees") or ():
        if not isinstance(entry, Mapping):
            continue
        email = entry.get("email")
        if not isinstance(email, str) or not email:
            continue
        partstat = _PARTSTAT.get(str(entry.get("responseStatus", "needsAction")), "NEEDS-ACTION")
        out.append(Attendee(email=email.strip().lower(), partstat=partstat))
    return tuple(out)


def to_event(
    raw: Mapping[str, Any],
    *,
    item: str,
    source: str,
    fallback: tzinfo,
    default_length: timedelta,
    series: Mapping[str, Any] | None = None,
) -> Event | None:
    """One listed instance as an Event; None for an all-day event.

    A cancelled instance may carry only its id, series and original start: its time is the
    original start and its text comes from `series` (another instance, or the series itself),
    so that it still matches its client.

    Raises:
        DataError: the instance cannot be read (no id, no start, a bad time).
    """
    uid = series_id(raw)
    text_from: Mapping[str, Any] = raw
    if series is not None and not raw.get("summary") and not raw.get("description"):
        text_from = series
    start_value = parse_when(raw.get("start"), fallback)
    original = parse_when(raw.get("originalStartTime"), fallback)
    if start_value is None:
        start_value = original
    if start_value is None:
        raise DataError("an event without a start", item=item)
    if not isinstance(start_value, datetime):
        return None  # all-day: not an appointment
    start = start_value
    end_value = parse_when(raw.get("end"), fallback)
    if isinstance(end_value, datetime) and end_value > start:
        end = end_value
    else:
        length = default_length
        if series is not None:
            s_start = parse_when(series.get("start"), fallback)
            s_end = parse_when(series.get("end"), fallback)
            if isinstance(s_start, datetime) and isinstance(s_end, datetime) and s_end > s_start:
                length = s_end - s_start
        end = start + length
    rid = recurrence_id(raw.get("originalStartTime"), fallback) if raw.get("recurringEventId") else ""
    return Event(
        uid=uid,
        recurrence_id=rid,
        start=start,
        end=end,
        summary=str(text_from.get("summary") or ""),
        description=str(text_from.get("description") or ""),
        status=_status(raw),
        attendees=_attendees(raw) or (_attendees(text_from) if text_from is not raw else ()),
        color=str(raw.get("colorId") or (text_from.get("colorId") if text_from is not raw else "") or ""),
        created=parse_instant(raw.get("created")),
        last_modified=parse_instant(raw.get("updated")),
        transparent=raw.get("transparency") == "transparent",
        item=item,
        source=source,
    )


# -- writing -------------------------------------------------------------------------------------


def _moment(value: datetime, tz: ZoneInfo) -> dict[str, str]:
    return {"dateTime": value.astimezone(tz).isoformat(), "timeZone": tz.key}


def event_body(reminder: Reminder, *, tz: ZoneInfo, alarm_minutes: int) -> dict[str, Any]:
    """The Calendar event we insert for a reminder (id = the key: valid base32hex)."""
    return {
        "id": google_event_id(reminder.key, reminder.generation),
        "summary": reminder.title,
        "description": reminder.description,
        "start": _moment(reminder.start, tz),
        "end": _moment(reminder.end, tz),
        "visibility": "private",
        "transparency": "transparent",
        "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": alarm_minutes}]},
        "extendedProperties": {"private": private_properties(reminder)},
    }


def private_properties(reminder: Reminder) -> dict[str, str]:
    return {
        KEY_PROP: reminder.key,
        REASON_PROP: reminder.reason.value,
        CLIENT_PROP: reminder.client_id,
        HASH_PROP: reminder.payload_hash,
        MARK_PROP: MARK_VALUE,
        OWNER_PROP: reminder.owner,
    }


def managed_event(raw: Mapping[str, Any]) -> Managed | None:
    """One of our events as Managed (cancelled = the therapist deleted it); None if not ours."""
    props = (raw.get("extendedProperties") or {}).get("private") or {}
    key = props.get(KEY_PROP)
    if not isinstance(key, str) or not _KEY_ID.match(key):
        return None
    start = parse_when(raw.get("start"), UTC)
    ident = str(raw.get("id") or "")
    named = parse_google_event_id(ident)
    return Managed(
        key=ReminderKey(key),
        kind="event",
        ref=ident or key,
        etag=str(raw.get("etag") or ""),
        start=start if isinstance(start, datetime) else None,
        status="cancelled" if raw.get("status") == "cancelled" else "open",
        payload_hash=str(props.get(HASH_PROP) or ""),
        client_id=str(props.get(CLIENT_PROP) or ""),
        reason=str(props.get(REASON_PROP) or ""),
        uid=item_uid(named.key, "event", named.generation) if named else "",
        named=named,
        owner=str(props.get(OWNER_PROP) or ""),
        generation=named.generation if named else -1,
    )


def key_line(reminder: Reminder) -> str:
    """The notes' last line of a task: how we find it again (Tasks has no client ids)."""
    return (
        f"{TASK_KEY_PREFIX} {reminder.key} reason={reminder.reason.value} "
        f"client={reminder.client_id} hash={reminder.payload_hash} gen={reminder.generation} "
        f"owner={reminder.owner}"
    )


def task_notes(reminder: Reminder) -> str:
    return f"{reminder.description}\n\n{key_line(reminder)}"


def task_due(reminder: Reminder, tz: ZoneInfo) -> str:
    """Tasks keep only a date: the reminder's day in the practice time zone, as RFC 3339."""
    day = reminder.start.astimezone(tz).date()
    return f"{day.isoformat()}T00:00:00.000Z"


def task_body(reminder: Reminder, *, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "title": reminder.title,
        "notes": task_notes(reminder),
        "due": task_due(reminder, tz),
        "status": "needsAction",
    }


def split_notes(notes: str) -> tuple[str, str]:
    """(body, key line) of a task's notes; the key line is "" when there is none."""
    lines = notes.rstrip().split("\n")
    if lines and _KEY_LINE.match(lines[-1].strip()):
        return "\n".join(lines[:-1]).rstrip(), lines[-1].strip()
    return notes, ""


def closed_notes(notes: str, note: str) -> str:
    """The notes of a task we complete: the closing note goes above the key line."""
    body, line = split_notes(notes)
    closing = f"callsheet: closed ({note})."
    text = f"{body}\n\n{closing}".strip()
    return f"{text}\n\n{line}" if line else text


def managed_task(raw: Mapping[str, Any], tz: tzinfo) -> Managed | None:
    """One of our tasks as Managed (completed, or cancelled when deleted); None if not ours."""
    _, line = split_notes(str(raw.get("notes") or ""))
    match = _KEY_LINE.match(line)
    if match is None:
        return None
    fields = dict(part.split("=", 1) for part in (match.group(2) or "").split() if "=" in part)
    due = raw.get("due")
    start = None
    if isinstance(due, str) and len(due) >= 10:
        try:
            start = datetime.combine(date.fromisoformat(due[:10]), time(0), tz)
        except ValueError:
            start = None
    if raw.get("deleted"):
        status = "cancelled"
    elif raw.get("status") == "completed":
        status = "completed"
    else:
        status = "open"
    return Managed(
        key=ReminderKey(match.group(1)),
        kind="task",
        ref=str(raw.get("id") or ""),
        etag=str(raw.get("etag") or ""),
        start=start,
        status=status,  # type: ignore[arg-type]
        payload_hash=fields.get("hash", ""),
        client_id=fields.get("client", ""),
        reason=fields.get("reason", ""),
        uid=item_uid(match.group(1), "task", _generation(fields)),
        owner=fields.get("owner", ""),
        generation=_generation(fields),
    )


def _generation(fields: Mapping[str, str]) -> int:
    text = fields.get("gen", "0")
    return int(text) if text.isdigit() and len(text) < 9 else 0
