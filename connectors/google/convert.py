"""Google Calendar / Tasks JSON <-> worker.model values, in one place (no network here).

Reading: a Google event (an expanded instance, `singleEvents=true`) becomes an Event. Every
`dateTime` is read with its own offset, else its `timeZone`, else the calendar's zone; all-day
(`date`) events are not appointments and give None. An instance's `uid` is its series id
(`recurringEventId`) or its own id, and its `recurrence_id` is `originalStartTime` in UTC
("YYYYMMDDTHHMMSSZ"), "" for a single event: both stay the same when the instance moves.

Which events can be appointments: only `eventType` "default" ones the therapist has not
declined herself (an attendee entry with `self: true` and `responseStatus: declined`).
Out-of-office and focus-time blocks are busy time only (their text is dropped, so they never
match a client), as are opaque all-day events; birthdays, working locations and from-Gmail
entries are ignored. A colour is read as its palette id, or as the name the configuration
uses for that id ("Tomato" for "11"; `COLOR_NAMES`).

Writing: a Reminder becomes an event body (id = `identity.google_event_id(key, generation)`,
private extended properties with the key and the owner mark, private, transparent, a popup
alarm, no attendees) or a task body (the notes end with a separator and the key line, which
carries the item's UID and owner mark; the date-only due in the practice time zone).

Longer than ~400 lines on purpose: every Google field's reading rule, with the
documentation it follows, is in this one conversion module (no network here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from worker import identity
from worker.errors import DataError
from worker.model import Attendee, Event, EventStatus, ItemName, Managed, Reminder, ReminderKey

KEY_PROP = "x-callsheet-key"
REASON_PROP = "x-callsheet-reason"
CLIENT_PROP = "x-callsheet-client"
HASH_PROP = "x-callsheet-hash"
OWNER_PROP = "x-callsheet-owner"
# One fixed name=value on every event we write: the single privateExtendedProperty filter
# that lists our items (a filter needs an exact value, and each key is different).
MARK_PROP = "x-callsheet-app"
MARK_VALUE = "callsheet"
MARK_FILTER = f"{MARK_PROP}={MARK_VALUE}"

TASK_KEY_PREFIX = "callsheet-key:"
# The line above the key line in a task's notes: everything from it on is callsheet's.
TASK_SEPARATOR = "-- callsheet --"
_KEY_LINE = re.compile(r"^callsheet-key:\s*([0-9a-v]{26})(?:\s+(.*))?$")
_KEY_ID = re.compile(r"^[0-9a-v]{26}$")

# Google Calendar's event colour palette: the names its apps show, by `colorId` (the ids of
# `colors.get` "event"; the API gives hex values only, the names are what the apps show).
COLOR_NAMES = {
    "1": "lavender",
    "2": "sage",
    "3": "grape",
    "4": "flamingo",
    "5": "banana",
    "6": "tangerine",
    "7": "peacock",
    "8": "graphite",
    "9": "blueberry",
    "10": "basil",
    "11": "tomato",
}
COLOR_IDS = {name: ident for ident, name in COLOR_NAMES.items()}

# Event types (Event.eventType): only "default" events can be appointments; these two are busy
# time only; every other type (birthday, workingLocation, fromGmail, ...) is ignored.
APPOINTMENT_TYPES = frozenset({"default"})
BUSY_ONLY_TYPES = frozenset({"outOfOffice", "focusTime"})
# What the window listing asks for (`eventTypes`, repeated): the rest is never transferred.
LISTED_TYPES = ("default", "focusTime", "outOfOffice")

_PARTSTAT = {
    "needsAction": "NEEDS-ACTION",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
    "accepted": "ACCEPTED",
}

# The fields the source asks for when it lists the window (a trimmed partial response).
WINDOW_FIELDS = (
    "nextPageToken,timeZone,items(id,iCalUID,status,summary,description,start,end,recurringEventId,"
    "originalStartTime,attendees(email,responseStatus,self),organizer(self),colorId,created,updated,"
    "transparency,eventType)"
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


def is_cancelled(raw: Mapping[str, Any]) -> bool:
    return raw.get("status") == "cancelled"


def is_deleted_single(raw: Mapping[str, Any]) -> bool:
    """A deleted event (not a cancelled instance of a series)."""
    return is_cancelled(raw) and not raw.get("recurringEventId")


def deleted_single_cancels(raw: Mapping[str, Any], fallback: tzinfo) -> bool:
    """Whether a deleted single event counts as a cancelled appointment (docs/policy.md).

    Only the organizer's copy keeps its details ("On the organizer's calendar, cancelled
    events continue to expose event details", Event.status): it must still have a timed start
    and a title, and have been deleted (`updated`) before that start. Whether its iCalUID is
    live elsewhere (a move) is the caller's check.
    """
    if not is_deleted_single(raw) or not raw.get("summary"):
        return False
    start = parse_when(raw.get("start"), fallback)
    deleted = parse_instant(raw.get("updated"))
    return isinstance(start, datetime) and deleted is not None and deleted < start


def declined_by_self(raw: Mapping[str, Any]) -> bool:
    """The therapist declined this invitation herself (her own attendee entry, `self: true`)."""
    for entry in raw.get("attendees") or ():
        if isinstance(entry, Mapping) and entry.get("self") is True:
            return entry.get("responseStatus") == "declined"
    return False


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


def color_spelling(color_id: str, configured: Iterable[str]) -> str:
    """The colour as the configuration spells it: its palette id, or the palette name for it.

    `no_show_colors = ["Tomato"]` and `["11"]` mean the same colour; an event with colorId "11"
    reads as "Tomato" when the configuration names it so, else as "11".
    """
    if not color_id:
        return ""
    for spelling in configured:
        if COLOR_IDS.get(spelling.strip().lower()) == color_id:
            return spelling
    return color_id


def to_event(
    raw: Mapping[str, Any],
    *,
    item: str,
    source: str,
    fallback: tzinfo,
    default_length: timedelta,
    series: Mapping[str, Any] | None = None,
    colors: Iterable[str] = (),
) -> Event | None:
    """One listed instance as an Event; None when it cannot be an appointment or busy time.

    A cancelled instance may carry only its id, series and original start ("Cancelled
    exceptions are only guaranteed to have values for the id, recurringEventId and
    originalStartTime fields"): its time is the original start, its text comes from `series`
    (another instance, or the series itself), and as it has no `updated`, it was cancelled no
    later than its start and no later than the series' `updated` (cancelling an instance
    stamps its series): the earlier of the two, when the series says.

    Raises:
        DataError: the instance cannot be read (no id, no start, a bad time).
    """
    uid = series_id(raw)
    text_from: Mapping[str, Any] = raw
    if series is not None and not raw.get("summary") and not raw.get("description"):
        text_from = series
    event_type = raw.get("eventType") or text_from.get("eventType") or "default"
    busy_only = event_type in BUSY_ONLY_TYPES
    if not busy_only and event_type not in APPOINTMENT_TYPES:
        return None  # birthdays, working locations, from-Gmail entries: neither
    if declined_by_self(raw) or (text_from is not raw and declined_by_self(text_from)):
        return None  # she declined it herself: not an appointment, not busy
    start_value = parse_when(raw.get("start"), fallback)
    original = parse_when(raw.get("originalStartTime"), fallback)
    if start_value is None:
        start_value = original
    if start_value is None:
        raise DataError("an event without a start", item=item)
    transparent = raw.get("transparency") == "transparent"
    if not isinstance(start_value, datetime):
        # all-day: never an appointment; busy time when marked busy (opaque, the API default)
        if transparent or is_cancelled(raw):
            return None
        first = datetime.combine(start_value, time(0), fallback)
        last_day = parse_when(raw.get("end"), fallback)
        days = (last_day - start_value).days if isinstance(last_day, date) and last_day > start_value else 1
        return Event(
            uid=uid,
            recurrence_id=recurrence_id(raw.get("originalStartTime"), fallback)
            if raw.get("recurringEventId")
            else "",
            start=first,
            end=datetime.combine(start_value + timedelta(days=days), time(0), fallback),
            item=item,
            source=source,
        )
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
    modified = parse_instant(raw.get("updated"))
    if modified is None and is_cancelled(raw) and series is not None:
        stamped = parse_instant(series.get("updated"))
        if stamped is not None:
            modified = min(stamped, start)
    if busy_only:
        return Event(
            uid=uid,
            recurrence_id=rid,
            start=start,
            end=end,
            status=_status(raw),
            transparent=transparent,
            item=item,
            source=source,
        )
    color_id = str(raw.get("colorId") or (text_from.get("colorId") if text_from is not raw else "") or "")
    return Event(
        uid=uid,
        recurrence_id=rid,
        start=start,
        end=end,
        summary=str(text_from.get("summary") or ""),
        description=str(text_from.get("description") or ""),
        status=_status(raw),
        attendees=_attendees(raw) or (_attendees(text_from) if text_from is not raw else ()),
        color=color_spelling(color_id, colors),
        created=parse_instant(raw.get("created")),
        last_modified=modified,
        transparent=transparent,
        item=item,
        source=source,
    )


# -- writing -------------------------------------------------------------------------------------


def _moment(value: datetime, tz: ZoneInfo) -> dict[str, str]:
    return {"dateTime": value.astimezone(tz).isoformat(), "timeZone": tz.key}


def event_body(reminder: Reminder, *, tz: ZoneInfo, alarm_minutes: int) -> dict[str, Any]:
    """The Calendar event we insert for a reminder (id: base32hex, new for every generation)."""
    return {
        "id": identity.google_event_id(reminder.key, reminder.generation),
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
    props = {
        KEY_PROP: reminder.key,
        REASON_PROP: reminder.reason.value,
        CLIENT_PROP: reminder.client_id,
        HASH_PROP: reminder.payload_hash,
        MARK_PROP: MARK_VALUE,
    }
    if reminder.owner:
        props[OWNER_PROP] = reminder.owner
    return props


def event_name(raw: Mapping[str, Any]) -> ItemName | None:
    """What a listed event's id says (key and generation), None when callsheet did not name it."""
    return identity.parse_google_event_id(str(raw.get("id") or ""))


def managed_event(raw: Mapping[str, Any]) -> Managed | None:
    """One of our events as Managed (cancelled = deleted); None without our key property.

    The identity fields come from the event id (`named`, `uid`, `generation`) and the private
    owner mark; the runner judges from them whether the event is this installation's.
    """
    props = (raw.get("extendedProperties") or {}).get("private") or {}
    key = props.get(KEY_PROP)
    if not isinstance(key, str) or not _KEY_ID.match(key):
        return None
    name = event_name(raw)
    start = parse_when(raw.get("start"), UTC)
    return Managed(
        key=ReminderKey(key),
        kind="event",
        ref=str(raw.get("id") or key),
        etag=str(raw.get("etag") or ""),
        start=start if isinstance(start, datetime) else None,
        status="cancelled" if raw.get("status") == "cancelled" else "open",
        payload_hash=str(props.get(HASH_PROP) or ""),
        client_id=str(props.get(CLIENT_PROP) or ""),
        reason=str(props.get(REASON_PROP) or ""),
        uid=identity.item_uid(name.key, "event", name.generation) if name is not None else "",
        named=name,
        owner=str(props.get(OWNER_PROP) or ""),
        generation=name.generation if name is not None else identity.LEGACY_GENERATION,
    )


def key_line(reminder: Reminder) -> str:
    """The key line of a task's notes: how we find it again (Tasks picks its own ids).

    `callsheet-key: <key> uid=<item uid> owner=<mark> reason=<r> client=<id> hash=<h>`; lines
    written before generations existed have no uid and read as generation 0.
    """
    uid = identity.item_uid(reminder.key, "task", reminder.generation)
    owner = f" owner={reminder.owner}" if reminder.owner else ""
    return (
        f"{TASK_KEY_PREFIX} {reminder.key} uid={uid}{owner} reason={reminder.reason.value} "
        f"client={reminder.client_id} hash={reminder.payload_hash}"
    )


def task_notes(reminder: Reminder, kept: str = "") -> str:
    """The notes of a task: the text, what the therapist added (`kept`), then our key line."""
    text = reminder.description.rstrip()
    if kept.strip():
        text = f"{text}\n\n{kept.strip()}"
    return f"{text}\n\n{TASK_SEPARATOR}\n{key_line(reminder)}"


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


def split_notes(notes: str) -> tuple[str, str, str]:
    """(text above the key line, the key line, text the therapist typed below it).

    The key line is found anywhere (its last occurrence); "" when there is none. Our
    separator line just above it belongs to neither text.
    """
    lines = notes.rstrip().split("\n")
    for index in range(len(lines) - 1, -1, -1):
        if _KEY_LINE.match(lines[index].strip()):
            above = lines[:index]
            if above and above[-1].strip() == TASK_SEPARATOR:
                above = above[:-1]
            below = "\n".join(lines[index + 1 :]).strip()
            return "\n".join(above).rstrip(), lines[index].strip(), below
    return notes, "", ""


def closed_notes(notes: str, note: str) -> str:
    """The notes of a task we complete: the closing note goes above the key line."""
    body, line, below = split_notes(notes)
    closing = f"callsheet: closed ({note})."
    text = "\n\n".join(part for part in (body.strip(), below, closing) if part)
    return f"{text}\n\n{TASK_SEPARATOR}\n{line}" if line else text


def managed_task(raw: Mapping[str, Any], tz: tzinfo) -> Managed | None:
    """One of our tasks as Managed (completed, or cancelled when deleted); None if not ours.

    Google picks task ids, so `named` is None; the UID, owner and generation come from the key
    line (no uid: a legacy line, generation 0).
    """
    _, line, _ = split_notes(str(raw.get("notes") or ""))
    match = _KEY_LINE.match(line)
    if match is None:
        return None
    key = ReminderKey(match.group(1))
    fields = dict(part.split("=", 1) for part in (match.group(2) or "").split() if "=" in part)
    uid = fields.get("uid", "")
    parsed = identity.parse_uid(uid) if uid else None
    if not uid:
        uid = identity.item_uid(key, "task", identity.LEGACY_GENERATION)
    generation = parsed.generation if parsed is not None else identity.LEGACY_GENERATION
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
        key=key,
        kind="task",
        ref=str(raw.get("id") or ""),
        etag=str(raw.get("etag") or ""),
        start=start,
        status=status,  # type: ignore[arg-type]
        payload_hash=fields.get("hash", ""),
        client_id=fields.get("client", ""),
        reason=fields.get("reason", ""),
        uid=uid,
        named=None,
        owner=fields.get("owner", ""),
        generation=generation,
    )
