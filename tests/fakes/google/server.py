"""The fake's HTTP server, request log, injected faults and dispatch to the API mixins."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.google.auth import AuthMixin
from tests.fakes.google.calendar import CalendarMixin
from tests.fakes.google.common import (
    _ROUTES,
    _b64,
    _Calendar,
    _fields_tree,
    _Route,
    _select,
    _TaskList,
    _unb64,
)
from tests.fakes.google.errors import ApiError
from tests.fakes.google.tasks import TasksMixin

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


class FakeGoogle(CalendarMixin, TasksMixin, AuthMixin):
    """The fake's state and its HTTP server. Use as a context manager."""

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

    def _next(self, prefix: str = "") -> str:
        self._counter += 1
        return f"{prefix}{self._counter:04d}"

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
                result = handler(
                    params=params, query=single, multi=query, body=payload, headers=headers, granted=granted
                )
            if result is None:
                return 204, {}, b""
            if fields:
                result = _select(result, _fields_tree(fields))
            return 200, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(result).encode()
        except ApiError as error:
            extra = {"Content-Type": "application/json; charset=UTF-8", **error.headers}
            return error.status, extra, json.dumps(error.body()).encode()

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
            # nextSyncToken: "Omitted if further results are available, in which case
            # nextPageToken is provided" (it is on the last page only)
            out["nextSyncToken"] = sync_token
        return out


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
