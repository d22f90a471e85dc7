"""CalDAV source: reads appointments incrementally (sync-collection, multiget)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from xml.sax.saxutils import escape as xml_escape

import structlog
from caldav.elements import dav

from connectors.ical import parse_calendar
from worker.errors import (
    ConfigError,
    ConnectorError,
    DataError,
    Problem,
)
from worker.model import SourceBatch, Window

if TYPE_CHECKING:
    from worker.config import Settings, SourceSettings
from connectors.caldav.discovery import _describe_collection, _visible_calendars
from connectors.caldav.transport import LIMITS, _collection_url, _Dav, _path, _short_hash

log = structlog.get_logger()

CURSOR_VERSION = 1
_RECURRING_HINTS = (b"RRULE", b"RDATE", b"RECURRENCE-ID")
_DTSTART_DAY = re.compile(rb"^DTSTART[^:\r\n]*:(\d{8})", re.MULTILINE)
# VTIMEZONE blocks carry RRULEs and DTSTARTs of their own: not the appointment's
_VTIMEZONE = re.compile(rb"^BEGIN:VTIMEZONE.*?^END:VTIMEZONE", re.MULTILINE | re.DOTALL)


# -- source ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _CollectionCursor:
    """What the cursor remembers of one collection."""

    mode: str = "sync"  # "sync": sync-collection; "propfind": getetag listing (no RFC 6578)
    token: str | None = None
    etags: dict[str, str] = field(default_factory=dict)  # href path -> etag
    recurring: set[str] = field(default_factory=set)
    later: set[str] = field(default_factory=set)  # objects starting after the window end

    @classmethod
    def load(cls, raw: object) -> _CollectionCursor:
        if not isinstance(raw, dict):
            return cls()
        etags = raw.get("etags")
        token = raw.get("token")
        return cls(
            mode="propfind" if raw.get("mode") == "propfind" else "sync",
            token=token if isinstance(token, str) and token else None,
            etags={str(k): str(v) for k, v in etags.items()} if isinstance(etags, dict) else {},
            recurring={str(x) for x in raw.get("recurring") or []},
            later={str(x) for x in raw.get("later") or []},
        )

    def dump(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "token": self.token,
            "etags": dict(sorted(self.etags.items())),
            "recurring": sorted(self.recurring),
            "later": sorted(self.later),
        }


@dataclass(slots=True)
class _Listing:
    """One collection's answer to "what changed?"."""

    changed: dict[str, str]  # href path -> etag ("" when the server gave none)
    deleted: set[str]
    full: bool  # `changed` lists every object: anything else in the cursor is gone
    token: str | None
    mode: str
    bodies: dict[str, bytes] = field(default_factory=dict)  # bodies that came with the listing


class CalDavSource:
    """Reads appointments from one or more CalDAV collections (read-only)."""

    def __init__(self, settings: Settings, source: SourceSettings) -> None:
        self.name = source.name
        self.tz = settings.practice.tz
        self.default_length = settings.rules.default_length
        self.urls = [_collection_url(u, "[source] url") for u in source.all_urls]
        if not self.urls:
            raise ConfigError([Problem(str(settings.path), "[source] kind = 'caldav' needs url or urls")])
        self._dav = _Dav(settings, source, name=self.name, role="source", first_url=self.urls[0])

    def item_id(self, url: str, path: str) -> str:
        """The batch's id of one object: unique across collections (and servers)."""
        return f"{_short_hash(url)}:{path}"

    def read(self, window: Window, cursor: dict[str, object] | None) -> SourceBatch:
        """What changed in every collection since `cursor` (everything when None).

        Raises:
            TransientError, AuthError, NotFoundError, ConnectorError: a collection could not
                be read; nothing of this pass is kept, the next pass starts from `cursor`.
        """
        previous = cursor if isinstance(cursor, dict) and cursor.get("version") == CURSOR_VERSION else {}
        window_key = [window.start.isoformat(), window.end.isoformat()]
        moved = previous.get("window") != window_key
        old = previous.get("collections")
        old_collections = old if isinstance(old, dict) else {}
        batch = SourceBatch()
        collections: dict[str, object] = {}
        for url in self.urls:
            state = _CollectionCursor.load(old_collections.get(url))
            collections[url] = self._read_collection(url, state, window, moved=moved, batch=batch).dump()
        for url, raw in old_collections.items():
            if url not in collections:  # a calendar dropped from the config: its objects are gone
                gone = _CollectionCursor.load(raw)
                batch.removed |= {self.item_id(url, p) for p in gone.etags}
        batch.cursor = {"version": CURSOR_VERSION, "window": window_key, "collections": collections}
        return batch

    def _read_collection(
        self, url: str, state: _CollectionCursor, window: Window, *, moved: bool, batch: SourceBatch
    ) -> _CollectionCursor:
        listing = self._list(url, state, moved=moved)
        old = state.etags
        etags = dict(old)
        if listing.full:
            if not listing.changed and len(old) >= LIMITS.empty_guard:
                raise ConnectorError(
                    f"read {url}: the calendar lists no objects, though it held {len(old)}; refusing "
                    "to treat every appointment as cancelled (is the right calendar configured?)",
                    source=self.name,
                    operation="read",
                )
            removed = set(old) - set(listing.changed)
        else:
            removed = set(listing.deleted)
        for path in removed:
            etags.pop(path, None)
        fetch = {p for p, tag in listing.changed.items() if not tag or old.get(p) != tag}
        recurring = state.recurring - removed
        later = state.later - removed
        if moved:
            fetch |= (state.recurring | state.later) - removed
        bodies = {p: b for p, b in listing.bodies.items() if p in fetch}
        # one day of slack each way: raw dates are in whatever zone the object uses
        low, high = _day(window.start - timedelta(days=1)), _day(window.end + timedelta(days=1))
        soon = _day(window.end - timedelta(days=1))  # at or after this: may enter the window later
        fetched_etags = self._multiget(url, sorted(fetch - set(bodies)), bodies)
        for path in sorted(fetch):
            tag = fetched_etags.get(path) or listing.changed.get(path) or old.get(path, "")
            data = bodies.get(path)
            recurring.discard(path)
            later.discard(path)
            if data is None:  # gone between the listing and the multiget
                if path in old:
                    removed.add(path)
                etags.pop(path, None)
                continue
            etags[path] = tag
            item = self.item_id(url, path)
            if _is_recurring(data):
                recurring.add(path)
            else:
                days = _dtstart_days(data)
                if days and all(d < low or d > high for d in days):
                    # a one-off plainly outside the window: nothing to parse (history, or later)
                    batch.changed[item] = []
                    if any(d > high for d in days):
                        later.add(path)
                    continue
            try:
                events = parse_calendar(
                    data,
                    item=item,
                    source=self.name,
                    window=window,
                    tz=self.tz,
                    default_length=self.default_length,
                )
            except DataError as exc:
                log.warning("source.item.skipped", source=self.name, item=path, problem=str(exc))
                batch.bad += 1
                continue  # the etag stays: a broken object is reported once, not every pass
            if not events and path not in recurring and any(d >= soon for d in _dtstart_days(data)):
                later.add(path)
            batch.changed[item] = events
        batch.removed |= {self.item_id(url, p) for p in removed}
        log.debug(
            "source.collection.read",
            source=self.name,
            collection=url,
            mode=listing.mode,
            changed=len(fetch),
            removed=len(removed),
        )
        return _CollectionCursor(
            mode=listing.mode, token=listing.token, etags=etags, recurring=recurring, later=later
        )

    def _list(self, url: str, state: _CollectionCursor, *, moved: bool) -> _Listing:
        """Ask the collection what changed: one request when nothing did."""
        calendar = self._dav.client.calendar(url=url)
        if state.mode == "propfind" and not moved:
            return self._propfind_listing(url, calendar)
        # a collection in propfind mode tries sync-collection again when the window moves (daily)
        token = state.token if state.mode == "sync" else None
        result = self._dav.call(
            "sync", url, lambda: calendar.get_objects_by_sync_token(sync_token=token, load_objects=False)
        )
        new_token = str(result.sync_token) if result.sync_token else None
        if new_token is None or new_token.startswith("fake-"):
            # caldav fell back to a full listing: our token was refused, or the server cannot
            # sync. Treat it as complete; start again without a token (or by PROPFIND if even a
            # fresh sync failed).
            own = _path(url).rstrip("/")
            changed: dict[str, str] = {}
            bodies: dict[str, bytes] = {}
            for obj in result:
                path = _path(obj.url)
                if path.rstrip("/") == own:
                    continue
                changed[path] = str(obj.etag or "")
                raw = getattr(obj, "raw_data", None)
                if isinstance(raw, bytes):
                    bodies[path] = raw
            mode = "propfind" if token is None else "sync"
            log.info("source.sync.fallback", source=self.name, collection=url, mode=mode, count=len(changed))
            return _Listing(changed=changed, deleted=set(), full=True, token=None, mode=mode, bodies=bodies)
        deleted = {_path(u) for u in result.deleted_urls}
        own = _path(url).rstrip("/")
        changed = {}
        for obj in result:
            path = _path(obj.url)
            if path not in deleted and path.rstrip("/") != own:  # iCloud lists the collection too
                changed[path] = str(obj.etag or "")
        return _Listing(changed=changed, deleted=deleted, full=token is None, token=new_token, mode="sync")

    def _propfind_listing(self, url: str, calendar: Any) -> _Listing:
        def once() -> dict[str, dict[str, str]]:
            response = calendar.get_properties([dav.GetEtag()], depth=1, parse_response_xml=False)
            props: dict[str, dict[str, str]] = response.expand_simple_props([dav.GetEtag()])
            return props

        props = self._dav.call("list", url, once)
        own = _path(url).rstrip("/")
        changed = {}
        for href, values in props.items():
            path = _path(href)
            if path.rstrip("/") == own or path.endswith("/"):
                continue  # the collection itself (or a sub-collection)
            changed[path] = str(values.get(dav.GetEtag.tag) or "")
        return _Listing(changed=changed, deleted=set(), full=True, token=None, mode="propfind")

    def _multiget(self, url: str, paths: list[str], bodies: dict[str, bytes]) -> dict[str, str]:
        """Fetch these objects into `bodies` with calendar-multiget REPORTs; return their etags.

        The REPORT is built and read here (not with Calendar.multiget) so that thousands of
        bodies do not each become a caldav object on a cold read.
        """
        etags: dict[str, str] = {}
        for start in range(0, len(paths), LIMITS.multiget_batch):
            chunk = paths[start : start + LIMITS.multiget_batch]
            hrefs = "".join(f"<D:href>{xml_escape(quote(p, safe='/@:'))}</D:href>" for p in chunk)
            body = (
                '<?xml version="1.0" encoding="utf-8"?>'
                '<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
                f"<D:prop><D:getetag/><C:calendar-data/></D:prop>{hrefs}</C:calendar-multiget>"
            )
            response = self._dav.send(
                "fetch",
                "REPORT",
                url,
                body=body,
                headers={"Content-Type": 'application/xml; charset="utf-8"'},
                ok=(207,),
            )
            results = self._dav.call("fetch", url, response.parse_calendar_query)
            for result in results:
                if result.status != 200 or not result.calendar_data:
                    continue  # 404: gone since the listing
                path = _path(result.href)
                bodies[path] = result.calendar_data.encode("utf-8")
                etags[path] = str(result.etag or "")
        return etags

    def describe(self) -> list[str]:
        """Lines for `callsheet check`: the configured calendars, and the others the account sees."""
        lines = []
        for url in self.urls:
            lines.append(f"source calendar {url}: {_describe_collection(self._dav, url)}")
        lines.extend(_visible_calendars(self._dav, self.urls))
        return lines

    def close(self) -> None:
        self._dav.close()


def _is_recurring(data: bytes) -> bool:
    """True when the object holds a series (a cheap scan; time zone rules do not count)."""
    body = _VTIMEZONE.sub(b"", data)
    return any(hint in body for hint in _RECURRING_HINTS)


def _dtstart_days(data: bytes) -> list[bytes]:
    """The raw DTSTART dates (YYYYMMDD) of the object's components, time zone rules left out."""
    days: list[bytes] = _DTSTART_DAY.findall(_VTIMEZONE.sub(b"", data))
    return days


def _day(moment: datetime) -> bytes:
    return moment.strftime("%Y%m%d").encode()
