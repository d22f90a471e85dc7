"""CalDAV sink: reminder events and tasks, one object each, in the configured collections only.

- Each item lives at `<collection>/<worker.identity.file_name(key, kind, generation)>` with UID
  `item_uid(key, kind, generation)`: an event and its task never share a UID (Cyrus/Fastmail,
  iCloud refuse a UID used in another calendar), and an item written again after a withdrawal
  gets a fresh name (Nextcloud's trash bin refuses the third DELETE of a reused name).
- `managed()` lists hrefs and etags (one PROPFIND per collection) and fetches bodies (one
  calendar-multiget) only for what changed since they were last read; the bodies' readings
  are cached by etag in the state folder, so an idle pass downloads no body. No
  calendar-query is sent (SOGo answers a comp-type-less one with nothing).
- A create checks the listing first (SOGo and Zimbra ignore `If-None-Match: *`) and then PUTs
  with `If-None-Match: *`; an existing item is adopted, never overwritten. Updates, task
  completions and deletions always carry `If-Match` (OX refuses a PUT without it): a 412 is a
  ConflictError, the therapist's edit is never overwritten.
- No request ever goes to an href outside the configured collection (hrefs are normalised:
  percent-decoding, dot segments).

Slightly over ~400 lines: listing by ETag, multiget and the four writes share the
ownership and in-collection checks.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

import structlog

from connectors.base import Capabilities, Receipt, normalise_url
from connectors.caldav import discovery
from connectors.caldav.source import multiget
from connectors.caldav.transport import (
    DAV,
    Answer,
    Transport,
    collection_url,
    href_path,
    is_calendar_object,
    member_name,
    public_url,
    short_hash,
)
from worker import identity
from worker.errors import (
    ConfigError,
    ConflictError,
    ConnectorError,
    DataError,
    NotFoundError,
    Problem,
    RefusedError,
)
from worker.files import write_private
from worker.model import ItemKind, Managed, Reminder

if TYPE_CHECKING:
    from worker.config import ReminderSettings, Settings

log = structlog.get_logger()


CACHE_VERSION = 1
CALENDAR = "text/calendar; charset=utf-8"


def _dump(item: Managed) -> dict[str, object]:
    return {
        "key": item.key,
        "kind": item.kind,
        "start": item.start.isoformat() if item.start else None,
        "status": item.status,
        "hash": item.payload_hash,
        "client": item.client_id,
        "reason": item.reason,
        "uid": item.uid,
        "owner": item.owner,
        "generation": item.generation,
    }


def _load(raw: object, ref: str, etag: str) -> Managed | None:
    if not isinstance(raw, dict):
        return None
    try:
        start = datetime.fromisoformat(str(raw["start"])) if raw.get("start") else None
        name = identity.parse_file_name(href_path(ref).rsplit("/", 1)[-1])
        return Managed(
            key=raw["key"],
            kind=raw["kind"],
            ref=ref,
            etag=etag,
            start=start,
            status=raw["status"],
            payload_hash=str(raw["hash"]),
            client_id=str(raw["client"]),
            reason=str(raw["reason"]),
            uid=str(raw["uid"]),
            named=name,
            owner=str(raw["owner"]),
            generation=int(raw["generation"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


class CalDavSink(Capabilities):
    """Writes reminder events to the events collection and tasks to the tasks collection."""

    def __init__(self, settings: Settings, reminders: ReminderSettings) -> None:
        self.name = reminders.name
        self.collections: dict[ItemKind, str] = {}
        start = self._discovery_start(settings, reminders)
        first = start or collection_url(
            str(reminders.events_url or reminders.tasks_url), "[reminders] events_url"
        )
        self._dav = Transport(settings, reminders, name=self.name, role="sink", first_url=first)
        wanted: tuple[tuple[ItemKind, str | None, str], ...] = (
            ("event", reminders.events_url, "events"),
            ("task", reminders.tasks_url, "tasks"),
        )
        for kind, url, label in wanted:
            named = str(getattr(reminders, f"{label}_calendar", None) or "")
            if named and start:
                self.collections[kind] = discovery.resolve(
                    self._dav, start, named, f"[reminders] {label}_calendar"
                )
            elif url:
                self.collections[kind] = collection_url(url, f"[reminders] {label}_url")
        if not self.collections:
            raise ConfigError([Problem(str(settings.path), "[reminders] kind = 'caldav' needs events_url")])
        if settings.source.kind == "caldav":
            sources = {normalise_url(collection_url(u, "[source] url")) for u in settings.source.all_urls}
            for url in self.collections.values():
                if normalise_url(url) in sources:
                    raise ConfigError(
                        [Problem(str(settings.path), "[reminders] must not write into the source calendar")]
                    )
        self._alarm = int(getattr(reminders, "alarm_minutes", 0) or 0)
        key = "\n".join(f"{k}={v}" for k, v in sorted(self.collections.items()))
        self._cache_file: Path | None = settings.state_dir / f"caldav-sink-{short_hash(key)}.json"
        self._cache: dict[str, dict[str, object]] = self._read_cache()  # href path -> {etag, item}
        self._listed: dict[str, dict[str, str]] = {}  # collection -> {href path: etag}, this pass
        self._bodies: dict[str, tuple[str, bytes]] = {}  # href path -> (etag, body) read this pass
        self._dirty = False

    @staticmethod
    def _discovery_start(settings: Settings, reminders: ReminderSettings) -> str:
        """Where calendars named by display name are looked for (only when one is)."""
        if not (getattr(reminders, "events_calendar", None) or getattr(reminders, "tasks_calendar", None)):
            return ""
        url = getattr(reminders, "url", None) or reminders.events_url or reminders.tasks_url
        if not url and settings.source.kind == "caldav" and settings.source.all_urls:
            url = settings.source.all_urls[0]
        if not url:
            raise ConfigError(
                [Problem(str(settings.path), "[reminders] events_calendar needs url (the server's address)")]
            )
        return collection_url(str(url), "[reminders] url")

    @property
    def transport(self) -> Transport:
        return self._dav

    def kinds(self) -> frozenset[ItemKind]:
        return frozenset(self.collections)

    # -- the cache of item readings, by etag ---------------------------------------------------

    def _read_cache(self) -> dict[str, dict[str, object]]:
        if self._cache_file is None:
            return {}
        try:
            raw = json.loads(self._cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if (
            not isinstance(raw, dict)
            or raw.get("version") != CACHE_VERSION
            or not isinstance(raw.get("items"), dict)
        ):
            return {}
        return {str(k): v for k, v in raw["items"].items() if isinstance(v, dict)}

    def _write_cache(self) -> None:
        self._dirty = False
        if self._cache_file is None or not self._cache_file.parent.is_dir():
            return
        body = json.dumps({"version": CACHE_VERSION, "items": self._cache}, sort_keys=True)
        with contextlib.suppress(OSError):
            write_private(self._cache_file, body)

    # -- reading -----------------------------------------------------------------------------

    def managed(self) -> list[Managed]:
        """Every item of ours: one PROPFIND per collection, plus one multiget for what changed."""

        out: list[Managed] = []
        by_url: dict[str, set[ItemKind]] = {}
        for kind, url in self.collections.items():
            by_url.setdefault(url, set()).add(kind)
        seen: set[str] = set()
        for url, kinds in by_url.items():
            listed = self._list(url)
            self._listed[url] = listed
            stale = [p for p, tag in listed.items() if not tag or self._cache.get(p, {}).get("etag") != tag]
            fetched = multiget(self._dav, url, sorted(stale), "list") if stale else {}
            for path, tag in listed.items():
                seen.add(path)
                ref = self._ref(url, path)
                if path in fetched:
                    from connectors import ical  # icalendar only when an item is read

                    got_tag, data = fetched[path]
                    tag = got_tag or tag
                    self._bodies[path] = (tag, data)
                    name = identity.parse_file_name(path.rsplit("/", 1)[-1])
                    item = ical.read_item(data, ref=ref, etag=tag, name=name)
                    self._cache[path] = {"etag": tag, "item": _dump(item) if item else None}
                    self._dirty = True
                elif path in stale:
                    continue  # listed, not readable (hidden from this account, or just gone)
                else:
                    item = _load(self._cache[path].get("item"), ref, tag)
                if item is not None and item.kind in kinds:
                    out.append(item)
        for path in set(self._cache) - seen:
            del self._cache[path]
            self._dirty = True
        if self._dirty:  # an idle pass leaves the file alone (each write is an fsync)
            self._write_cache()
        return out

    def _list(self, url: str) -> dict[str, str]:
        """Our members of the collection ({href path: etag}): names callsheet writes only."""
        found = self._dav.listing("list", url, "<D:getetag/><D:resourcetype/>")
        listed: dict[str, str] = {}
        for response in found.responses:
            name = member_name(self._dav.base(url), response.href)
            if name is None or identity.parse_file_name(name) is None:
                continue  # the collection, something outside it, or an item that is not ours
            listed[href_path(response.href)] = response.text(DAV, "getetag")
        return listed

    @staticmethod
    def _ref(url: str, path: str) -> str:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc, quote(path, safe="/@:"), "", ""))

    def _inside(self, ref: str, operation: str) -> str:
        """The collection holding `ref`; refuses anything outside the configured ones."""
        for url in self.collections.values():
            if (
                member_name(self._dav.base(url), ref) is not None
                and urlsplit(ref).netloc == urlsplit(url).netloc
            ):
                return url
        raise ConnectorError(
            f"{operation} {public_url(ref)}: outside the reminders calendar; refusing to touch it",
            source=self.name,
            operation=operation,
        )

    def _url_of(self, reminder: Reminder) -> str:
        collection = self.collections[reminder.kind]
        name = identity.file_name(reminder.key, reminder.kind, reminder.generation)
        return f"{collection}{quote(name)}"

    # -- writing -----------------------------------------------------------------------------

    def _send(self, operation: str, method: str, url: str, **kw: object) -> Answer:
        return self._dav.request(operation, method, url, detail=True, **kw)  # type: ignore[arg-type]

    def create(self, reminder: Reminder) -> Receipt:
        """PUT with If-None-Match: *; when the object exists already, adopt it as it is."""
        from connectors import ical  # icalendar only when an item is read or written

        url = self._url_of(reminder)
        collection = self.collections[reminder.kind]
        path = href_path(url)
        listed = self._listed.get(collection)
        exists = path in listed if listed is not None else None
        if exists is None:  # no listing this pass: ask (SOGo and Zimbra ignore If-None-Match)
            exists = self._send("create", "GET", url, ok=(200,), expected=(404, 410)).status == 200
        if not exists:
            data = ical.build_item(reminder, stamp=datetime.now(UTC), alarm_minutes=self._alarm)
            answer = self._send(
                "create",
                "PUT",
                url,
                body=data,
                headers={"If-None-Match": "*", "Content-Type": CALENDAR},
                ok=(200, 201, 204),
                expected=(412,),
            )
            if answer.status != 412:
                if listed is not None:
                    listed[path] = answer.etag
                self._written(url, answer.etag, data)
                return Receipt(ref=url, etag=answer.etag)
        # it exists (an earlier attempt whose answer we lost, or a lost state): adopt it
        found = self._send("create", "GET", url, ok=(200,), expected=(404, 410), readable=is_calendar_object)
        if found.status != 200:
            raise ConflictError(f"create {public_url(url)}: refused, yet not there", operation="create")
        name = identity.parse_file_name(path.rsplit("/", 1)[-1])
        existing = ical.read_item(found.body, ref=url, etag=found.etag, name=name)
        if existing is None or existing.key != reminder.key or existing.kind != reminder.kind:
            raise ConflictError(
                f"create {public_url(url)}: the name is taken by another item", operation="create"
            )
        return Receipt(ref=url, etag=existing.etag)

    def _current(self, item: Managed, operation: str) -> tuple[str, bytes]:
        """The etag and body of `item` as of its etag (read this pass, else one GET)."""
        path = href_path(item.ref)
        cached = self._bodies.get(path)
        if cached is not None and cached[0] and cached[0] == item.etag:
            return cached
        answer = self._send(operation, "GET", item.ref, ok=(200,), readable=is_calendar_object)
        if item.etag and answer.etag and answer.etag != item.etag:
            raise ConflictError(
                f"{operation} {public_url(item.ref)}: changed since it was read", operation=operation
            )
        tag = answer.etag or item.etag
        if not tag:
            raise RefusedError(
                f"{operation} {public_url(item.ref)}: the server gives no ETag; callsheet does not "
                "overwrite an item it cannot guard",
                source=self.name,
                operation=operation,
            )
        return tag, answer.body

    def _put_if_match(self, operation: str, item: Managed, etag: str, data: bytes) -> Receipt:
        headers = {"Content-Type": CALENDAR, "If-Match": etag}
        answer = self._send(operation, "PUT", item.ref, body=data, headers=headers, ok=(200, 201, 204))
        self._written(item.ref, answer.etag, data)
        return Receipt(ref=item.ref, etag=answer.etag)

    def _written(self, ref: str, etag: str, data: bytes) -> None:
        """Remember what we just stored, under the etag the server gave (none: read it next pass)."""
        from connectors import ical  # icalendar only when an item is read or written

        path = href_path(ref)
        self._bodies.pop(path, None)
        self._cache.pop(path, None)
        if not etag or etag.startswith("W/"):
            return
        self._bodies[path] = (etag, data)
        item = ical.read_item(
            data, ref=ref, etag=etag, name=identity.parse_file_name(path.rsplit("/", 1)[-1])
        )
        self._cache[path] = {"etag": etag, "item": _dump(item) if item else None}
        self._dirty = True

    def update(self, reminder: Reminder, item: Managed) -> Receipt:
        """New title and description, same time; ConflictError when the item moved on."""
        from connectors import ical  # icalendar only when an item is read or written

        self._inside(item.ref, "update")
        where = f"update {public_url(item.ref)}"
        try:
            etag, body = self._current(item, "update")
            data = ical.update_item(body, reminder, stamp=datetime.now(UTC))
            return self._put_if_match("update", item, etag, data)
        except NotFoundError as exc:
            raise ConflictError(f"{where}: the reminder is gone", operation="update") from exc
        except DataError as exc:
            raise ConflictError(f"{where}: no longer ours", operation="update") from exc

    def withdraw(self, item: Managed, *, note: str, delete: bool) -> Receipt:
        """Delete the event (If-Match), or complete the task with `note` (If-Match)."""
        from connectors import ical  # icalendar only when an item is read or written

        self._inside(item.ref, "withdraw")
        if delete:
            self._delete("withdraw", item)
            return Receipt(ref=item.ref, gone=True)
        if item.kind != "task":
            return Receipt(ref=item.ref, etag=item.etag)  # a past event stays as it was
        try:
            etag, body = self._current(item, "withdraw")
            data = ical.complete_item(body, note=note, stamp=datetime.now(UTC))
            return self._put_if_match("withdraw", item, etag, data)
        except NotFoundError:
            return Receipt(ref=item.ref, gone=True)
        except DataError as exc:
            where = f"withdraw {public_url(item.ref)}"
            raise ConflictError(f"{where}: no longer ours", operation="withdraw") from exc

    def _delete(self, operation: str, item: Managed) -> None:
        headers = {"If-Match": item.etag} if item.etag else {}
        self._send(operation, "DELETE", item.ref, headers=headers, ok=(200, 204), expected=(404, 410))
        path = href_path(item.ref)
        self._bodies.pop(path, None)
        if self._cache.pop(path, None) is not None:
            self._dirty = True
        for listed in self._listed.values():
            listed.pop(path, None)

    def delete(self, item: Managed) -> None:
        """Remove one of our items outright (purge); a missing item is fine."""
        self._inside(item.ref, "purge")
        self._delete("purge", item)

    # -- check ---------------------------------------------------------------------------------

    def describe(self) -> list[str]:
        """Lines for `callsheet check`: each collection, and whether the tasks one takes VTODO."""
        lines = []
        if self._dav.insecure_http:
            lines.append(
                "warning: plain http: the password crosses the network in clear (allow_insecure_http)"
            )
        for kind, url in self.collections.items():
            info = discovery.require_calendar(self._dav, url, f"[reminders] {kind}s_url")
            comps = info.components
            if kind == "task":
                if comps is None:
                    verdict = "does not say whether it accepts tasks; the write check below decides"
                elif "VTODO" in comps:
                    verdict = "accepts tasks (VTODO)"
                else:
                    verdict = (
                        "does NOT accept tasks (VTODO): make a calendar for tasks and set tasks_url to it"
                    )
                lines.append(f"tasks calendar {info.line()}; {verdict}")
            else:
                lines.append(f"events calendar {info.line()}")
                if comps is not None and "VEVENT" not in comps:
                    lines.append(
                        "  warning: this calendar does not list VEVENT; reminder events may be refused"
                    )
        return lines

    def calendars(self) -> list[discovery.CalendarInfo]:
        """Every calendar the account sees (for `callsheet check --list`)."""
        return discovery.calendars(self._dav, next(iter(self.collections.values())))

    def close(self) -> None:
        if self._dirty:
            self._write_cache()
        self._dav.close()
