"""The fake's Google Calendar v3: calendars, calendar list and events (list, sync, get, write)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from tests.fakes.google.common import (
    _B32HEX,
    _SYNC_FORBIDDEN,
    TOMBSTONE_KEYS,
    _b64,
    _Calendar,
    _merge,
    _now,
    _public,
    _rfc3339,
    _scopes,
    _unb64,
    _when,
)
from tests.fakes.google.errors import ApiError


class CalendarMixin:
    """Calendar v3 methods; mixed into FakeGoogle (which holds the state and the paging)."""

    PRIMARY = "therapist.fake@example.test"
    lock: threading.RLock
    calendars: dict[str, _Calendar]

    def add_calendar(
        self,
        summary: str,
        *,
        time_zone: str = "America/Chicago",
        calendar_id: str | None = None,
        app_created: bool = False,
        primary: bool = False,
        access_role: str = "owner",
    ) -> str:
        with self.lock:
            cid = calendar_id or f"c{self._next()}{secrets.token_hex(4)}@group.calendar.google.com"
            self.calendars[cid] = _Calendar(cid, summary, time_zone, app_created, access_role, primary)
            return cid

    def _calendar(self, calendar_id: str) -> _Calendar:
        if calendar_id == "primary":
            calendar_id = self.PRIMARY
        calendar = self.calendars.get(calendar_id)
        if calendar is None:
            raise ApiError(404, "notFound", "Not Found")
        return calendar

    def _touch(self, calendar: _Calendar, event: dict[str, Any], *, stamp: bool = True) -> None:
        calendar.seq += 1
        event["_seq"] = calendar.seq
        event["etag"] = f'"{calendar.seq:016d}"'
        if stamp or "updated" not in event:
            event["updated"] = _rfc3339(_now())

    def add_event(self, calendar_id: str, body: Mapping[str, Any]) -> str:
        """Seed an event as it would be stored (keeps given `created`/`updated`)."""
        with self.lock:
            calendar = self._calendar(calendar_id)
            event = self._new_event(calendar, body)
            self._touch(calendar, event, stamp=False)
            calendar.events[event["id"]] = event
            self._stamp_series(calendar, event)
            if event.get("status") == "cancelled" and not self._organizer(event):
                self._strip(event)
            return str(event["id"])

    @staticmethod
    def _organizer(event: Mapping[str, Any]) -> bool:
        return bool((event.get("organizer") or {}).get("self"))

    @staticmethod
    def _strip(event: dict[str, Any]) -> None:
        """Keep only what a tombstone is guaranteed to carry (see TOMBSTONE_KEYS)."""
        for key in [k for k in event if k not in TOMBSTONE_KEYS]:
            del event[key]

    def _stamp_series(self, calendar: Any, event: Mapping[str, Any]) -> None:
        """Cancelling an instance stamps its series: the series' `updated` is at least the
        instance's (recorded payloads: SwitchbackTech/compass mocks.gcal delete.single*)."""
        series = calendar.events.get(event.get("recurringEventId") or "")
        if series is None or event.get("status") != "cancelled" or not event.get("updated"):
            return
        if str(series.get("updated") or "") < str(event["updated"]):
            series["updated"] = event["updated"]

    def _new_event(self, calendar: _Calendar, body: Mapping[str, Any]) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(json.dumps(dict(body)))
        event.setdefault("id", base64.b32hexencode(secrets.token_bytes(15)).decode().lower())
        event.setdefault("status", "confirmed")
        event["kind"] = "calendar#event"
        event.setdefault("created", _rfc3339(_now()))
        event.setdefault("iCalUID", f"{event.get('recurringEventId') or event['id']}@google.com")
        # "eventType ... Possible values are: birthday, default, focusTime, fromGmail,
        # outOfOffice, workingLocation" - every stored event has one.
        event.setdefault("eventType", "default")
        # An invitation's copy names someone else as organizer (organizer.self false) and
        # marks the calendar's own attendee entry: "self: Whether this entry represents the
        # calendar on which this copy of the event appears."
        organizer = event.get("organizer")
        if isinstance(organizer, dict) and organizer.get("email") and organizer["email"] != calendar.id:
            organizer["self"] = False
        else:
            event["organizer"] = {"email": calendar.id, "self": True}
        for attendee in event.get("attendees") or ():
            if isinstance(attendee, dict) and attendee.get("email") == calendar.id:
                attendee["self"] = True
        return event

    def update_event(self, calendar_id: str, event_id: str, changes: Mapping[str, Any]) -> None:
        """Change a stored event as the therapist would in the Calendar app."""
        with self.lock:
            calendar = self._calendar(calendar_id)
            event = calendar.events[event_id]
            _merge(event, changes)
            self._touch(calendar, event, stamp="updated" not in changes)
            self._stamp_series(calendar, event)

    def delete_event(self, calendar_id: str, event_id: str, *, at: str | None = None) -> None:
        """Delete as the therapist would: the event stays, as a cancelled tombstone.

        On the organizer's calendar it keeps its details; a removed invitation copy keeps only
        the tombstone fields (see TOMBSTONE_KEYS). `at` (RFC 3339) is when it happened.
        """
        self.update_event(calendar_id, event_id, {"status": "cancelled", **({"updated": at} if at else {})})
        with self.lock:
            event = self._calendar(calendar_id).events[event_id]
            if not self._organizer(event):
                self._strip(event)

    def forget_details(self, calendar_id: str, event_id: str) -> None:
        """Time passed: a deleted event's details are gone ("Such cancelled events will
        eventually disappear, so do not rely on them being available indefinitely")."""
        with self.lock:
            event = self._calendar(calendar_id).events[event_id]
            assert event.get("status") == "cancelled"
            self._strip(event)

    def purge_tombstone(self, calendar_id: str, event_id: str) -> None:
        """The tombstone is gone for good (get answers 404) but its id stays reserved (409)."""
        with self.lock:
            calendar = self._calendar(calendar_id)
            del calendar.events[event_id]
            calendar.reserved.add(event_id)

    def events(self, calendar_id: str, *, include_cancelled: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            calendar = self._calendar(calendar_id)
            return [
                json.loads(json.dumps(e))
                for e in calendar.events.values()
                if include_cancelled or e.get("status") != "cancelled"
            ]

    def expire_sync_tokens(self) -> None:
        """Every sync token issued so far answers 410 fullSyncRequired from now on."""
        with self.lock:
            for calendar in self.calendars.values():
                calendar.generation += 1

    def _calendar_json(self, calendar: _Calendar) -> dict[str, Any]:
        return {
            "kind": "calendar#calendar",
            "etag": f'"{calendar.seq}"',
            "id": calendar.id,
            "summary": calendar.summary,
            "timeZone": calendar.time_zone,
        }

    def _calendar_calendars_insert(self, *, body: Any, **_: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("summary"):
            raise ApiError(400, "required", "Missing summary.")
        cid = self.add_calendar(body["summary"], time_zone=body.get("timeZone") or "UTC", app_created=True)
        return self._calendar_json(self.calendars[cid])

    def _calendar_calendars_get(
        self, *, params: dict[str, str], granted: frozenset[str], **_: Any
    ) -> dict[str, Any]:
        calendar = self._calendar(params["calendarId"])
        self._check_app_created(calendar, granted, _scopes("calendar.calendars.get"))
        return self._calendar_json(calendar)

    def _calendar_calendarList_list(self, *, query: dict[str, str], **_: Any) -> dict[str, Any]:
        items = [
            {
                "kind": "calendar#calendarListEntry",
                "id": c.id,
                "summary": c.summary,
                "timeZone": c.time_zone,
                "accessRole": c.access_role,
                **({"primary": True} if c.primary else {}),
            }
            for c in self.calendars.values()
        ]
        return self._page(items, query, kind="calendar#calendarList", default=100, cap=250)

    def _calendar_calendarList_get(
        self, *, params: dict[str, str], granted: frozenset[str], **_: Any
    ) -> dict[str, Any]:
        calendar = self._calendar(params["calendarId"])
        self._check_app_created(calendar, granted, _scopes("calendar.calendarList.get"))
        return {
            "kind": "calendar#calendarListEntry",
            "id": calendar.id,
            "summary": calendar.summary,
            "timeZone": calendar.time_zone,
            "accessRole": calendar.access_role,
        }

    def _calendar_events_list(
        self,
        *,
        params: dict[str, str],
        query: dict[str, str],
        granted: frozenset[str],
        multi: Mapping[str, list[str]] | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        calendar = self._calendar(params["calendarId"])
        self._check_app_created(calendar, granted, _scopes("calendar.events.list"))
        single = query.get("singleEvents") == "true"
        show_deleted = query.get("showDeleted") == "true"
        sync = query.get("syncToken")
        first_seq = calendar.seq
        if query.get("pageToken"):
            try:
                first_seq = int(_unb64(query["pageToken"]).get("s", calendar.seq))
            except ValueError as exc:
                raise ApiError(400, "invalid", "Invalid page token value.") from exc
        if sync is not None:
            bad = [name for name in _SYNC_FORBIDDEN if name in query]
            if bad:
                raise ApiError(400, "invalid", f"Sync token cannot be used with {bad[0]}.")
            # syncToken: "it is not allowed to set showDeleted to False"
            if query.get("showDeleted") == "false":
                raise ApiError(400, "invalid", "showDeleted cannot be false with a sync token.")
            try:
                token = _unb64(sync)
            except ValueError:
                token = {}
            # "If the syncToken expires, the server will respond with a 410 GONE response code"
            if token.get("c") != calendar.id or token.get("g") != calendar.generation:
                raise ApiError(
                    410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."
                )
            if bool(token.get("single")) != single:
                raise ApiError(400, "invalid", "the fake: sync with other parameters than the initial list")
            if single:
                raise ApiError(501, "notImplemented", "the fake does not expand series in a sync")
            items = [e for e in calendar.events.values() if e["_seq"] > token["s"]]
            items.sort(key=lambda e: e["_seq"])
        elif single:
            items = self._instances(calendar, query, show_deleted)
        else:
            items = self._stored(calendar, query, show_deleted)
        # "eventTypes: Event types to return. Optional. This parameter can be repeated multiple
        # times to return events of different types. If unset, returns all event types."
        types = (multi or {}).get("eventTypes")
        if types:
            items = [e for e in items if e.get("eventType", "default") in types]
        prop = query.get("privateExtendedProperty")
        if prop is not None:
            name, _sep, value = prop.partition("=")
            items = [
                e
                for e in items
                if ((e.get("extendedProperties") or {}).get("private") or {}).get(name) == value
            ]
        token_out = _b64({"c": calendar.id, "g": calendar.generation, "s": first_seq, "single": single})
        page = self._page(
            [_public(e) for e in items],
            query,
            kind="calendar#events",
            default=250,  # maxResults: "By default the value is 250 events. The page size can never be larger than 2500"
            cap=2500,
            extra={
                "summary": calendar.summary,
                "timeZone": calendar.time_zone,
                "updated": _rfc3339(_now()),
                "accessRole": calendar.access_role,
            },
            sync_token=token_out,
        )
        if "nextPageToken" in page:
            page["nextPageToken"] = _b64({"o": _unb64(page["nextPageToken"])["o"], "s": first_seq})
        return page

    @staticmethod
    def _window(query: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
        """timeMin: "Lower bound (exclusive) for an event's end time to filter by"; timeMax:
        "Upper bound (exclusive) for an event's start time"; both "Must be an RFC3339 timestamp
        with mandatory time zone offset"."""

        def read(name: str) -> datetime | None:
            text = query.get(name)
            if text is None:
                return None
            value = datetime.fromisoformat(text)
            if value.tzinfo is None:
                raise ApiError(400, "badRequest", "Bad Request")  # an offset is required
            return value

        return read("timeMin"), read("timeMax")

    def _stored(
        self, calendar: _Calendar, query: Mapping[str, str], show_deleted: bool
    ) -> list[dict[str, Any]]:
        """The stored events (series masters, exceptions, single events), not expanded."""
        low, high = self._window(query)
        out = []
        for event in calendar.events.values():
            if event.get("status") == "cancelled" and not show_deleted and not event.get("recurringEventId"):
                continue
            if not event.get("recurrence"):
                start, end = _when(event.get("start")), _when(event.get("end"))
                if low and end and end <= low:
                    continue
                if high and start and start >= high:
                    continue
            out.append(event)
        out.sort(key=lambda e: e["_seq"])
        return out

    def _instances(
        self, calendar: _Calendar, query: Mapping[str, str], show_deleted: bool
    ) -> list[dict[str, Any]]:
        """singleEvents=true: series expanded into instances, exceptions applied."""
        low, high = self._window(query)
        exceptions = {e["id"]: e for e in calendar.events.values() if e.get("recurringEventId")}
        out: list[dict[str, Any]] = []
        for event in calendar.events.values():
            if event.get("recurringEventId"):
                continue
            if not event.get("recurrence"):
                if event.get("status") == "cancelled" and not show_deleted:
                    continue
                out.append(event)
                continue
            if event.get("status") == "cancelled":
                # "If showDeleted and singleEvents are both True, only single instances of
                # deleted events (but not the underlying recurring events) are returned":
                # a deleted series comes back as its instances, each cancelled and minimal
                # (google-api-ruby-client #860: "six months worth of events with the status
                # 'cancelled'").
                if show_deleted:
                    out += [self._minimal(instance) for instance in self._expand(event, high)]
                continue
            for instance in self._expand(event, high):
                exception = exceptions.get(instance["id"])
                if exception is not None:
                    if exception.get("status") == "cancelled":
                        if show_deleted:
                            out.append(self._minimal(exception))
                        continue
                    instance = exception
                out.append(instance)
        kept = []
        for event in out:
            start, end = _when(event.get("start")), _when(event.get("end"))
            if start is None:  # a minimal cancelled instance: judge it by its original start
                start = end = _when(event.get("originalStartTime"))
            if low and end and end <= low:
                continue
            if high and start and start >= high:
                continue
            kept.append(event)
        kept.sort(key=lambda e: (_when(e.get("start") or e.get("originalStartTime")) or _now(), e["id"]))
        return kept

    @staticmethod
    def _minimal(event: Mapping[str, Any]) -> dict[str, Any]:
        """A cancelled instance as Google lists it: "Cancelled exceptions are only guaranteed to
        have values for the id, recurringEventId and originalStartTime fields populated", and
        recorded payloads carry no `updated` and no summary (compass delete.single*.ts,
        react-google-calendar PR #9)."""
        keys = ("kind", "etag", "id", "status", "recurringEventId", "originalStartTime", "_seq")
        return {**{k: event[k] for k in keys if k in event}, "status": "cancelled"}

    @staticmethod
    def _expand(master: dict[str, Any], high: datetime | None) -> Iterator[dict[str, Any]]:
        start_raw, end_raw = master["start"], master["end"]
        zone_name = start_raw.get("timeZone")
        if not zone_name:
            # EventDateTime.timeZone: "For recurring events this field is required"
            raise ApiError(400, "invalid", "Missing time zone definition for start time.")
        tz = ZoneInfo(zone_name)
        start = _when(start_raw)
        end = _when(end_raw)
        assert start is not None and end is not None
        length = end - start
        local = start.astimezone(tz).replace(tzinfo=None)
        rules = [line for line in master["recurrence"] if line.startswith("RRULE:")]
        rule = rrulestr("\n".join(rules), dtstart=local, forceset=True)
        limit = high.astimezone(tz).replace(tzinfo=None) if high else local + timedelta(days=730)
        for count, moment in enumerate(rule):
            if moment >= limit or count > 5000:
                return
            begin = moment.replace(tzinfo=tz)
            stamp = begin.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            instance = {k: v for k, v in master.items() if k not in ("recurrence", "id")}
            instance.update(
                id=f"{master['id']}_{stamp}",
                recurringEventId=master["id"],
                originalStartTime={"dateTime": begin.isoformat(), "timeZone": zone_name},
                start={"dateTime": begin.isoformat(), "timeZone": zone_name},
                end={"dateTime": (begin + length).astimezone(tz).isoformat(), "timeZone": zone_name},
            )
            yield instance

    def _event(self, calendar: _Calendar, event_id: str) -> dict[str, Any]:
        event = calendar.events.get(event_id)
        if event is None:
            raise ApiError(404, "notFound", "Not Found")
        return event

    def _calendar_events_get(
        self, *, params: dict[str, str], granted: frozenset[str], **_: Any
    ) -> dict[str, Any]:
        calendar = self._calendar(params["calendarId"])
        self._check_app_created(calendar, granted, _scopes("calendar.events.get"))
        return _public(self._event(calendar, params["eventId"]))

    def _calendar_events_insert(
        self, *, params: dict[str, str], body: Any, granted: frozenset[str], **_: Any
    ) -> dict[str, Any]:
        calendar = self._calendar(params["calendarId"])
        self._check_app_created(calendar, granted, _scopes("calendar.events.insert"))
        if not isinstance(body, dict) or "start" not in body or "end" not in body:
            raise ApiError(400, "required", "Missing start or end time.")
        if "id" in body:
            if not _B32HEX.match(str(body["id"])):
                raise ApiError(400, "invalid", "Invalid resource id value.")
            # "if you are allowed to provide a resource ID, then the operation will only succeed
            # if no existing entry has that ID" (guide "Get specific versions of resources"):
            # a deleted event keeps its id (it is a cancelled entry), so re-inserting it is 409.
            if body["id"] in calendar.events or body["id"] in calendar.reserved:
                raise ApiError(409, "duplicate", "The requested identifier already exists.")
        event = self._new_event(calendar, {k: v for k, v in body.items() if k not in ("updated", "created")})
        event["created"] = _rfc3339(_now())
        self._touch(calendar, event)
        calendar.events[event["id"]] = event
        return _public(event)

    def _calendar_events_patch(
        self,
        *,
        params: dict[str, str],
        body: Any,
        headers: Mapping[str, str],
        granted: frozenset[str],
        **_: Any,
    ) -> dict[str, Any]:
        calendar = self._calendar(params["calendarId"])
        self._check_app_created(calendar, granted, _scopes("calendar.events.patch"))
        event = self._event(calendar, params["eventId"])
        wanted = headers.get("if-match") or headers.get("If-Match")
        if wanted and wanted != event["etag"]:
            # guide "Get specific versions of resources": a stale If-Match answers 412
            raise ApiError(412, "conditionNotMet", "Precondition Failed")
        _merge(
            event, {k: v for k, v in (body or {}).items() if k not in ("id", "etag", "updated", "created")}
        )
        self._touch(calendar, event)
        return _public(event)

    def _calendar_events_delete(self, *, params: dict[str, str], granted: frozenset[str], **_: Any) -> None:
        calendar = self._calendar(params["calendarId"])
        self._check_app_created(calendar, granted, _scopes("calendar.events.delete"))
        event = self._event(calendar, params["eventId"])
        if event.get("status") == "cancelled":
            # deleting a deleted event: 410 "Resource has been deleted" (python-client #210)
            raise ApiError(410, "deleted", "Resource has been deleted")
        event["status"] = "cancelled"
        self._touch(calendar, event)
        if not self._organizer(event):
            self._strip(event)
