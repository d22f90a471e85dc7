"""Any CalDAV server (RFC 4791) as a Source of appointments and a Sink for reminders.

Source: each configured collection is read incrementally. A sync-collection REPORT (RFC 6578,
through caldav's `get_objects_by_sync_token(load_objects=False)`) says what changed since the
last pass; the changed bodies come in one calendar-multiget, never one GET per object. When
caldav silently falls back to a full listing (a token starting with "fake-": the server lost
our token or cannot sync), the listing is diffed against the hrefs in the cursor to find the
deletions, and the next pass starts again without a token. A collection where sync-collection
does not work is read with a PROPFIND Depth:1 getetag listing plus multiget instead. Recurring
objects (and objects that lie beyond the window) are fetched again, with one multiget, when
the window moves (once a day). A pass where nothing changed costs one request per collection.
Recurrences are expanded locally (connectors.ical), never by the server.

Sink: one object per reminder, `<collection>/callsheet-<key>.ics`; created with
`If-None-Match: *` (an existing one is adopted, never duplicated), rewritten and deleted with
`If-Match: <etag>` (a 412 is a ConflictError: the therapist's edit is never overwritten).

Errors are mapped to worker.errors here and nowhere else; transient ones (connection errors,
timeouts, answers cut off, 5xx, 429) are retried with tenacity within a budget well below the
pass interval. Messages and log lines name collections by URL (never with credentials), objects
by href, and never carry event text.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from xml.sax.saxutils import escape as xml_escape

import niquests
import structlog
from caldav.davclient import DAVClient
from caldav.elements import dav
from caldav.lib import error as caldav_error
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from connectors.base import Capabilities, Receipt
from connectors.ical import build_item, complete_item, parse_calendar, read_item, update_item
from worker import __version__
from worker.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ConnectorError,
    DataError,
    NotFoundError,
    Problem,
    TransientError,
)
from worker.identity import file_name
from worker.model import ItemKind, Managed, Reminder, SourceBatch, Window

if TYPE_CHECKING:
    from worker.config import ReminderSettings, Settings, SourceSettings, _Account

log = structlog.get_logger()

# caldav's own log lines can quote request bodies, server replies and URLs; what matters is
# reported through our structured events instead, so keep the library quiet.
logging.getLogger("caldav").addHandler(logging.NullHandler())
logging.getLogger("caldav").propagate = False

T = TypeVar("T")

CURSOR_VERSION = 1
_RECURRING_HINTS = (b"RRULE", b"RDATE", b"RECURRENCE-ID")
_DTSTART_DAY = re.compile(rb"^DTSTART[^:\r\n]*:(\d{8})", re.MULTILINE)
# VTIMEZONE blocks carry RRULEs and DTSTARTs of their own: not the appointment's
_VTIMEZONE = re.compile(rb"^BEGIN:VTIMEZONE.*?^END:VTIMEZONE", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures of one request are retried (module-level so tests can shrink it)."""

    attempts: int = 4
    budget: float = 60.0  # seconds from the first attempt; no attempt starts after this
    initial: float = 1.0  # first wait; doubles each attempt
    jitter: float = 1.0  # up to this much random extra per wait
    max_wait: float = 15.0
    max_retry_after: float = 30.0  # a longer Retry-After ends the retries (the next pass tries)


RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes that keep one request reasonable on every server."""

    multiget_batch: int = 500  # hrefs per calendar-multiget REPORT
    empty_guard: int = 10  # a collection that held this many objects and lists none is suspect


LIMITS = Limits()


# -- transport ------------------------------------------------------------------------------


def public_url(url: str) -> str:
    """The URL without user info, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def _collection_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError([Problem(where, f"{public_url(url)!r} is not an http(s) URL")])
    if parts.password is not None:
        message = f"the URL {public_url(url)} carries a password: use password_file or password_env"
        raise ConfigError([Problem(where, message)])
    clean = public_url(url)
    return clean if clean.endswith("/") else clean + "/"


def _path(url: Any) -> str:
    """The unquoted path of a URL or href: servers disagree on percent-encoding ('@' vs '%40')."""
    return unquote(urlsplit(str(url)).path)


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _precondition_names(exc: BaseException) -> list[str]:
    names = [str(p).rsplit("}", 1)[-1] for p in getattr(exc, "preconditions", None) or []]
    return [n for n in names if n != "responsedescription"]


def _retry_wait(retry_state: RetryCallState) -> float:
    base = wait_exponential_jitter(multiplier=RETRY.initial, max=RETRY.max_wait, jitter=RETRY.jitter)(
        retry_state
    )
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    asked = getattr(exc, "retry_after", None)
    if isinstance(asked, int | float) and asked > 0:
        return max(base, float(asked))
    return base


def _retry_stop(retry_state: RetryCallState) -> bool:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    asked = getattr(exc, "retry_after", None)
    if isinstance(asked, int | float) and asked > RETRY.max_retry_after:
        return True
    if stop_after_attempt(RETRY.attempts)(retry_state):
        return True
    return bool(stop_before_delay(RETRY.budget)(retry_state))


class _Dav:
    """One authenticated DAV client with error mapping and bounded retries."""

    def __init__(
        self, settings: Settings, section: _Account, *, name: str, role: str, first_url: str
    ) -> None:
        self.name = name
        self.role = role  # "source" or "sink": the log key that names us
        password = settings.secret(section)
        self.client: Any = DAVClient(
            url=first_url,
            username=section.username,
            password=password,
            # always bounded: None would mean niquests' defaults (30 s read, 120 s for writes)
            timeout=max(1, int(section.timeout.total_seconds())),
            ssl_verify_cert=section.verify_tls,
            enable_rfc6764=False,  # the URL is configured: no DNS discovery
            headers={"User-Agent": f"callsheet/{__version__}"},
        )
        # Over HTTPS, send Basic credentials with the first request instead of waiting for a
        # 401 challenge: an idle pass then costs one request per collection, not one more per
        # client. A server that wants another scheme (Digest) answers 401; we then fall back
        # to caldav's negotiation once. Over plain HTTP the server is always asked first.
        self._preemptive = bool(section.username and password and urlsplit(first_url).scheme == "https")
        if self._preemptive:
            self.client.auth_type = "basic"
            self.client.build_auth_object()
        self._verify = section.verify_tls
        if not self._verify:
            # said once here, instead of a library warning on every request
            log.warning("connector.tls.unverified", **{role: name}, collection=public_url(first_url))

    def close(self) -> None:
        self.client.close()

    def call(self, operation: str, target: str, fn: Callable[[], T]) -> T:
        """Run `fn` (one request, or one library call), retrying transient failures.

        Raises:
            TransientError: still failing when the attempts or the time budget ran out.
            AuthError, NotFoundError, ConnectorError: permanent failures (not retried).
        """
        retrying = Retrying(
            stop=_retry_stop,
            wait=_retry_wait,
            retry=retry_if_exception_type(TransientError),
            reraise=True,
            before_sleep=lambda state: self._log_retry(operation, target, state),
        )
        for attempt in retrying:
            with attempt:
                return self._mapped(operation, target, fn)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _log_retry(self, operation: str, target: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "connector.retry",
            **{self.role: self.name},
            operation=operation,
            collection=target,
            attempt=state.attempt_number,
            error=type(exc.__cause__ or exc).__name__ if exc else "",
            retry_after=getattr(exc, "retry_after", None),
        )

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """With verify_tls = false, drop the per-request 'Unverified HTTPS request' warning."""
        if self._verify:
            yield
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Unverified HTTPS request")
            yield

    def _mapped(self, operation: str, target: str, fn: Callable[[], T]) -> T:
        where = f"{operation} {target}"
        try:
            with self._quiet():
                return fn()
        except caldav_error.RateLimitError as exc:
            raise TransientError(
                f"{where}: the server asked to slow down (HTTP {exc.status or 429})",
                source=self.name,
                operation=operation,
                retry_after=exc.retry_after_seconds,
            ) from exc
        except caldav_error.AuthorizationError as exc:
            if _status_of(exc) == 401 and self._preemptive:
                self._preemptive = False  # the server may want Digest: let caldav negotiate
                self.client.auth = None
                self.client.auth_type = None
                return self._mapped(operation, target, fn)
            raise _auth_error(exc, where, self.name, operation) from exc
        except caldav_error.NotFoundError as exc:
            raise NotFoundError(
                f"{where}: not found (HTTP 404); check the URL", source=self.name, operation=operation
            ) from exc
        except caldav_error.DAVError as exc:
            raise _status_error(_status_of(exc), where, self.name, operation) from exc
        except niquests.exceptions.SSLError as exc:
            raise ConnectorError(
                f"{where}: the TLS certificate was not accepted (set verify_tls = false only for a "
                "server you control)",
                source=self.name,
                operation=operation,
            ) from exc
        except (
            niquests.exceptions.ConnectionError,
            niquests.exceptions.Timeout,
            niquests.exceptions.ChunkedEncodingError,  # the connection broke off mid-answer
        ) as exc:
            raise TransientError(
                f"{where}: {_network_problem(exc)}", source=self.name, operation=operation
            ) from exc
        except niquests.exceptions.RequestException as exc:
            raise ConnectorError(
                f"{where}: the request failed ({type(exc).__name__})", source=self.name, operation=operation
            ) from exc
        except SyntaxError as exc:  # lxml's XMLSyntaxError: a garbled answer (often a proxy's error page)
            raise TransientError(
                f"{where}: the server's answer could not be read", source=self.name, operation=operation
            ) from exc

    def send(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        body: str | bytes = "",
        headers: dict[str, str] | None = None,
        ok: Iterable[int] = (200, 201, 204, 207),
        expected: Iterable[int] = (),
    ) -> Any:
        """One raw request. Statuses in `ok` or `expected` come back; others raise (mapped)."""
        accepted = set(ok) | set(expected)

        def once() -> Any:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
            response = self.client.request(url, method, text, headers or {})
            if response.status in accepted:
                return response
            raise _status_error(response.status, f"{operation} {public_url(url)}", self.name, operation)

        return self.call(operation, public_url(url), once)


def _network_problem(exc: BaseException) -> str:
    if isinstance(exc, niquests.exceptions.Timeout):
        return "no answer within the timeout"
    if isinstance(exc, niquests.exceptions.ChunkedEncodingError):
        return "the answer broke off before its end"
    return "cannot connect to the server"


def _auth_error(exc: BaseException, where: str, name: str, operation: str) -> ConnectorError:
    status = _status_of(exc)
    conditions = _precondition_names(exc)
    if status == 403 and "supported-calendar-component" in conditions:
        return ConnectorError(
            f"{where}: this calendar does not accept this kind of item (HTTP 403 supported-calendar-component);"
            " tasks need a calendar that supports VTODO: make one and set tasks_url to it",
            source=name,
            operation=operation,
        )
    if status == 403 and conditions:
        # a refusal that names a rule (e.g. no-uid-conflict): not a credentials problem
        return ConnectorError(
            f"{where}: the server refused the request (HTTP 403: {', '.join(conditions)})",
            source=name,
            operation=operation,
        )
    if status == 403:
        return AuthError(
            f"{where}: access denied (HTTP 403); the account may not use this calendar",
            source=name,
            operation=operation,
        )
    return AuthError(
        f"{where}: the server refused the credentials (HTTP {status or 401}); check username and "
        "password_file / password_env",
        source=name,
        operation=operation,
    )


def _status_error(status: int | None, where: str, name: str, operation: str) -> ConnectorError:
    if status is None or status >= 500 or status in (408, 429):
        return TransientError(
            f"{where}: the server failed (HTTP {status or 'error'})", source=name, operation=operation
        )
    if status in (401, 403):
        return AuthError(f"{where}: access denied (HTTP {status})", source=name, operation=operation)
    if status in (404, 410):
        return NotFoundError(
            f"{where}: not found (HTTP {status}); check the URL", source=name, operation=operation
        )
    if status == 412:
        return ConflictError(
            f"{where}: changed on the server since it was read (HTTP 412)", source=name, operation=operation
        )
    return ConnectorError(
        f"{where}: the server refused the request (HTTP {status})", source=name, operation=operation
    )


def _etag(response: Any) -> str:
    headers = getattr(response, "headers", None) or {}
    value = headers.get("ETag") or headers.get("etag") or ""
    return str(value)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


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


class CalDavSource(Capabilities):
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


def _describe_collection(transport: _Dav, url: str) -> str:
    calendar = transport.client.calendar(url=url)

    def once() -> tuple[str, list[str]]:
        props = calendar.get_properties([dav.DisplayName()])
        name = str(props.get(dav.DisplayName.tag) or "")
        components = [str(c) for c in calendar.get_supported_components()]
        return name, components

    name, components = transport.call("describe", url, once)
    label = f'"{name}", ' if name else ""
    return f"{label}holds {', '.join(components) or 'nothing'}"


def _visible_calendars(transport: _Dav, configured: Iterable[str]) -> list[str]:
    """Best effort: the other calendars of the account (servers without discovery say nothing)."""
    known = {_path(u) for u in configured}
    try:
        calendars = transport.call(
            "discover",
            public_url(str(transport.client.url)),
            lambda: transport.client.principal().get_calendars(),
        )
    except ConnectorError:
        return []
    lines = []
    for calendar in calendars:
        if _path(calendar.url) in known:
            continue
        lines.append(f"  also visible: {public_url(str(calendar.url))}")
    return lines


# -- sink -----------------------------------------------------------------------------------


class CalDavSink(Capabilities):
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
                item = read_item(data, ref=ref, etag=etag, name=unquote(ref.rstrip("/").rsplit("/", 1)[-1]))
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
        return f"{collection}{quote(file_name(reminder.key, reminder.kind, reminder.generation))}"

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
        existing = read_item(
            _body(found), ref=url, etag=_etag(found), name=unquote(url.rstrip("/").rsplit("/", 1)[-1])
        )
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


def _body(response: Any) -> bytes:
    exact = getattr(response, "_raw_body", None)  # the bytes as sent (before caldav's CRLF fix)
    if isinstance(exact, bytes) and exact:
        return exact
    raw = getattr(response, "_raw", None)
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode("utf-8")
    return str(getattr(response, "raw", "")).encode("utf-8")
