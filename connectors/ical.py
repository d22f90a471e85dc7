"""iCalendar <-> worker.model conversion shared by the vdir and CalDAV connectors.

Parsing is defensive: one unreadable object raises DataError naming the object (never its
content) and the caller skips it. Recurrences are expanded here, locally, with
recurring-ical-events, so behaviour is the same on every server; expansion is bounded.

Slightly over ~400 lines: parsing (with its recurrence bounds) and writing share the
property names and UID rules.

icalendar is imported by the functions that parse or write, not with this module: a pass in
which no calendar file changed never needs it (start-up; tests/integration/test_startup.py).
"""

from __future__ import annotations

import contextlib
import functools
import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from worker.errors import DataError
from worker.identity import item_uid, parse_uid
from worker.model import (
    Attendee,
    Event,
    EventStatus,
    ItemKind,
    ItemName,
    Managed,
    Reminder,
    ReminderKey,
    Window,
)

if TYPE_CHECKING:
    import icalendar
    from icalendar import Calendar

PRODID = "-//callsheet//reminders//EN"
KEY_PROP = "X-CALLSHEET-KEY"
REASON_PROP = "X-CALLSHEET-REASON"
CLIENT_PROP = "X-CALLSHEET-CLIENT"
HASH_PROP = "X-CALLSHEET-HASH"
OWNER_PROP = "X-CALLSHEET-OWNER"
UID_PREFIX = "callsheet-"
# At most this many occurrences of one object are expanded: a FREQ=SECONDLY rule or a
# COUNT of a billion must not hang a pass.
MAX_OCCURRENCES = 5000
_FAST_FREQS = {"SECONDLY", "MINUTELY", "HOURLY"}


def _aware(value: datetime, tz: tzinfo) -> datetime:
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def _rid_text(value: Any, tz: tzinfo) -> str:
    dt = getattr(value, "dt", value)
    if isinstance(dt, datetime):
        return _aware(dt, tz).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    if isinstance(dt, date):
        return dt.strftime("%Y%m%d")
    return str(dt)


def _text(component: icalendar.cal.Component, name: str) -> str:
    value = component.get(name)
    return "" if value is None else str(value)


def _opt_dt(component: icalendar.cal.Component, name: str, tz: tzinfo) -> datetime | None:
    value = component.get(name)
    dt = getattr(value, "dt", None)
    if isinstance(dt, datetime):
        return _aware(dt, tz)
    return None


def _attendees(component: icalendar.cal.Component) -> tuple[Attendee, ...]:
    raw = component.get("ATTENDEE")
    if raw is None:
        return ()
    values = raw if isinstance(raw, list) else [raw]
    out = []
    for value in values:
        address = str(value)
        if address.lower().startswith("mailto:"):
            address = address[7:]
        params = getattr(value, "params", {})
        out.append(
            Attendee(email=address.strip().lower(), partstat=str(params.get("PARTSTAT", "NEEDS-ACTION")))
        )
    return tuple(out)


def _categories(component: icalendar.cal.Component) -> tuple[str, ...]:
    try:
        # icalendar 7's Event/Todo unescape CATEGORIES ("a\\,b" stays one category)
        return tuple(str(c) for c in getattr(component, "categories", ()))
    except (AttributeError, ValueError, TypeError):
        return ()


def _status(component: icalendar.cal.Component) -> EventStatus:
    status = _text(component, "STATUS").upper()
    if status == "CANCELLED":
        return "cancelled"
    if status == "TENTATIVE":
        return "tentative"
    return "confirmed"


def _too_dense(rule: object) -> bool:
    """True for rules no appointment follows, whose expansion could take minutes."""
    if not hasattr(rule, "get"):
        return True  # a rule icalendar could not read

    def values(name: str) -> list[object]:
        value = rule.get(name)
        return [] if value is None else (value if isinstance(value, list) else [value])

    freq = str((values("FREQ") or [""])[0]).upper()
    if freq in _FAST_FREQS:
        return True
    # BYHOUR/BYMINUTE/BYSECOND multiply the occurrences of every period; INTERVAL=0 never advances
    return (
        len(values("BYSECOND")) > 1
        or len(values("BYMINUTE")) > 4
        or len(values("BYHOUR")) > 12
        or any(not isinstance(v, int) or v < 1 for v in values("INTERVAL"))
    )


# Expanding a series walks every occurrence from its first one, before the window too: a
# rule that would walk more than this many is skipped (a recurrence bomb: one small event
# from year 1 with dozens of occurrences a day). A daily series since 1900 walks ~46,000.
MAX_WALK = 100_000
_PERIOD_DAYS = {"YEARLY": 365, "MONTHLY": 28, "WEEKLY": 7, "DAILY": 1}
_MULTIPLIERS = ("BYMONTH", "BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY", "BYHOUR", "BYMINUTE", "BYSECOND")


# -- a cheap look at raw text, before parsing (vdir and CalDAV share it) ----------------------

_RECURRING_HINTS = re.compile(rb"RRULE|RDATE|RECURRENCE-ID")
_DTSTART_DAY = re.compile(rb"^DTSTART[^:\r\n]*:(\d{8})", re.MULTILINE)
# Time zone definitions carry RRULEs and DTSTARTs of their own: they say nothing about events.
_VTIMEZONE = re.compile(rb"^BEGIN:VTIMEZONE.*?^END:VTIMEZONE\r?\n?", re.MULTILINE | re.DOTALL)


def _without_zones(data: bytes) -> bytes:
    return _VTIMEZONE.sub(b"", data) if b"BEGIN:VTIMEZONE" in data else data


def is_recurring(data: bytes) -> bool:
    """True when the object holds a series (time zone rules do not count)."""
    return _RECURRING_HINTS.search(_without_zones(data)) is not None


def dtstart_days(data: bytes) -> list[bytes]:
    """The raw DTSTART dates (YYYYMMDD) of the object's components, time zone rules left out."""
    days: list[bytes] = _DTSTART_DAY.findall(_without_zones(data))
    return days


@functools.lru_cache(maxsize=8)
def _raw_bounds(window: Window) -> tuple[bytes, bytes]:
    """The window's first and last day as raw DTSTART dates, with a day of slack each side."""
    low = (window.start - timedelta(days=1)).strftime("%Y%m%d").encode()
    high = (window.end + timedelta(days=1)).strftime("%Y%m%d").encode()
    return low, high


def placement(data: bytes, window: Window) -> str:
    """Where a stored object lies, from its raw text (no parsing).

    "recurring": it has a recurrence (re-expand it whenever the window moves); "before" /
    "after": a one-off whose DTSTART dates all fall before / after the window (a day of slack
    for time zones): nothing to parse now, and "after" is read again once the window reaches
    it; "inside": parse it (also when no DTSTART is found: the parser says what is wrong).
    """
    if is_recurring(data):
        return "recurring"
    days = dtstart_days(data)
    if not days:
        return "inside"
    low, high = _raw_bounds(window)
    if all(day < low for day in days):
        return "before"
    if all(day > high for day in days):
        return "after"
    return "inside"


def walk_bound(rule: Any, dtstart: date | datetime, until: datetime) -> int:
    """An upper bound of the occurrences expanding `rule` walks from `dtstart` up to `until`."""

    def values(name: str) -> list[object]:
        value = rule.get(name)
        return [] if value is None else (value if isinstance(value, list) else [value])

    freq = str((values("FREQ") or [""])[0]).upper()
    days = _PERIOD_DAYS.get(freq)
    if days is None:
        return MAX_WALK + 1  # finer than daily was refused already; unknown: refuse
    interval = max(1, int(str((values("INTERVAL") or [1])[0]) or 1))
    start = dtstart if isinstance(dtstart, datetime) else datetime.combine(dtstart, time(0))
    start = _aware(start, until.tzinfo or UTC)
    end = until
    rule_until = (values("UNTIL") or [None])[0]
    if isinstance(rule_until, datetime):
        end = min(end, _aware(rule_until, until.tzinfo or UTC))
    elif isinstance(rule_until, date):
        end = min(end, datetime.combine(rule_until, time(23, 59), until.tzinfo or UTC))
    span = max(0.0, (end - start).total_seconds()) / 86400
    per_period = 1
    for name in _MULTIPLIERS:
        per_period *= max(1, len(values(name)))
    bound = int(span // (days * interval) + 1) * per_period
    count = (values("COUNT") or [None])[0]
    if count is not None:
        with contextlib.suppress(ValueError, TypeError):
            bound = min(bound, int(str(count)))
    return bound


def _series_uids(calendar: Calendar, item: str, until: datetime | None = None) -> set[str]:
    """Check every VEVENT can be expanded safely (up to `until`); return the UIDs that recur."""
    masters: set[str] = set()
    for component in calendar.walk("VEVENT"):
        uid = _text(component, "UID")
        if not uid:
            raise DataError("an event without UID", item=item)
        if "DTSTART" not in component:
            raise DataError("an event without DTSTART", item=item)
        rule = component.get("RRULE")
        if rule is not None:
            for r in rule if isinstance(rule, list) else [rule]:
                if _too_dense(r):
                    raise DataError("a recurrence rule too dense for appointments", item=item)
                first = getattr(component.get("DTSTART"), "dt", None)
                if until is not None and isinstance(first, date) and walk_bound(r, first, until) > MAX_WALK:
                    raise DataError("a recurrence that would take too long to expand", item=item)
        if rule is not None or "RDATE" in component or "RECURRENCE-ID" in component:
            masters.add(uid)
    return masters


def parse_calendar(
    data: bytes,
    *,
    item: str,
    source: str,
    window: Window,
    tz: tzinfo,
    default_length: timedelta,
) -> list[Event]:
    """Parse one stored object and expand its events inside `window`.

    All-day events are dropped; floating times are read in `tz`; an event without DTEND or
    DURATION lasts `default_length`; cancelled overrides come back with status "cancelled".

    Raises:
        DataError: the object is not iCalendar, or an event in it cannot be read.
    """
    from icalendar import Calendar

    try:
        calendar = Calendar.from_ical(data)
    except (ValueError, IndexError, KeyError, UnicodeDecodeError) as exc:
        raise DataError("not a readable iCalendar object", item=item) from exc
    try:
        masters = _series_uids(calendar, item, window.end)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"unreadable event properties ({type(exc).__name__})", item=item) from exc
    try:
        spans = _one_off_spans(calendar, data, window)
        if spans is None:
            spans = _expanded_spans(calendar, window, item)
        out: list[Event] = []
        for component, start_value, end_value in spans:
            if isinstance(start_value, datetime):
                start = _aware(start_value, tz)
            else:
                start = datetime.combine(start_value, time(0), tz)
            if start >= window.end:
                continue
            if not isinstance(start_value, datetime):
                continue  # all-day: not an appointment
            end = _aware(end_value, tz) if isinstance(end_value, datetime) else start
            if end <= start:
                end = start + default_length
            uid = _text(component, "UID")
            out.append(
                Event(
                    uid=uid,
                    recurrence_id=_rid_text(component["RECURRENCE-ID"], tz)
                    if uid in masters and "RECURRENCE-ID" in component
                    else "",
                    start=start,
                    end=end,
                    summary=_text(component, "SUMMARY"),
                    description=_text(component, "DESCRIPTION"),
                    categories=_categories(component),
                    status=_status(component),
                    attendees=_attendees(component),
                    color=_text(component, "COLOR"),
                    created=_opt_dt(component, "CREATED", tz),
                    last_modified=_opt_dt(component, "LAST-MODIFIED", tz),
                    transparent=_text(component, "TRANSP").upper() == "TRANSPARENT",
                    item=item,
                    source=source,
                )
            )
        out.sort(key=lambda e: (e.start, e.uid, e.recurrence_id))
        return out
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot expand events ({type(exc).__name__})", item=item) from exc


# (the component an occurrence's properties come from, its start, its end)
_Span = tuple["icalendar.cal.Component", date | datetime, date | datetime]


def _expanded_spans(calendar: Calendar, window: Window, item: str) -> list[_Span]:
    """The occurrences recurring-ical-events gives inside the window."""
    import recurring_ical_events  # with x_wr_timezone and click: only when a file changed

    query = recurring_ical_events.of(calendar, skip_bad_series=False)
    # One bounded query for the whole window: `after()` re-walks each series from its
    # first instance for every step it takes, which is quadratic (a daily series took a
    # second, an hourly one minutes). Rules finer than hourly were refused above, so the
    # window bounds the work.
    occurrences = query.between(window.start, window.end)
    if len(occurrences) > 2 * MAX_OCCURRENCES:
        raise DataError("too many occurrences in the window", item=item)
    # the expander sets DTEND on every occurrence (from DURATION, or DTSTART when neither is there)
    return [
        (o, o["DTSTART"].dt, o.end if "DTEND" in o or "DURATION" in o else o["DTSTART"].dt)
        for o in occurrences
    ]


# Raw-text signs that an object needs the expander even without a recurrence: EXDATE can
# remove the only instance, X-WR-TIMEZONE moves times into another zone.
_EXPANDER_ONLY = (b"EXDATE", b"X-WR-TIMEZONE")


def _one_off_spans(calendar: Calendar, data: bytes, window: Window) -> list[_Span] | None:
    """The events of an object without recurrences that lie in the window, exactly as the
    expander would give them, without its per-series machinery (most objects of a practice are
    single sessions: parse once, no copies). None for anything else: the caller expands it.
    """
    zone = window.start.tzinfo
    if zone is None or is_recurring(data) or any(mark in data for mark in _EXPANDER_ONLY):
        return None
    out: list[_Span] = []
    uids: set[str] = set()
    for component in calendar.walk("VEVENT"):
        uid = _text(component, "UID")
        if uid in uids:
            return None
        uids.add(uid)
        first: Any = component["DTSTART"]
        start = first.dt
        if not isinstance(start, datetime):
            return None  # all-day, or a time the expander would convert
        stop: Any = component.get("DTEND")
        length: Any = component.get("DURATION")
        if stop is not None:
            end = stop.dt
            if not isinstance(end, datetime) or end.tzinfo is not start.tzinfo:
                return None  # an end in another zone: the expander converts it
        elif length is not None:
            if not isinstance(length.dt, timedelta):
                return None
            end = start + length.dt
        else:
            end = start
        if start > end:
            start, end = end, start  # as the expander orders them
        # the expander's test (stops exclusive), floating times read in the window's zone
        low, high = _aware(start, zone), _aware(end, zone)
        if (window.start <= low < window.end) if low == high else (low < window.end and window.start < high):
            out.append((component, start, end))
    return out


def _calendar() -> Calendar:
    from icalendar import Calendar

    cal = Calendar()  # not Calendar.new(): that adds a random UID to every file
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    return cal


def _mark(component: icalendar.cal.Component, reminder: Reminder) -> None:
    component[KEY_PROP] = reminder.key
    component[REASON_PROP] = reminder.reason.value
    component[CLIENT_PROP] = reminder.client_id
    component[HASH_PROP] = reminder.payload_hash
    if reminder.owner:
        component[OWNER_PROP] = reminder.owner


def build_item(reminder: Reminder, *, stamp: datetime, alarm_minutes: int = 0) -> bytes:
    """The iCalendar object of a reminder: VEVENT with a display alarm, or VTODO with DUE.

    Its UID carries the key, kind and generation (`worker.identity.item_uid`); the alarm rings
    `alarm_minutes` before the start.
    """
    from icalendar import Alarm, Todo
    from icalendar import Event as VEvent

    cal = _calendar()
    start = reminder.start.astimezone(UTC)
    if reminder.kind == "event":
        component: icalendar.cal.Component = VEvent()
        component.add("dtstart", start)
        component.add("dtend", reminder.end.astimezone(UTC))
        component.add("transp", "TRANSPARENT")
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", reminder.title)
        alarm.add("trigger", -timedelta(minutes=alarm_minutes))
        component.add_component(alarm)
    else:
        component = Todo()
        component.add("due", start)
        component.add("status", "NEEDS-ACTION")
    component.add("uid", item_uid(reminder.key, reminder.kind, reminder.generation))
    component.add("dtstamp", stamp.astimezone(UTC))
    component.add("summary", reminder.title)
    component.add("description", reminder.description)
    component.add("class", "PRIVATE")
    component.add("categories", ["callsheet"])
    _mark(component, reminder)
    if reminder.owner:
        component[OWNER_PROP] = reminder.owner
    cal.add_component(component)
    return bytes(cal.to_ical())


def _ours(calendar: Calendar) -> icalendar.cal.Component | None:
    for component in calendar.subcomponents:
        if component.name in ("VEVENT", "VTODO") and KEY_PROP in component:
            return component
    return None


def read_item(data: bytes, *, ref: str, etag: str = "", name: ItemName | None = None) -> Managed | None:
    """Our item as Managed, or None when the object does not carry our key.

    `name` is what the item's resource name says (`worker.identity.parse_file_name`); the UID,
    owner mark and generation are read from the item itself.
    """
    from icalendar import Calendar

    try:
        component = _ours(Calendar.from_ical(data))
    except (ValueError, IndexError, KeyError):
        return None
    if component is None:
        return None
    kind: ItemKind = "event" if component.name == "VEVENT" else "task"
    status = _text(component, "STATUS").upper()
    if status == "COMPLETED" or "COMPLETED" in component:
        state = "completed"
    elif status == "CANCELLED":
        state = "cancelled"
    else:
        state = "open"
    field = "DTSTART" if kind == "event" else "DUE"
    start = _opt_dt(component, field, UTC)
    uid = _text(component, "UID")
    parsed = parse_uid(uid)
    return Managed(
        key=ReminderKey(_text(component, KEY_PROP)),
        kind=kind,
        ref=ref,
        etag=etag,
        start=start,
        status=state,  # type: ignore[arg-type]
        payload_hash=_text(component, HASH_PROP),
        client_id=_text(component, CLIENT_PROP),
        reason=_text(component, REASON_PROP),
        uid=uid,
        named=name,
        owner=_text(component, OWNER_PROP),
        generation=parsed.generation if parsed is not None else 0,
    )


def _rewrite(data: bytes, change: Any) -> bytes:
    from icalendar import Calendar

    calendar = Calendar.from_ical(data)
    component = _ours(calendar)
    if component is None:
        raise DataError("the item no longer carries our key")
    change(component)
    return bytes(calendar.to_ical())


def _replace(component: icalendar.cal.Component, name: str, value: Any) -> None:
    if name in component:
        del component[name]
    component.add(name, value)


def update_item(data: bytes, reminder: Reminder, *, stamp: datetime) -> bytes:
    """New title and description for our item; its time and alarms stay as they are."""

    def change(component: icalendar.cal.Component) -> None:
        _replace(component, "summary", reminder.title)
        _replace(component, "description", reminder.description)
        _replace(component, "dtstamp", stamp.astimezone(UTC))
        for alarm in component.walk("VALARM"):
            _replace(alarm, "description", reminder.title)
        component[HASH_PROP] = reminder.payload_hash

    return _rewrite(data, change)


def complete_item(data: bytes, *, note: str, stamp: datetime) -> bytes:
    """Mark our task completed and say why in its description."""

    def change(component: icalendar.cal.Component) -> None:
        body = _text(component, "DESCRIPTION")
        _replace(component, "description", f"{body}\n\ncallsheet: closed ({note}).".strip())
        _replace(component, "status", "COMPLETED")
        _replace(component, "completed", stamp.astimezone(UTC))
        _replace(component, "percent-complete", 100)
        _replace(component, "dtstamp", stamp.astimezone(UTC))

    return _rewrite(data, change)
