"""Google Calendar as a read-only source of appointments (one or more calendar ids).

Each pass first asks every calendar "has anything changed?" with `events.list(syncToken=…)`
(no `singleEvents`, ids only): one request per calendar when nothing changed. Only a calendar
that changed (or has no token yet, or whose window moved: once a day) is re-listed over the
window with `singleEvents=true`, every page, and all of its events are returned grouped by
series. Deletions are by absence: an object listed last time and missing now is reported
removed, and only after every page of that calendar succeeded (an error leaves the whole read
undone: the cursor and the state stay as they were). A 410 (`fullSyncRequired`) drops the
token and re-lists; it is never swallowed.

What Google returns that is not a plain appointment (docs/google.md, docs/policy.md):
- a deleted whole series comes back as cancelled instances ("If showDeleted and singleEvents
  are both True, only single instances of deleted events (but not the underlying recurring
  events) are returned"): when its series itself is cancelled (or gone), it is deleted, and
  absent like any deleted object: its past stays history;
- a deleted single event counts as a cancellation only as docs/policy.md says (the organizer's
  copy with its details, deleted before its start, not moved: no live event shares its
  iCalUID or id); otherwise it is absent;
- the window listing asks only for the event types that matter (`eventTypes`).

The cursor keeps, per calendar, the sync token and the ids of the objects the window held
(`worker.object_ids`: digests, never Google's event ids), each with the end of its last
instance seen, and the window bounds. The token for the next check is taken *before* the
window is listed, so a change made during the listing is seen by the next pass.

Aged out, not removed: the window listing filters on an instance's end ("timeMin: lower
bound (exclusive) for an event's end time"), so once the window has moved past an
appointment it is absent although it still exists. An absent object whose last end seen is
at or before the new window start is therefore dropped from the cursor silently (neither
changed nor removed); any other absent object is removed. Why the remembered end and not the
sync-token feed's cancelled entries: the end needs no extra request or field and holds for
every way a calendar comes to be re-listed (a moved window, a 410, a calendar the feed never
covered), while the feed is only read to ask "anything changed?". What it cannot tell is an
appointment deleted after it ended (it ages out like one that stays): all of its occurrences
are before the window, history either way. An end the cursor does not know (a cursor of
version 2, upgraded by `worker.object_ids`, or an object that could not be read): when such
an object is absent after the window moved, the stretch the window left (old start to new
start) is listed once more, and an object with a live instance there aged out; one absent
from both listings is removed.

For the same reason a listing is `complete` (every object state holds and the batch does not
name is gone) only when the cursor knew none of the calendars: with a known listing,
`removed` is exact, and an aged-out object must not be declared gone by omission.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import structlog

from connectors.base import Capabilities
from connectors.google import convert
from connectors.google.api import Account, GoneError, GoogleApi
from connectors.google.auth import READ_SCOPES
from worker.errors import DataError, NotFoundError
from worker.model import Event, SourceBatch, Window
from worker.object_ids import GOOGLE_CURSOR, google_object_id, upgrade_cursor

if TYPE_CHECKING:
    from worker.config import Settings, SourceSettings

log = structlog.get_logger()

CURSOR_VERSION = GOOGLE_CURSOR  # 3: objects by id (worker.object_ids), each with its last end seen
PAGE_SIZE = 2500  # the most Google allows; a page may still hold fewer


class GoogleSource(Capabilities):
    """Reads appointments from Google Calendar."""

    def __init__(self, settings: Settings, source: SourceSettings) -> None:
        self.name = source.name
        self.calendar_ids = source.all_calendar_ids
        self.tz = settings.practice.tz
        self.default_length = settings.rules.default_length
        markers = settings.markers
        self.colors = (*markers.no_show_colors, *markers.cancelled_colors)
        self.api = GoogleApi(
            Account(
                token_file=source.token_file,
                api_endpoint=source.api_endpoint,
                timeout=source.timeout,
                verify_tls=source.verify_tls,
                config_path=settings.path,
                every=settings.run.every,
                token_store=settings.token_store(source),
            ),
            source=self.name,
            scopes=[READ_SCOPES],
        )

    # -- the pass -------------------------------------------------------------------------------

    def read(self, window: Window, cursor: dict[str, object] | None) -> SourceBatch:
        """What changed since `cursor`: the whole window of each calendar that changed."""
        upgraded = upgrade_cursor(cursor)
        previous = upgraded if isinstance(upgraded, dict) and upgraded.get("v") == CURSOR_VERSION else {}
        window_key = [window.start.isoformat(), window.end.isoformat()]
        moved = previous.get("window") != window_key
        old = previous.get("calendars")
        old_calendars: Mapping[str, Any] = old if isinstance(old, Mapping) else {}
        batch = SourceBatch()
        calendars: dict[str, dict[str, object]] = {}
        relisted = 0
        clean = True
        cold = True  # the cursor knew no calendar's objects
        listings: list[tuple[int, str, dict[str, dict[str, Any]], tzinfo, dict[str, str | None] | None]] = []
        kept: dict[str, dict[str, str | None]] = {}  # the objects of calendars not re-listed this pass
        for index, calendar_id in enumerate(self.calendar_ids):
            before = old_calendars.get(calendar_id)
            before = before if isinstance(before, Mapping) else {}
            token = before.get("token") if isinstance(before.get("token"), str) else None
            known_items = _known(before.get("items"))
            cold = cold and known_items is None
            must_list = moved or token is None or known_items is None
            next_token: str | None = None
            if token is not None:
                try:
                    changed, next_token = self._changes(calendar_id, token)
                except GoneError:
                    log.warning("source.sync_token.expired", source=self.name, calendar=index)
                    changed, next_token = True, None
                must_list = must_list or changed
            if next_token is None:
                next_token = self._new_token(calendar_id, window)
            if must_list:
                relisted += 1
                listed, fallback = self._list_window(calendar_id, window, batch, index)
                listings.append((index, calendar_id, listed, fallback, known_items))
                calendars[calendar_id] = {"token": next_token, "items": {}}
            else:
                kept[calendar_id] = known_items or {}
                calendars[calendar_id] = {
                    "token": next_token,
                    "items": dict(sorted(kept[calendar_id].items())),
                }
        # Moved, not deleted: an id or iCalUID that is live anywhere this pass can see (the
        # calendars not re-listed are known by object id only).
        live: set[str] = set()
        for _, _, listed, _, _ in listings:
            for raw in listed.values():
                if not convert.is_cancelled(raw):
                    live |= {str(raw.get("iCalUID") or ""), convert.series_id(raw)}

        def is_live(name: str) -> bool:
            return name in live or any(self._item(c, name) in held for c, held in kept.items())

        for index, calendar_id, listed, fallback, known_items in listings:
            items, bad = self._convert(calendar_id, listed, fallback, is_live, batch, index)
            clean = clean and not bad
            ends: dict[str, str | None] = {}
            for item in sorted(items):
                events = batch.changed.get(item)
                last = max((e.end for e in events), default=None) if events else None
                ends[item] = _iso(last) if last is not None else (known_items or {}).get(item)
            absent = {i for i in set(known_items or {}) - items if not _aged(known_items, i, window.start)}
            since = _start(previous.get("window"))
            if (
                moved
                and since is not None
                and since < window.start
                and any((known_items or {}).get(i) is None for i in absent)
            ):
                # ends unknown (an upgraded cursor): what the stretch the window left still holds
                absent -= self._held(calendar_id, Window(start=since, end=window.start), index)
            batch.removed |= absent  # the others aged out: they still exist, and are no longer ours
            calendars[calendar_id]["items"] = ends
        for calendar_id, before in old_calendars.items():
            if calendar_id not in calendars and isinstance(before, Mapping):
                batch.removed |= set(_known(before.get("items")) or {})
        # Complete only when every calendar was listed in full, nothing was skipped and the
        # cursor knew none of them: then any object state holds that is not in `changed` is
        # really gone. With a known listing `removed` is exact, and an object that aged out
        # (absent, not gone) must not be counted gone by omission.
        batch.complete = relisted == len(self.calendar_ids) and clean and cold
        batch.cursor = {"v": CURSOR_VERSION, "window": window_key, "calendars": calendars}
        log.debug(
            "source.google.read",
            source=self.name,
            calendar=len(self.calendar_ids),
            changed=len(batch.changed),
            removed=len(batch.removed),
            requests=self.api.requests,
        )
        return batch

    @staticmethod
    def _item(calendar_id: str, series: str) -> str:
        """The id of one object (a series or a single event) of one calendar: a digest."""
        return google_object_id(calendar_id, series)

    # -- requests --------------------------------------------------------------------------------

    def _changes(self, calendar_id: str, token: str) -> tuple[bool, str | None]:
        """Ask whether anything changed since `token`; returns (changed, next token)."""
        events = self.api.calendar.events()
        changed = False
        next_token: str | None = None
        for page in self.api.pages(
            lambda page_token: events.list(
                calendarId=calendar_id,
                syncToken=token,
                eventTypes=list(convert.LISTED_TYPES),
                pageToken=page_token,
                maxResults=PAGE_SIZE,
                fields=convert.CHANGES_FIELDS,
            ),
            operation="events.list(sync)",
        ):
            changed = changed or bool(page.get("items"))
            next_token = page.get("nextSyncToken") or next_token
        return changed, next_token

    def _new_token(self, calendar_id: str, window: Window) -> str | None:
        """A fresh sync token (the listing without singleEvents, from the window's start)."""
        events = self.api.calendar.events()
        next_token: str | None = None
        for page in self.api.pages(
            lambda page_token: events.list(
                calendarId=calendar_id,
                timeMin=window.start.isoformat(),
                eventTypes=list(convert.LISTED_TYPES),
                pageToken=page_token,
                maxResults=PAGE_SIZE,
                fields=convert.TOKEN_FIELDS,
            ),
            operation="events.list(token)",
        ):
            next_token = page.get("nextSyncToken") or next_token
        return next_token

    def _list_window(
        self, calendar_id: str, window: Window, batch: SourceBatch, index: int
    ) -> tuple[dict[str, dict[str, Any]], tzinfo]:
        """Every instance in the window (all pages), by instance key; and the calendar's zone."""
        events = self.api.calendar.events()
        listed: dict[str, dict[str, Any]] = {}
        fallback: tzinfo = self.tz
        for page in self.api.pages(
            lambda page_token: events.list(
                calendarId=calendar_id,
                singleEvents=True,
                showDeleted=True,
                eventTypes=list(convert.LISTED_TYPES),
                timeMin=window.start.isoformat(),
                timeMax=window.end.isoformat(),
                pageToken=page_token,
                maxResults=PAGE_SIZE,
                fields=convert.WINDOW_FIELDS,
            ),
            operation="events.list(window)",
        ):
            fallback = convert.zone(page.get("timeZone"), self.tz)
            for raw in page.get("items") or ():
                if not isinstance(raw, dict):
                    continue
                try:
                    listed[convert.instance_key(raw)] = raw
                except DataError:
                    batch.bad += 1
                    log.warning("source.item.skipped", source=self.name, calendar=index, problem="no id")
        return listed, fallback

    def _held(self, calendar_id: str, stretch: Window, index: int) -> set[str]:
        """The objects with a live instance in `stretch` (the days the window moved past)."""
        listed, _ = self._list_window(calendar_id, stretch, SourceBatch(), index)
        return {
            self._item(calendar_id, convert.series_id(r))
            for r in listed.values()
            if not convert.is_cancelled(r)
        }

    def _convert(
        self,
        calendar_id: str,
        listed: dict[str, dict[str, Any]],
        fallback: tzinfo,
        is_live: Callable[[str], bool],
        batch: SourceBatch,
        index: int,
    ) -> tuple[set[str], int]:
        """Fill batch.changed from one calendar's complete listing. Returns (object ids, skipped)."""
        series: dict[str, list[dict[str, Any]]] = {}
        for raw in listed.values():
            if convert.is_deleted_single(raw):
                ident = convert.series_id(raw)
                moved = is_live(ident) or is_live(str(raw.get("iCalUID") or ""))
                if moved or not convert.deleted_single_cancels(raw, fallback):
                    continue  # deleted (or moved away): absent, its future occurrences vanish
            series.setdefault(convert.series_id(raw), []).append(raw)
        items: set[str] = set()
        bad = 0
        for series_key, instances in series.items():
            item = self._item(calendar_id, series_key)
            try:
                events = self._events(calendar_id, series_key, instances, item, fallback)
            except DataError as exc:
                bad += 1
                batch.bad += 1
                items.add(item)
                log.warning(
                    "source.item.skipped", source=self.name, calendar=index, uid=series_key, problem=str(exc)
                )
                continue
            if events is None:
                continue  # a deleted series: absent
            items.add(item)
            batch.changed[item] = events
        return items, bad

    def _events(
        self, calendar_id: str, series_key: str, instances: list[dict[str, Any]], item: str, fallback: Any
    ) -> list[Event] | None:
        """The Events of one object (a series or a single event); None for a deleted series."""
        live = [r for r in instances if not convert.is_cancelled(r) and r.get("summary")]
        sibling: Mapping[str, Any] | None = live[0] if live else None
        master: Mapping[str, Any] | None = None
        fetched = False
        minimal = [
            r
            for r in instances
            if convert.is_cancelled(r)
            and r.get("recurringEventId")
            and (not r.get("summary") or not r.get("updated"))
        ]
        if minimal:
            # The series says whether it still exists, and its `updated` bounds when an
            # instance without one was cancelled.
            master, fetched = self._series(calendar_id, series_key), True
            if not live and (master is None or convert.is_cancelled(master)):
                return None
        out: list[Event] = []
        for raw in instances:
            template = None
            if convert.is_cancelled(raw) and raw.get("recurringEventId"):
                template = _with_updated(sibling or master, master) if fetched else sibling
            event = convert.to_event(
                raw,
                item=item,
                source=self.name,
                fallback=fallback,
                default_length=self.default_length,
                series=template,
                colors=self.colors,
            )
            if event is not None:
                out.append(event)
        out.sort(key=lambda e: (e.start, e.recurrence_id))
        return out

    def _series(self, calendar_id: str, series_key: str) -> Mapping[str, Any] | None:
        """The series itself ("The get method always returns" cancelled events); None when gone."""
        try:
            raw = self.api.call(
                self.api.calendar.events().get(calendarId=calendar_id, eventId=series_key),
                operation="events.get(series)",
            )
        except NotFoundError:
            return None
        return raw

    def close(self) -> None:
        self.api.close()


def _with_updated(
    template: Mapping[str, Any] | None, master: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """The text of `template` with the series' own `updated` (None when either is unknown)."""
    if template is None:
        return master
    if master is None:
        return {k: v for k, v in template.items() if k != "updated"}
    return {**template, "updated": master.get("updated")}


def _known(raw: object) -> dict[str, str | None] | None:
    """A calendar's objects in the cursor, id -> end of the last instance seen (None: unknown)."""
    if isinstance(raw, Mapping):
        return {str(k): v if isinstance(v, str) else None for k, v in raw.items()}
    return None


def _start(window: object) -> datetime | None:
    """The start of the window a cursor was written for (None when it has none)."""
    if not isinstance(window, list) or not window or not isinstance(window[0], str):
        return None
    try:
        start = datetime.fromisoformat(window[0])
    except ValueError:
        return None
    return start if start.tzinfo is not None else None


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _aged(known: Mapping[str, str | None] | None, item: str, start: datetime) -> bool:
    """True when `item`'s last instance seen ended at or before `start` (the window's new start):
    Google no longer lists it, and it has not been deleted for that."""
    end = (known or {}).get(item)
    if end is None:
        return False
    try:
        last = datetime.fromisoformat(end)
    except ValueError:
        return False
    return last.tzinfo is not None and last <= start
