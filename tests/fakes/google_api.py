"""A local fake of Google Calendar v3, Google Tasks v1 and Google's OAuth endpoints.

Served over real HTTP (stdlib http.server in a thread, on 127.0.0.1 and a free port) so the
real google-api-python-client talks to it through `api_endpoint`. Routes come from the
discovery documents the client library ships: a method the fake does not implement answers
501, an unknown path 404, and every request is checked against the method's OAuth scopes.

Faithful to the documented behaviour callsheet relies on (see ../shared/research/google-api.md):
events list/get/insert/patch/delete; pagination (a small page size exercises it);
`syncToken`/`nextSyncToken` (on the last page only) and 410 fullSyncRequired for a bad or
expired token; the parameters that may not travel with a sync token (400); deleted events kept
as `status: cancelled` (returned by sync and with showDeleted, and a 409 on re-insert);
`singleEvents` expansion of weekly/daily series in their time zone, with moved and cancelled
instances (a cancelled instance comes back with only its ids and original start);
`privateExtendedProperty`; partial responses (`fields`); If-Match (412); calendars.insert,
calendars.get, calendarList; `calendar.app.created` only reaches calendars the app made;
tasklists and tasks (date-only due, completed, hidden, deleted); the OAuth authorization and
token endpoints (PKCE, refresh, `invalid_grant` on demand); injected errors (429, 403, 500,
slow answers that time out) and a log of every request for counting.

Every name, email and id in fixtures built with this module is made up.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import googleapiclient
from dateutil.rrule import rrulestr

from tests.practice import ClientSpec, Practice, local, vevent

_DOCS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
AUTH = "https://www.googleapis.com/auth/"
_B32HEX = re.compile(r"^[a-v0-9]{5,1024}$")
_SYNC_FORBIDDEN = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)


class ApiError(Exception):
    """An error answer in Google's JSON shape."""

    def __init__(
        self, status: int, reason: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        names = {
            400: "INVALID_ARGUMENT",
            401: "UNAUTHENTICATED",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            409: "ALREADY_EXISTS",
            410: "FAILED_PRECONDITION",
            412: "FAILED_PRECONDITION",
            429: "RESOURCE_EXHAUSTED",
            500: "INTERNAL",
            503: "UNAVAILABLE",
        }
        domain = (
            "usageLimits"
            if self.reason in {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}
            else "global"
        )
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [{"domain": domain, "reason": self.reason, "message": self.message}],
                "status": names.get(self.status, "UNKNOWN"),
            }
        }


_TRUNCATE = "x-fake-truncate"  # an internal marker between handle() and the HTTP handler


@dataclass
class Fault:
    """An injected failure: the next `times` matching requests answer `status` (or are slow)."""

    method: str | None  # a discovery method id ("calendar.events.list"), "oauth.token", or None (any)
    status: int = 500
    reason: str = "backendError"
    times: int = 1
    delay: float = 0.0  # seconds to wait before answering (longer than the client timeout: a timeout)
    retry_after: float | None = None
    apply: bool = False  # a slow answer: carry the request out anyway (it "went through")
    truncate: bool = False  # answer with the full Content-Length, send half the body, hang up


@dataclass
class Call:
    """One request the fake received."""

    method: str
    http_method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int = 0

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def calendar(self) -> str:
        """The calendar id a Calendar API request addressed ("" for others)."""
        parts = self.path.split("/")
        return unquote(parts[4]) if len(parts) > 4 and parts[3] == "calendars" else ""


@dataclass
class _Route:
    method_id: str
    http_method: str
    pattern: re.Pattern[str]
    names: list[str]
    scopes: frozenset[str]


def _routes() -> list[_Route]:
    routes = []
    for doc_name, prefix in (("calendar.v3.json", "calendar/v3/"), ("tasks.v1.json", "")):
        doc = json.loads((_DOCS / doc_name).read_text(encoding="utf-8"))
        service_path = doc.get("servicePath", "")
        assert service_path == prefix or (prefix == "" and service_path == ""), doc_name

        def walk(resources: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
            for resource in resources.values():
                yield from resource.get("methods", {}).values()
                yield from walk(resource.get("resources", {}))

        for method in walk(doc["resources"]):
            path = prefix + method["path"]
            names: list[str] = []

            def param(match: re.Match[str], names: list[str] = names) -> str:
                names.append(match.group(2))
                return "(.+)" if match.group(1) == "+" else "([^/]+)"

            regex = re.sub(
                r"\{(\+?)([^}]+)\}", param, re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
            )
            routes.append(
                _Route(
                    method["id"],
                    method["httpMethod"],
                    re.compile(f"^/{regex}$"),
                    names,
                    frozenset(method.get("scopes", ())),
                )
            )
    return routes


_ROUTES = _routes()


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _fields_tree(spec: str) -> dict[str, Any]:
    """Parse a `fields` selector ("a,b/c,items(id,start)") into a tree."""
    tree: dict[str, Any] = {}
    pos = 0

    def parse(until: str | None) -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        name = ""
        while pos < len(spec):
            ch = spec[pos]
            pos += 1
            if ch == "(":
                sub = parse(")")
                _put(out, name.strip(), sub)
                name = ""
            elif ch == ",":
                if name.strip():
                    _put(out, name.strip(), None)
                name = ""
            elif ch == ")":
                if until != ")":
                    raise ApiError(400, "invalidParameter", "Invalid field selection")
                if name.strip():
                    _put(out, name.strip(), None)
                return out
            else:
                name += ch
        if until is not None:
            raise ApiError(400, "invalidParameter", "Invalid field selection")
        if name.strip():
            _put(out, name.strip(), None)
        return out

    def _put(out: dict[str, Any], path: str, sub: dict[str, Any] | None) -> None:
        if not path:
            raise ApiError(400, "invalidParameter", "Invalid field selection")
        parts = path.split("/")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = sub

    tree = parse(None)
    return tree


def _select(value: Any, tree: Mapping[str, Any] | None) -> Any:
    if tree is None:
        return value
    if isinstance(value, list):
        return [_select(v, tree) for v in value]
    if isinstance(value, dict):
        return {k: _select(value[k], sub) for k, sub in tree.items() if k in value}
    return value


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Patch semantics: objects merge, arrays and scalars replace, null removes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = json.loads(json.dumps(value))


def _when(raw: Mapping[str, Any] | None) -> datetime | None:
    """An EventDateTime as an aware datetime (all-day: midnight UTC, for ordering only)."""
    if not raw:
        return None
    if raw.get("dateTime"):
        value = datetime.fromisoformat(raw["dateTime"])
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo(raw.get("timeZone") or "UTC"))
        return value
    if raw.get("date"):
        return datetime.combine(date.fromisoformat(raw["date"]), datetime.min.time(), UTC)
    return None


def _b64(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, sort_keys=True).encode()).decode().rstrip("=")


def _unb64(text: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValueError("bad token") from exc
    if not isinstance(value, dict):
        raise ValueError("bad token")
    return value


@dataclass
class _Calendar:
    id: str
    summary: str
    time_zone: str
    app_created: bool = False
    access_role: str = "owner"
    primary: bool = False
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: int = 0
    generation: int = 0


@dataclass
class _TaskList:
    id: str
    title: str
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: int = 0


class FakeGoogle:
    """The fake's state and its HTTP server. Use as a context manager."""

    PRIMARY = "therapist.fake@example.test"
    CLIENT_ID = "fake-client-id.apps.googleusercontent.com"
    CLIENT_SECRET = "fake-client-secret"

    def __init__(self, *, page_size: int = 3, time_zone: str = "America/Chicago") -> None:
        self.page_size = page_size
        self.lock = threading.RLock()
        self.calendars: dict[str, _Calendar] = {}
        self.tasklists: dict[str, _TaskList] = {}
        self.access_tokens: dict[str, frozenset[str]] = {}
        self.refresh_tokens: dict[str, frozenset[str]] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.consents: list[dict[str, str]] = []
        self.faults: list[Fault] = []
        self.log: list[Call] = []
        self._counter = 0
        self.add_calendar("Therapist", time_zone=time_zone, calendar_id=self.PRIMARY, primary=True)
        self.add_tasklist("My Tasks", tasklist_id="MDefaultList0000000000")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-google", daemon=True
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> FakeGoogle:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    @property
    def url(self) -> str:
        """The root URL to configure as `api_endpoint`."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/"

    # -- seeding and inspection (test side, no HTTP) ----------------------------------------------

    def _next(self, prefix: str = "") -> str:
        self._counter += 1
        return f"{prefix}{self._counter:04d}"

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

    def add_tasklist(self, title: str, *, tasklist_id: str | None = None) -> str:
        with self.lock:
            tid = tasklist_id or ("L" + secrets.token_hex(10))
            self.tasklists[tid] = _TaskList(tid, title, order=len(self.tasklists))
            return tid

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
            return str(event["id"])

    def _new_event(self, calendar: _Calendar, body: Mapping[str, Any]) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(json.dumps(dict(body)))
        event.setdefault("id", base64.b32hexencode(secrets.token_bytes(15)).decode().lower())
        event.setdefault("status", "confirmed")
        event["kind"] = "calendar#event"
        event.setdefault("created", _rfc3339(_now()))
        event.setdefault("iCalUID", f"{event.get('recurringEventId') or event['id']}@google.com")
        event["organizer"] = {"email": calendar.id, "self": True}
        return event

    def update_event(self, calendar_id: str, event_id: str, changes: Mapping[str, Any]) -> None:
        """Change a stored event as the therapist would in the Calendar app."""
        with self.lock:
            calendar = self._calendar(calendar_id)
            event = calendar.events[event_id]
            _merge(event, changes)
            self._touch(calendar, event, stamp="updated" not in changes)

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        """Delete as the therapist would: the event stays, as a cancelled tombstone."""
        self.update_event(calendar_id, event_id, {"status": "cancelled"})

    def events(self, calendar_id: str, *, include_cancelled: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            calendar = self._calendar(calendar_id)
            return [
                json.loads(json.dumps(e))
                for e in calendar.events.values()
                if include_cancelled or e.get("status") != "cancelled"
            ]

    def tasks(self, tasklist_title: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            for tasklist in self.tasklists.values():
                if tasklist.title == tasklist_title:
                    return [
                        json.loads(json.dumps(t))
                        for t in tasklist.tasks.values()
                        if include_deleted or not t.get("deleted")
                    ]
            return []

    def tasklist_titles(self) -> list[str]:
        with self.lock:
            return [t.title for t in self.tasklists.values()]

    def complete_task_in_app(self, tasklist_title: str, task_id: str) -> None:
        """Tick a task in Google's own app: completed, and hidden from default listings."""
        with self.lock:
            for tasklist in self.tasklists.values():
                if tasklist.title == tasklist_title:
                    task = tasklist.tasks[task_id]
                    task.update(
                        status="completed", completed=_rfc3339(_now()), hidden=True, updated=_rfc3339(_now())
                    )
                    return
            raise KeyError(tasklist_title)

    def delete_task_in_app(self, tasklist_title: str, task_id: str) -> None:
        with self.lock:
            for tasklist in self.tasklists.values():
                if tasklist.title == tasklist_title:
                    tasklist.tasks[task_id].update(deleted=True, updated=_rfc3339(_now()))
                    return
            raise KeyError(tasklist_title)

    def expire_sync_tokens(self) -> None:
        """Every sync token issued so far answers 410 fullSyncRequired from now on."""
        with self.lock:
            for calendar in self.calendars.values():
                calendar.generation += 1

    def grant(self, scopes: Sequence[str], *, expired: bool = False) -> dict[str, Any]:
        """Mint a refresh + access token as a finished consent would; returns token-file JSON."""
        with self.lock:
            access = "ya29.fake-" + secrets.token_urlsafe(12)
            refresh = "1//fake-" + secrets.token_urlsafe(16)
            self.access_tokens[access] = frozenset(scopes)
            self.refresh_tokens[refresh] = frozenset(scopes)
        expiry = _now() + (timedelta(hours=-1) if expired else timedelta(hours=1))
        return {
            "token": access,
            "refresh_token": refresh,
            "token_uri": self.url + "token",
            "client_id": self.CLIENT_ID,
            "client_secret": self.CLIENT_SECRET,
            "scopes": list(scopes),
            "universe_domain": "googleapis.com",
            "account": "",
            "expiry": expiry.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }

    def revoke(self, refresh_token: str) -> None:
        """The user revoked access (or 7 days passed in Testing): refresh gives invalid_grant."""
        with self.lock:
            scopes = self.refresh_tokens.pop(refresh_token, frozenset())
            for token, granted in list(self.access_tokens.items()):
                if granted == scopes:
                    del self.access_tokens[token]

    def client_secrets(self) -> dict[str, Any]:
        """A desktop client's client_secrets.json pointing at this fake."""
        return {
            "installed": {
                "client_id": self.CLIENT_ID,
                "client_secret": self.CLIENT_SECRET,
                "project_id": "callsheet-fake",
                "auth_uri": self.url + "o/oauth2/auth",
                "token_uri": self.url + "token",
                "redirect_uris": ["http://localhost"],
            }
        }

    def inject(self, method: str | None, status: int = 500, reason: str = "backendError", **kw: Any) -> Fault:
        fault = Fault(method, status, reason, **kw)
        with self.lock:
            self.faults.append(fault)
        return fault

    def calls(self, method: str | None = None, *, prefix: str | None = None) -> list[Call]:
        with self.lock:
            return [
                c
                for c in self.log
                if (method is None or c.method == method) and (prefix is None or c.method.startswith(prefix))
            ]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    # -- request handling -----------------------------------------------------------------------

    def handle(
        self, http_method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query, keep_blank_values=True)
        route, params = self._route(http_method, parts.path)
        method = route.method_id if route else self._oauth_name(http_method, parts.path)
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = body.decode("utf-8", "replace")
        call = Call(method, http_method, parts.path, query, payload)
        with self.lock:
            self.log.append(call)
            fault = self._fault(method)
        if fault is not None and fault.delay:
            if fault.apply:
                status, extra, data = self._dispatch(
                    route, params, http_method, parts.path, query, headers, body, payload
                )
                call.status = status
                time.sleep(fault.delay)
                return status, extra, data
            time.sleep(fault.delay)
        if fault is not None and fault.truncate:
            status, extra, data = self._dispatch(
                route, params, http_method, parts.path, query, headers, body, payload
            )
            call.status = status
            return status, {**extra, _TRUNCATE: "1"}, data
        if fault is not None and fault.status:
            error = ApiError(fault.status, fault.reason, "Injected failure")
            if fault.retry_after is not None:
                error.headers["Retry-After"] = str(int(fault.retry_after))
            call.status = fault.status
            return fault.status, error.headers, json.dumps(error.body()).encode()
        status, extra, data = self._dispatch(
            route, params, http_method, parts.path, query, headers, body, payload
        )
        call.status = status
        return status, extra, data

    def _fault(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and (fault.method is None or fault.method == method):
                fault.times -= 1
                return fault
        return None

    def _oauth_name(self, http_method: str, path: str) -> str:
        if path == "/token":
            return "oauth.token"
        if path == "/o/oauth2/auth":
            return "oauth.authorize"
        return f"unknown {http_method} {path}"

    def _route(self, http_method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in _ROUTES:
            if route.http_method != http_method:
                continue
            match = route.pattern.match(path)
            if match:
                return route, {n: unquote(v) for n, v in zip(route.names, match.groups(), strict=True)}
        return None, {}

    def _dispatch(
        self,
        route: _Route | None,
        params: dict[str, str],
        http_method: str,
        path: str,
        query: dict[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
        payload: Any,
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            if route is None:
                if path == "/token" and http_method == "POST":
                    return self._token(parse_qs(body.decode("utf-8")), headers)
                if path == "/o/oauth2/auth" and http_method == "GET":
                    return self._authorize(query)
                raise ApiError(404, "notFound", "Not Found")
            granted = self._authorised(headers, route)
            handler: Callable[..., Any] | None = getattr(self, "_" + route.method_id.replace(".", "_"), None)
            if handler is None:
                raise ApiError(501, "notImplemented", f"the fake does not implement {route.method_id}")
            single = {k: v[0] for k, v in query.items()}
            fields = single.pop("fields", None)
            with self.lock:
                result = handler(params=params, query=single, body=payload, headers=headers, granted=granted)
            if result is None:
                return 204, {}, b""
            if fields:
                result = _select(result, _fields_tree(fields))
            return 200, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(result).encode()
        except ApiError as error:
            extra = {"Content-Type": "application/json; charset=UTF-8", **error.headers}
            return error.status, extra, json.dumps(error.body()).encode()

    def _authorised(self, headers: Mapping[str, str], route: _Route) -> frozenset[str]:
        value = headers.get("authorization") or headers.get("Authorization") or ""
        token = value[7:] if value.startswith("Bearer ") else ""
        with self.lock:
            granted = self.access_tokens.get(token)
        if granted is None:
            raise ApiError(401, "authError", "Request had invalid authentication credentials.")
        if not granted & route.scopes:
            raise ApiError(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
        return granted

    @staticmethod
    def _check_app_created(
        calendar: _Calendar, granted: frozenset[str], route_scopes: frozenset[str]
    ) -> None:
        """calendar.app.created reaches only calendars the app made."""
        useful = granted & route_scopes
        if useful == {AUTH + "calendar.app.created"} and not calendar.app_created:
            raise ApiError(403, "forbidden", "Forbidden")

    # -- OAuth ------------------------------------------------------------------------------------

    def _authorize(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        q = {k: v[0] for k, v in query.items()}
        self.consents.append(q)
        if q.get("client_id") != self.CLIENT_ID or q.get("response_type") != "code":
            raise ApiError(400, "invalid_request", "bad authorization request")
        code = "4/fake-" + secrets.token_urlsafe(12)
        scopes = frozenset(q.get("scope", "").split())
        with self.lock:
            self.codes[code] = {
                "redirect_uri": q.get("redirect_uri"),
                "scopes": scopes,
                "challenge": q.get("code_challenge"),
                "method": q.get("code_challenge_method"),
            }
        answer = {"state": q.get("state", ""), "code": code, "scope": " ".join(sorted(scopes))}
        target = f"{q['redirect_uri']}?{urlencode(answer)}"
        return 302, {"Location": target, "Content-Type": "text/plain"}, b"redirecting"

    def _token(
        self, form: dict[str, list[str]], request_headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        f = {k: v[0] for k, v in form.items()}
        basic = request_headers.get("authorization", "")
        if basic.startswith("Basic "):  # client authentication by HTTP Basic (requests-oauthlib's default)
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            f.setdefault("client_id", unquote(client_id))
            f.setdefault("client_secret", unquote(client_secret))
        headers = {"Content-Type": "application/json; charset=utf-8"}

        def fail(error: str, description: str) -> tuple[int, dict[str, str], bytes]:
            return 400, headers, json.dumps({"error": error, "error_description": description}).encode()

        if f.get("client_id") != self.CLIENT_ID or f.get("client_secret") != self.CLIENT_SECRET:
            return (
                401,
                headers,
                json.dumps({"error": "invalid_client", "error_description": "Unauthorized"}).encode(),
            )
        with self.lock:
            if f.get("grant_type") == "refresh_token":
                scopes = self.refresh_tokens.get(f.get("refresh_token", ""))
                if scopes is None:
                    return fail("invalid_grant", "Token has been expired or revoked.")
                asked = frozenset(f["scope"].split()) if f.get("scope") else scopes
                if not asked <= scopes:
                    return fail("invalid_scope", "Bad scope")
                access = "ya29.fake-" + secrets.token_urlsafe(12)
                self.access_tokens[access] = asked
                answer = {
                    "access_token": access,
                    "expires_in": 3599,
                    "scope": " ".join(sorted(asked)),
                    "token_type": "Bearer",
                }
                return 200, headers, json.dumps(answer).encode()
            if f.get("grant_type") == "authorization_code":
                grant = self.codes.pop(f.get("code", ""), None)
                if grant is None or grant["redirect_uri"] != f.get("redirect_uri"):
                    return fail("invalid_grant", "Malformed auth code.")
                if grant["challenge"]:
                    verifier = f.get("code_verifier", "")
                    digest = (
                        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                        .decode()
                        .rstrip("=")
                    )
                    if digest != grant["challenge"]:
                        return fail("invalid_grant", "Invalid code verifier.")
                access = "ya29.fake-" + secrets.token_urlsafe(12)
                refresh = "1//fake-" + secrets.token_urlsafe(16)
                self.access_tokens[access] = grant["scopes"]
                self.refresh_tokens[refresh] = grant["scopes"]
                answer = {
                    "access_token": access,
                    "refresh_token": refresh,
                    "expires_in": 3599,
                    "scope": " ".join(sorted(grant["scopes"])),
                    "token_type": "Bearer",
                }
                return 200, headers, json.dumps(answer).encode()
        return fail("unsupported_grant_type", "Invalid grant_type")

    # -- calendars ----------------------------------------------------------------------------------

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

    def _page(
        self,
        items: list[dict[str, Any]],
        query: Mapping[str, str],
        *,
        kind: str,
        default: int,
        cap: int,
        extra: Mapping[str, Any] | None = None,
        sync_token: str | None = None,
    ) -> dict[str, Any]:
        size = min(int(query.get("maxResults") or default), cap, self.page_size)
        offset = 0
        if query.get("pageToken"):
            try:
                offset = int(_unb64(query["pageToken"])["o"])
            except (ValueError, KeyError) as exc:
                raise ApiError(400, "invalid", "Invalid page token value.") from exc
        chunk = items[offset : offset + size]
        out: dict[str, Any] = {"kind": kind, "etag": '"p"', **(extra or {}), "items": chunk}
        if offset + size < len(items):
            out["nextPageToken"] = _b64({"o": offset + size})
        elif sync_token is not None:
            out["nextSyncToken"] = sync_token
        return out

    # -- events -------------------------------------------------------------------------------------

    def _calendar_events_list(
        self, *, params: dict[str, str], query: dict[str, str], granted: frozenset[str], **_: Any
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
            if query.get("showDeleted") == "false":
                raise ApiError(400, "invalid", "showDeleted cannot be false with a sync token.")
            try:
                token = _unb64(sync)
            except ValueError:
                token = {}
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
            default=250,
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
                continue  # a deleted series: its instances are gone too
            for instance in self._expand(event, high):
                exception = exceptions.get(instance["id"])
                if exception is not None:
                    if exception.get("status") == "cancelled":
                        if show_deleted:
                            out.append(
                                {
                                    k: exception[k]
                                    for k in (
                                        "kind",
                                        "etag",
                                        "id",
                                        "status",
                                        "recurringEventId",
                                        "originalStartTime",
                                        "updated",
                                        "_seq",
                                    )
                                    if k in exception
                                }
                            )
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
    def _expand(master: dict[str, Any], high: datetime | None) -> Iterator[dict[str, Any]]:
        start_raw, end_raw = master["start"], master["end"]
        zone_name = start_raw.get("timeZone")
        if not zone_name:
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
            if body["id"] in calendar.events:
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
            raise ApiError(410, "deleted", "Resource has been deleted")
        event["status"] = "cancelled"
        self._touch(calendar, event)

    # -- tasks ----------------------------------------------------------------------------------------

    def _tasklist(self, tasklist_id: str) -> _TaskList:
        if tasklist_id == "@default":
            tasklist_id = "MDefaultList0000000000"
        tasklist = self.tasklists.get(tasklist_id)
        if tasklist is None:
            raise ApiError(404, "notFound", "Task list not found.")
        return tasklist

    @staticmethod
    def _tasklist_json(tasklist: _TaskList) -> dict[str, Any]:
        return {
            "kind": "tasks#taskList",
            "id": tasklist.id,
            "etag": f'"{tasklist.id}"',
            "title": tasklist.title,
            "updated": _rfc3339(_now()),
        }

    def _tasks_tasklists_list(self, *, query: dict[str, str], **_: Any) -> dict[str, Any]:
        items = [self._tasklist_json(t) for t in sorted(self.tasklists.values(), key=lambda t: t.order)]
        return self._page(items, query, kind="tasks#taskLists", default=20, cap=1000)

    def _tasks_tasklists_get(self, *, params: dict[str, str], **_: Any) -> dict[str, Any]:
        return self._tasklist_json(self._tasklist(params["tasklist"]))

    def _tasks_tasklists_insert(self, *, body: Any, **_: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("title"):
            raise ApiError(400, "invalid", "Invalid Value")
        return self._tasklist_json(self.tasklists[self.add_tasklist(body["title"])])

    @staticmethod
    def _due(value: Any) -> str:
        """Only the date of `due` is kept (the time is discarded)."""
        try:
            day = datetime.fromisoformat(str(value)).date()
        except ValueError as exc:
            raise ApiError(400, "invalid", "Invalid value for: due") from exc
        return f"{day.isoformat()}T00:00:00.000Z"

    def _tasks_tasks_list(self, *, params: dict[str, str], query: dict[str, str], **_: Any) -> dict[str, Any]:
        tasklist = self._tasklist(params["tasklist"])
        completed = query.get("showCompleted", "true") == "true"
        hidden = query.get("showHidden") == "true"
        deleted = query.get("showDeleted") == "true"
        items = [
            t
            for t in tasklist.tasks.values()
            if (deleted or not t.get("deleted"))
            and (hidden or not t.get("hidden"))
            and (completed or t.get("status") != "completed")
        ]
        return self._page(items, query, kind="tasks#tasks", default=20, cap=100)

    def _task(self, tasklist: _TaskList, task_id: str) -> dict[str, Any]:
        task = tasklist.tasks.get(task_id)
        if task is None:
            raise ApiError(404, "notFound", "Task not found.")
        return task

    def _tasks_tasks_get(self, *, params: dict[str, str], **_: Any) -> dict[str, Any]:
        return self._task(self._tasklist(params["tasklist"]), params["task"])

    def _tasks_tasks_insert(self, *, params: dict[str, str], body: Any, **_: Any) -> dict[str, Any]:
        tasklist = self._tasklist(params["tasklist"])
        if not isinstance(body, dict):
            raise ApiError(400, "invalid", "Invalid Value")
        if len(str(body.get("notes") or "")) > 8192 or len(str(body.get("title") or "")) > 1024:
            raise ApiError(400, "invalid", "Invalid Value")
        task_id = secrets.token_urlsafe(16).replace("-", "x").replace("_", "y")
        task = {k: v for k, v in body.items() if k in ("title", "notes", "status", "due")}
        if "due" in task:
            task["due"] = self._due(task["due"])
        task.setdefault("status", "needsAction")
        task.update(
            kind="tasks#task",
            id=task_id,
            etag=f'"{secrets.token_hex(6)}"',
            updated=_rfc3339(_now()),
            position=f"{len(tasklist.tasks):020d}",
            selfLink=f"{self.url}tasks/v1/lists/{quote(tasklist.id)}/tasks/{task_id}",
        )
        tasklist.tasks[task_id] = task
        return task

    def _tasks_tasks_patch(self, *, params: dict[str, str], body: Any, **_: Any) -> dict[str, Any]:
        tasklist = self._tasklist(params["tasklist"])
        task = self._task(tasklist, params["task"])
        changes = {k: v for k, v in (body or {}).items() if k in ("title", "notes", "status", "due")}
        if "due" in changes:
            changes["due"] = self._due(changes["due"])
        task.update(changes)
        if changes.get("status") == "completed" and "completed" not in task:
            task["completed"] = _rfc3339(_now())
        if changes.get("status") == "needsAction":
            task.pop("completed", None)
        task.update(etag=f'"{secrets.token_hex(6)}"', updated=_rfc3339(_now()))
        return task

    def _tasks_tasks_delete(self, *, params: dict[str, str], **_: Any) -> None:
        tasklist = self._tasklist(params["tasklist"])
        task = self._task(tasklist, params["task"])
        task.update(deleted=True, updated=_rfc3339(_now()))


def _scopes(method_id: str) -> frozenset[str]:
    for route in _ROUTES:
        if route.method_id == method_id:
            return route.scopes
    raise KeyError(method_id)


def _public(event: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


def _handler(fake: FakeGoogle) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between headers and body

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, data = fake.handle(self.command, self.path, headers, body)
            cut = extra.pop(_TRUNCATE, None) is not None
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if cut:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if data:
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (an injected timeout)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *_: Any) -> None:
            return None

    return Handler


# -- a practice written both as .ics files and as Google events ----------------------------------


def google_id(uid: str) -> str:
    """A valid Google event id (base32hex) derived from an iCalendar uid."""
    return base64.b32hexencode(hashlib.sha1(uid.encode()).digest()).decode().lower().rstrip("=")[:20]


_PARTSTATS = {
    "DECLINED": "declined",
    "ACCEPTED": "accepted",
    "TENTATIVE": "tentative",
    "NEEDS-ACTION": "needsAction",
}


@dataclass
class Appt:
    """One appointment object: a single event or a weekly series with exceptions.

    `moved` maps an original start to (new start) and `retitled` to a new title for one
    instance; `cancelled` maps an original start to when it was cancelled.
    """

    uid: str
    summary: str
    start: datetime
    minutes: int = 50
    weekly: int = 0
    status: str = ""
    attendees: Sequence[tuple[str, str]] = ()
    moved: Mapping[datetime, datetime] = field(default_factory=dict)
    retitled: Mapping[datetime, str] = field(default_factory=dict)
    cancelled: Mapping[datetime, datetime] = field(default_factory=dict)
    created: datetime = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    last_modified: datetime = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    all_day: bool = False
    utc_offset: str = ""  # e.g. "+01:00": write the single event's dateTime in that offset, no timeZone
    deleted: bool = False  # Google only: a deleted single event (a tombstone); absent from the .ics twin

    def ics(self) -> str:
        """The .ics twin (VEVENTs, no VCALENDAR)."""
        if self.all_day:
            day = self.start.strftime("%Y%m%d")
            return "\r\n".join(
                [
                    "BEGIN:VEVENT",
                    f"UID:{self.uid}",
                    "DTSTAMP:20260101T000000Z",
                    f"DTSTART;VALUE=DATE:{day}",
                    f"SUMMARY:{self.summary}",
                    "END:VEVENT",
                ]
            )
        common: dict[str, Any] = {"created": self.created, "utc": bool(self.utc_offset)}
        parts = [
            vevent(
                self.uid,
                self.summary,
                self.start,
                minutes=self.minutes,
                status=self.status,
                rrule=f"FREQ=WEEKLY;COUNT={self.weekly}" if self.weekly else "",
                attendees=self.attendees,
                last_modified=self.last_modified,
                **common,
            )
        ]
        for original in sorted(set(self.moved) | set(self.retitled) | set(self.cancelled)):
            start = self.moved.get(original, original)
            summary = self.retitled.get(original, self.summary)
            if original in self.cancelled:
                parts.append(
                    vevent(
                        self.uid,
                        summary,
                        start,
                        minutes=self.minutes,
                        status="CANCELLED",
                        recurrence_id=original,
                        attendees=self.attendees,
                        last_modified=self.cancelled[original],
                        **common,
                    )
                )
            else:
                parts.append(
                    vevent(
                        self.uid,
                        summary,
                        start,
                        minutes=self.minutes,
                        recurrence_id=original,
                        attendees=self.attendees,
                        last_modified=self.last_modified,
                        **common,
                    )
                )
        return "\r\n".join(parts)

    def _when(self, moment: datetime, tz_name: str) -> dict[str, str]:
        if self.utc_offset:
            sign = -1 if self.utc_offset.startswith("-") else 1
            hours, minutes = (int(x) for x in self.utc_offset[1:].split(":"))
            offset = timedelta(hours=hours, minutes=minutes) * sign
            return {"dateTime": moment.astimezone(timezone(offset)).isoformat()}
        return {"dateTime": moment.astimezone(ZoneInfo(tz_name)).isoformat(), "timeZone": tz_name}

    def google(self, tz_name: str) -> list[dict[str, Any]]:
        """The Google twin: the event (or series) and its exceptions, as stored."""
        gid = google_id(self.uid)
        stamp = {"created": _rfc3339(self.created), "updated": _rfc3339(self.last_modified)}
        if self.all_day:
            day = self.start.date()
            return [
                {
                    "id": gid,
                    "summary": self.summary,
                    "start": {"date": day.isoformat()},
                    "end": {"date": (day + timedelta(days=1)).isoformat()},
                    **stamp,
                }
            ]
        attendees = [
            {"email": e, "responseStatus": _PARTSTATS.get(p.upper(), "needsAction")}
            for e, p in self.attendees
        ]
        length = timedelta(minutes=self.minutes)
        master: dict[str, Any] = {
            "id": gid,
            "summary": self.summary,
            "start": self._when(self.start, tz_name),
            "end": self._when(self.start + length, tz_name),
            **stamp,
            "status": {"CANCELLED": "cancelled", "TENTATIVE": "tentative"}.get(self.status, "confirmed"),
        }
        if self.deleted:
            master["status"] = "cancelled"
        if attendees:
            master["attendees"] = attendees
        if self.weekly:
            master["recurrence"] = [f"RRULE:FREQ=WEEKLY;COUNT={self.weekly}"]
        out = [master]
        for original in sorted(set(self.moved) | set(self.retitled) | set(self.cancelled)):
            start = self.moved.get(original, original)
            rid = original.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            exception: dict[str, Any] = {
                "id": f"{gid}_{rid}",
                "recurringEventId": gid,
                "originalStartTime": self._when(original, tz_name),
                "summary": self.retitled.get(original, self.summary),
                "start": self._when(start, tz_name),
                "end": self._when(start + length, tz_name),
                "created": stamp["created"],
                "updated": stamp["updated"],
                "status": "confirmed",
            }
            if attendees:
                exception["attendees"] = attendees
            if original in self.cancelled:
                exception["status"] = "cancelled"
                exception["updated"] = _rfc3339(self.cancelled[original])
            out.append(exception)
        return out


def seed(fake: FakeGoogle, calendar_id: str, appts: Sequence[Appt], tz_name: str) -> None:
    """Store the Google twins of `appts` in a calendar of the fake."""
    for appt in appts:
        for body in appt.google(tz_name):
            fake.add_event(calendar_id, body)


def write_token(path: Path, token: Mapping[str, Any]) -> None:
    """Write a token file as the setup script would (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(dict(token), handle)


# -- a sample practice (made-up people) and a Google-configured Practice -----------------------

SAMPLE_NOW = "2026-03-18T12:00:00-05:00"  # a Wednesday


def sample_clients() -> tuple[ClientSpec, ...]:
    return (
        ClientSpec("c001", "Avery Quinn", emails=("avery@example.org",), acquainted_with=("c002",)),
        ClientSpec("c002", "Blake Rowe", emails=("blake@example.org",)),
        ClientSpec("c003", "Cameron Tate", consent_to_call=False, voicemail_ok=False),
        ClientSpec("c004", "Devon Ueda", status="discharged"),
        ClientSpec("c005", "Emery Vance"),
        ClientSpec("c006", "Finley Wu"),
    )


def sample_calendars() -> tuple[list[Appt], list[Appt]]:
    """Two calendars of appointments: weekly series with a moved, a re-titled ("no show") and a
    cancelled instance; a client attendee who declined; a time written in another offset; a
    personal event; an all-day event; a deleted event (Google only); a double booking across
    the two calendars."""
    first = [
        Appt(
            "series-avery",
            "Avery Quinn",
            local("2026-02-02 10:00"),
            weekly=8,
            attendees=(("avery@example.org", "ACCEPTED"),),
            retitled={local("2026-02-23 10:00"): "Avery Quinn no show"},
            moved={local("2026-03-09 10:00"): local("2026-03-10 11:00")},
            cancelled={local("2026-03-16 10:00"): local("2026-03-16 08:00")},
        ),
        Appt("single-blake-1", "Blake Rowe", local("2026-03-03 14:00"), utc_offset="+01:00"),
        Appt(
            "single-blake-2",
            "Appointment",
            local("2026-03-23 10:55"),
            attendees=(("blake@example.org", "DECLINED"),),
            last_modified=local("2026-03-17 09:00"),
        ),
        Appt(
            "series-cameron",
            "Cameron Tate",
            local("2026-02-03 09:00"),
            weekly=6,
            cancelled={local("2026-03-10 09:00"): local("2026-03-09 08:00")},
        ),
        Appt("single-devon", "Devon Ueda", local("2026-03-04 13:00")),
        Appt("personal-dentist", "Dentist", local("2026-03-19 12:00"), minutes=60),
        Appt("allday-conference", "Conference with Avery Quinn", local("2026-03-20 00:00"), all_day=True),
        Appt("single-finley-deleted", "Finley Wu", local("2026-03-12 16:00"), deleted=True),
    ]
    second = [
        Appt("series-emery", "Emery Vance", local("2026-02-05 15:00"), weekly=10),
        Appt("single-finley", "Finley Wu", local("2026-03-26 15:30")),
    ]
    return first, second


@dataclass
class GooglePractice:
    """A practice whose source and reminders are the fake Google."""

    practice: Practice
    fake: FakeGoogle
    token_path: Path
    token: dict[str, Any]
    calls_calendar: str
    second_calendar: str

    @property
    def config(self) -> Path:
        return self.practice.config

    def ours(self, *, include_cancelled: bool = False) -> list[dict[str, Any]]:
        """The reminder events in the calls calendar."""
        return self.fake.events(self.calls_calendar, include_cancelled=include_cancelled)

    def tasks(self, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        return self.fake.tasks("Client calls", include_deleted=include_deleted)


def google_practice(
    fake: FakeGoogle,
    root: Path,
    *,
    clients: Sequence[ClientSpec] | None = None,
    scopes: Sequence[str] = (
        AUTH + "calendar.events.readonly",
        AUTH + "calendar.app.created",
        AUTH + "tasks",
    ),
    expired: bool = False,
    timeout: str = "2s",
    write: Sequence[str] = ("event", "task"),
    seeded: bool = True,
    extra_config: str = "",
) -> GooglePractice:
    """Config, roster and token for a practice on the fake; seeds the sample calendars."""
    second = fake.add_calendar("Practice (second)", calendar_id="second.fake@group.calendar.google.com")
    calls = fake.add_calendar("Client calls", app_created=True)
    if seeded:
        first_appts, second_appts = sample_calendars()
        seed(fake, "primary", first_appts, "America/Chicago")
        seed(fake, second, second_appts, "America/Chicago")
    token = fake.grant(scopes, expired=expired)
    token_path = root / "secrets" / "google-token.json"
    write_token(token_path, token)
    secrets_path = root / "secrets" / "client_secrets.json"
    secrets_path.write_text(json.dumps(fake.client_secrets()), encoding="utf-8")
    source = (
        'kind = "google"\n'
        f'calendar_ids = ["primary", "{second}"]\n'
        'token_file = "secrets/google-token.json"\n'
        'client_secrets_file = "secrets/client_secrets.json"\n'
        f'api_endpoint = "{fake.url}"\n'
        f'timeout = "{timeout}"\n'
    )
    reminders = (
        'kind = "google"\n'
        f'calendar_id = "{calls}"\n'
        'tasklist = "Client calls"\n'
        f"write = {json.dumps(list(write))}\n"
    )
    practice = Practice(root, clients=clients or sample_clients(), source=source, reminders=reminders)
    if extra_config:
        with practice.config.open("a", encoding="utf-8") as handle:
            handle.write("\n" + extra_config)
    return GooglePractice(practice, fake, token_path, token, calls, second)


def vdir_twin(root: Path, *, clients: Sequence[ClientSpec] | None = None) -> Practice:
    """The same sample practice as a folder of .ics files (what vdirsyncer would keep)."""
    practice = Practice(root, clients=clients or sample_clients())
    first, second = sample_calendars()
    for appt in (*first, *second):
        if not appt.deleted:
            practice.add(appt.uid, appt.ics())
    return practice
