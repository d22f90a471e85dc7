"""CalDAV sink: reminder events and tasks, one object each."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import structlog

from connectors.base import Receipt
from connectors.ical import build_item, complete_item, read_item, uid_for, update_item
from worker.errors import (
    ConfigError,
    ConflictError,
    DataError,
    NotFoundError,
    Problem,
)
from worker.model import ItemKind, Managed, Reminder

if TYPE_CHECKING:
    from worker.config import ReminderSettings, Settings
from connectors.caldav.discovery import _describe_collection
from connectors.caldav.transport import _body, _collection_url, _Dav, _etag, public_url

log = structlog.get_logger()

# -- sink -----------------------------------------------------------------------------------


class CalDavSink:
    """Writes reminder events to `events_url` and tasks to `tasks_url`; touches only our items."""

    def __init__(self, settings: Settings, reminders: ReminderSettings) -> None:
        self.name = reminders.name
        self.collections: dict[ItemKind, str] = {}
        if reminders.events_url:
            self.collections["event"] = _collection_url(reminders.events_url, "[reminders] events_url")
        if reminders.tasks_url:
            self.collections["task"] = _collection_url(reminders.tasks_url, "[reminders] tasks_url")
        if not self.collections:
            raise ConfigError([Problem(str(settings.path), "[reminders] kind = 'caldav' needs events_url")])
        if settings.source.kind == "caldav":
            sources = {_collection_url(u, "[source] url") for u in settings.source.all_urls}
            for url in self.collections.values():
                if url in sources:
                    raise ConfigError(
                        [Problem(str(settings.path), "[reminders] must not write into the source calendar")]
                    )
        first = next(iter(self.collections.values()))
        self._dav = _Dav(settings, reminders, name=self.name, role="sink", first_url=first)
        self._bodies: dict[str, tuple[str, bytes]] = {}  # ref -> (etag, body) from the last listing

    def kinds(self) -> frozenset[ItemKind]:
        return frozenset(self.collections)

    def managed(self) -> list[Managed]:
        """Every item carrying our key: one calendar-query REPORT per collection."""
        out: list[Managed] = []
        by_url: dict[str, set[ItemKind]] = {}
        for kind, url in self.collections.items():
            by_url.setdefault(url, set()).add(kind)
        self._bodies.clear()
        for url, kinds in by_url.items():
            for ref, etag, data in self._list(url):
                item = read_item(data, ref=ref, etag=etag)
                if item is None or item.kind not in kinds:
                    continue
                self._bodies[ref] = (etag, data)
                out.append(item)
        return out

    def _list(self, url: str) -> list[tuple[str, str, bytes]]:
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            '<C:filter><C:comp-filter name="VCALENDAR"/></C:filter>'
            "</C:calendar-query>"
        )
        response = self._dav.send(
            "list",
            "REPORT",
            url,
            body=body,
            headers={"Depth": "1", "Content-Type": 'application/xml; charset="utf-8"'},
            ok=(207,),
        )
        out = []
        for result in self._dav.call("list", url, response.parse_calendar_query):
            if result.status != 200 or not result.calendar_data:
                continue
            ref = self._ref(url, result.href)
            out.append((ref, str(result.etag or ""), result.calendar_data.encode("utf-8")))
        return out

    @staticmethod
    def _ref(url: str, href: str) -> str:
        parts = urlsplit(url)
        path = urlsplit(href).path or href
        return urlunsplit((parts.scheme, parts.netloc, quote(unquote(path), safe="/@:"), "", ""))

    def _url_of(self, reminder: Reminder) -> str:
        collection = self.collections[reminder.kind]
        return f"{collection}{quote(uid_for(reminder.key))}.ics"

    def create(self, reminder: Reminder) -> Receipt:
        """PUT with If-None-Match: *; when the object exists already, adopt it as it is."""
        url = self._url_of(reminder)
        data = build_item(reminder, stamp=datetime.now(UTC))
        response = self._dav.send(
            "create",
            "PUT",
            url,
            body=data,
            headers={"If-None-Match": "*", "Content-Type": "text/calendar; charset=utf-8"},
            ok=(200, 201, 204),
            expected=(412,),
        )
        if response.status != 412:
            return Receipt(ref=url, etag=_etag(response))
        # it exists (an earlier attempt whose answer we lost, or a lost state): adopt it
        found = self._dav.send("create", "GET", url, ok=(200,), expected=(404,))
        if found.status == 404:
            raise ConflictError(f"create {public_url(url)}: refused, yet not there", operation="create")
        existing = read_item(_body(found), ref=url, etag=_etag(found))
        if existing is None or existing.key != reminder.key:
            raise ConflictError(
                f"create {public_url(url)}: the name is taken by another item", operation="create"
            )
        return Receipt(ref=url, etag=existing.etag)

    def _current(self, item: Managed, operation: str) -> bytes:
        """The body of `item` as of its etag (from the listing, else one GET)."""
        cached = self._bodies.get(item.ref)
        if cached is not None and cached[0] == item.etag:
            return cached[1]
        response = self._dav.send(operation, "GET", item.ref, ok=(200,))
        if item.etag and _etag(response) and _etag(response) != item.etag:
            raise ConflictError(
                f"{operation} {public_url(item.ref)}: changed since it was read", operation=operation
            )
        return _body(response)

    def _put_if_match(self, operation: str, item: Managed, data: bytes) -> Receipt:
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if item.etag:
            headers["If-Match"] = item.etag
        response = self._dav.send(operation, "PUT", item.ref, body=data, headers=headers, ok=(200, 201, 204))
        self._bodies.pop(item.ref, None)
        return Receipt(ref=item.ref, etag=_etag(response))

    def update(self, reminder: Reminder, item: Managed) -> Receipt:
        """New title and description, same time; ConflictError when the item moved on."""
        where = f"update {public_url(item.ref)}"
        try:
            data = update_item(self._current(item, "update"), reminder, stamp=datetime.now(UTC))
            return self._put_if_match("update", item, data)
        except NotFoundError as exc:
            raise ConflictError(f"{where}: the reminder is gone", operation="update") from exc
        except DataError as exc:
            raise ConflictError(f"{where}: no longer ours", operation="update") from exc

    def withdraw(self, item: Managed, *, note: str, delete: bool) -> Receipt:
        """Delete the event (If-Match), or complete the task with `note` (If-Match)."""
        if delete:
            headers = {"If-Match": item.etag} if item.etag else {}
            self._dav.send("withdraw", "DELETE", item.ref, headers=headers, ok=(200, 204), expected=(404,))
            self._bodies.pop(item.ref, None)
            return Receipt(ref=item.ref, gone=True)
        if item.kind != "task":
            return Receipt(ref=item.ref, etag=item.etag)  # a past event stays as it was
        try:
            data = complete_item(self._current(item, "withdraw"), note=note, stamp=datetime.now(UTC))
            return self._put_if_match("withdraw", item, data)
        except NotFoundError:
            return Receipt(ref=item.ref, gone=True)
        except DataError as exc:
            where = f"withdraw {public_url(item.ref)}"
            raise ConflictError(f"{where}: no longer ours", operation="withdraw") from exc

    def delete(self, item: Managed) -> None:
        """Remove one of our items outright (purge); a missing item is fine."""
        self._dav.send("purge", "DELETE", item.ref, ok=(200, 204), expected=(404,))
        self._bodies.pop(item.ref, None)

    def describe(self) -> list[str]:
        """Lines for `callsheet check`: each collection, and whether the tasks one takes VTODO."""
        lines = []
        for kind, url in self.collections.items():
            text = _describe_collection(self._dav, url)
            if kind == "task":
                calendar = self._dav.client.calendar(url=url)
                components = self._dav.call("describe", url, calendar.get_supported_components)
                verdict = (
                    "accepts tasks (VTODO)"
                    if "VTODO" in components
                    else "does NOT accept tasks (VTODO): make a calendar for tasks and set tasks_url to it"
                )
                lines.append(f"tasks calendar {url}: {text}; {verdict}")
            else:
                lines.append(f"events calendar {url}: {text}")
            if kind == "event" and "VEVENT" not in text:
                lines.append("  warning: this calendar does not list VEVENT; reminder events may be refused")
        return lines

    def close(self) -> None:
        self._dav.close()
