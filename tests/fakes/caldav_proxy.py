"""A proxy in front of a real Radicale that answers as other CalDAV servers do (server profiles).

Each `Profile` switches on the documented or observed rules of one server family
(`docs/caldav.md`, `../shared/research/caldav-servers.md`): the data lives in Radicale, and the
proxy refuses, hides, rewrites or delays answers the way that server would. Profiles:

- `cyrus` (Fastmail) and `icloud`: a UID may exist once per account, across all calendars (403
  `unique-scheduling-object-resource`); iCloud also lists the collection itself in a sync
  answer and answers a 503 with Retry-After now and then.
- `nextcloud` (sabre/dav): the trash bin refuses the third DELETE of the same resource (403,
  sabre body); in the calendar shared to the account (`shared`), `CLASS:PRIVATE` objects are
  hidden (GET, multiget, PROPFIND) while the sync listing still names them.
- `sogo`: `If-None-Match` ignored; a calendar-query without a component filter answers nothing;
  an unknown sync token is answered with an ordinary, empty 207.
- `ox` (mailbox.org): a PUT that overwrites without `If-Match` is refused (409); unknown token 207.
- `zimbra`: `If-None-Match` ignored; a stored series whose cancelled session (an override with
  `STATUS:CANCELLED`) is turned into an EXDATE on the series, the override dropped (CH:1552).
- `stalwart`: an unknown token gets an ordinary 207; with `truncate_sync` a token-less listing is
  truncated (507 inside the multistatus, no new token), as Stalwart does past 2000 objects.
- `throttled`: the sync REPORT is answered 429/503 with Retry-After first.
- `moved`: the calendars moved to another path (301 on the same origin); `moved302` the same with
  a 302.

Only for tests: single-user, small, and not a general HTTP proxy.
"""

from __future__ import annotations

import http.client
import http.server
import re
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from urllib.parse import unquote
from xml.etree import ElementTree as ET

NS = {"D": "DAV:", "C": "urn:ietf:params:xml:ns:caldav"}
_UID = re.compile(rb"^UID:(.+?)\r?$", re.MULTILINE)

SABRE_FORBIDDEN = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns">'
    b"<s:exception>Sabre\\DAV\\Exception\\Forbidden</s:exception>"
    b"<s:message>A calendar object with URI %s already exists in calendar 7, therefore this object "
    b"can't be moved into the trashbin</s:message></d:error>"
)
CYRUS_UID = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<D:error xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
    b"<C:unique-scheduling-object-resource/></D:error>"
)


@dataclass(frozen=True)
class Profile:
    """Which server rules the proxy plays."""

    name: str = "radicale"
    uid_unique_per_account: bool = False
    trash_bin: bool = False
    shared: str = ""  # the path of a calendar shared to the account: its PRIVATE objects are hidden
    ignore_if_none_match: bool = False
    empty_bare_query: bool = False
    unknown_token_207: bool = False
    require_if_match: bool = False
    lists_itself: bool = False
    flaky_every: int = 0  # every n-th request: 503 with Retry-After: 0
    throttle_sync: int = 0  # the first n sync REPORTs: 429 with Retry-After: 1
    truncate_sync: int = 0  # a token-less sync lists at most n members, then a 507
    moved_from: str = ""  # a path prefix clients use that the server moved away from
    redirect_status: int = 301
    cancelled_to_exdate: bool = False  # a PUT's cancelled override becomes an EXDATE on its series


PROFILES = {
    p.name: p
    for p in (
        Profile("cyrus", uid_unique_per_account=True),
        Profile("icloud", uid_unique_per_account=True, lists_itself=True, flaky_every=9),
        Profile("nextcloud", trash_bin=True),  # `shared` is set to the source calendar by the fixture
        Profile("sogo", ignore_if_none_match=True, empty_bare_query=True, unknown_token_207=True),
        Profile("ox", require_if_match=True, unknown_token_207=True),
        Profile("zimbra", ignore_if_none_match=True, cancelled_to_exdate=True),
        # Stalwart truncates at 2000 objects (the truncation test lowers that to 2)
        Profile("stalwart", unknown_token_207=True),
        Profile("throttled", throttle_sync=1),
        Profile("moved", moved_from="/old"),
        Profile("moved302", moved_from="/old", redirect_status=302),
    )
}


@dataclass
class ProxyState:
    """What the proxy remembers and counts (thread-safe enough for tests)."""

    profile: Profile
    uids: dict[bytes, str] = field(default_factory=dict)  # UID -> path holding it
    deletes: Counter[str] = field(default_factory=Counter)  # successful DELETEs per path
    requests: int = 0
    sync_reports: int = 0
    seen: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "METHOD path status" of every refusal
    lock: threading.Lock = field(default_factory=threading.Lock)


def _ms(responses: list[ET.Element], token: str | None) -> bytes:
    root = ET.Element("{DAV:}multistatus")
    root.extend(responses)
    if token is not None:
        ET.SubElement(root, "{DAV:}sync-token").text = token
    return ET.tostring(root, xml_declaration=True, encoding="utf-8")


def _status_response(href: str, status: str) -> ET.Element:
    response = ET.Element("{DAV:}response")
    ET.SubElement(response, "{DAV:}href").text = href
    ET.SubElement(response, "{DAV:}status").text = status
    return response


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return None

    # -- plumbing ----------------------------------------------------------------------------

    def _upstream(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        for name, value in headers or []:
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, status: int, body: bytes, extra: list[tuple[str, str]] | None = None) -> None:
        with self.server.state.lock:
            self.server.state.refused.append(f"{self.command} {self.path} {status}")
        self._answer(status, body, [("Content-Type", "application/xml; charset=utf-8"), *(extra or [])])

    def _private(self, path: str, headers: dict[str, str]) -> bool:
        status, _, data = self._upstream("GET", path, b"", headers)
        return status == 200 and b"CLASS:PRIVATE" in data

    # -- one request -------------------------------------------------------------------------

    def _handle(self) -> None:
        state = self.server.state
        profile = state.profile
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        # upstream answers plainly (no gzip), so the proxy can read and rewrite them
        dropped = ("host", "connection", "accept-encoding", "content-length")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        path = self.path
        with state.lock:
            state.requests += 1
            state.seen.append(f"{self.command} {path}")
            count = state.requests
        if profile.moved_from and path.startswith(profile.moved_from + "/"):
            location = path[len(profile.moved_from) :]
            self._refuse(profile.redirect_status, b"", [("Location", location)])
            return
        if profile.flaky_every and count % profile.flaky_every == 0:
            self._refuse(503, b"busy", [("Retry-After", "0")])
            return
        method = self.command
        is_sync = method == "REPORT" and b"sync-collection" in body
        if is_sync:
            with state.lock:
                state.sync_reports += 1
                throttled = state.sync_reports <= profile.throttle_sync
            if throttled:
                self._refuse(429, b"slow down", [("Retry-After", "1")])
                return
        if method == "PUT":
            if self._put_refused(body, headers):
                return
            if profile.ignore_if_none_match:
                headers = {k: v for k, v in headers.items() if k.lower() != "if-none-match"}
            if profile.cancelled_to_exdate:
                body = cancelled_to_exdate(body)
        if method == "DELETE" and profile.trash_bin and state.deletes[unquote(path)] >= 2:
            name = unquote(path).rsplit("/", 1)[-1].encode()
            self._refuse(403, SABRE_FORBIDDEN % name.replace(b".ics", b"-deleted.ics"))
            return
        bare = b"calendar-query" in body and b'comp-filter name="VCALENDAR"/>' in body
        if method == "REPORT" and profile.empty_bare_query and bare:
            self._answer(207, _ms([], None), [("Content-Type", "application/xml; charset=utf-8")])
            return
        hidden = bool(profile.shared) and unquote(path).startswith(profile.shared)
        if method == "GET" and hidden and self._private(path, headers):
            self._refuse(404, b"")
            return
        try:
            status, out_headers, data = self._upstream(method, path, body, headers)
        except OSError:
            self.close_connection = True
            return
        if is_sync:
            status, data = self._rewrite_sync(path, body, headers, status, data)
        elif method == "REPORT" and hidden and status == 207:
            data = self._hide_private_in_report(data)
        elif method == "PROPFIND" and hidden and status == 207:
            data = self._hide_private_in_propfind(data, headers)
        if method == "PUT" and 200 <= status < 300:
            found = _UID.search(body)
            if found:
                with state.lock:
                    state.uids[found.group(1).strip()] = unquote(path)
        if method == "DELETE" and 200 <= status < 300:
            with state.lock:
                state.deletes[unquote(path)] += 1
                for uid, where in list(state.uids.items()):
                    if where == unquote(path):
                        del state.uids[uid]
        self._answer(status, data, out_headers)

    def _put_refused(self, body: bytes, headers: dict[str, str]) -> bool:
        state, profile = self.server.state, self.server.state.profile
        lowered = {k.lower() for k in headers}
        if profile.require_if_match and "if-match" not in lowered and "if-none-match" not in lowered:
            self._refuse(409, b"")
            return True
        if profile.uid_unique_per_account:
            found = _UID.search(body)
            holder = state.uids.get(found.group(1).strip()) if found else None
            if holder is not None and holder != unquote(self.path):
                self._refuse(403, CYRUS_UID)
                return True
        return False

    def _rewrite_sync(
        self, path: str, body: bytes, headers: dict[str, str], status: int, data: bytes
    ) -> tuple[int, bytes]:
        profile = self.server.state.profile
        asked = ET.fromstring(body).findtext("D:sync-token", default="", namespaces=NS) or ""
        if status != 207 and asked and profile.unknown_token_207:
            # the token is unknown here: an ordinary, empty 207 with a fresh token (deletions hidden)
            fresh_body = body.replace(asked.encode(), b"")
            _, _, fresh = self._upstream("REPORT", path, fresh_body, headers)
            token = ET.fromstring(fresh).findtext("D:sync-token", namespaces=NS)
            return 207, _ms([], token)
        if status != 207:
            return status, data
        root = ET.fromstring(data)
        responses = root.findall("D:response", NS)
        token = root.findtext("D:sync-token", namespaces=NS)
        if profile.lists_itself:
            own = ET.Element("{DAV:}response")
            ET.SubElement(own, "{DAV:}href").text = path
            propstat = ET.SubElement(own, "{DAV:}propstat")
            prop = ET.SubElement(propstat, "{DAV:}prop")
            ET.SubElement(prop, "{DAV:}getetag").text = '"collection-etag"'
            ET.SubElement(propstat, "{DAV:}status").text = "HTTP/1.1 200 OK"
            responses.append(own)
        if profile.truncate_sync and not asked and len(responses) > profile.truncate_sync:
            kept = responses[: profile.truncate_sync]
            kept.append(_status_response(path, "HTTP/1.1 507 Insufficient Storage"))
            return 207, _ms(kept, None)
        return 207, _ms(responses, token)

    def _hide_private_in_report(self, data: bytes) -> bytes:
        root = ET.fromstring(data)
        out = []
        for response in root.findall("D:response", NS):
            text = response.findtext(".//C:calendar-data", default="", namespaces=NS) or ""
            if "CLASS:PRIVATE" in text:
                href = response.findtext("D:href", default="", namespaces=NS)
                out.append(_status_response(href, "HTTP/1.1 404 Not Found"))
            else:
                out.append(response)
        return _ms(out, root.findtext("D:sync-token", namespaces=NS))

    def _hide_private_in_propfind(self, data: bytes, headers: dict[str, str]) -> bytes:
        root = ET.fromstring(data)
        out = []
        for response in root.findall("D:response", NS):
            href = response.findtext("D:href", default="", namespaces=NS)
            if href.endswith(".ics") and self._private(href, headers):
                continue
            out.append(response)
        return _ms(out, None)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:
            self.close_connection = True
        except Exception:  # noqa: BLE001 - a bug in the proxy: say so in the test output, then hang up
            import traceback

            traceback.print_exc()
            self.close_connection = True

    do_GET = do_PUT = do_DELETE = do_OPTIONS = do_PROPFIND = do_REPORT = do_MKCALENDAR = _handle
    do_POST = do_PROPPATCH = do_HEAD = do_MOVE = do_COPY = _handle


_VEVENT = re.compile(rb"BEGIN:VEVENT\r?\n.*?END:VEVENT\r?\n", re.DOTALL)
_RID = re.compile(rb"^RECURRENCE-ID([;:].*?)\r?$", re.MULTILINE)


def cancelled_to_exdate(body: bytes) -> bytes:
    """Zimbra's way with a cancelled session: drop the override, add an EXDATE to the series."""
    blocks = _VEVENT.findall(body)
    cancelled = [b for b in blocks if _RID.search(b) and re.search(rb"^STATUS:CANCELLED\r?$", b, re.M)]
    masters = [b for b in blocks if not _RID.search(b)]
    if not cancelled or len(masters) != 1:
        return body
    master = masters[0]
    newline = b"\r\n" if b"\r\n" in master else b"\n"
    exdates = b"".join(b"EXDATE" + _RID.search(b).group(1) + newline for b in cancelled)  # type: ignore[union-attr]
    end = master.rindex(b"END:VEVENT")
    out = body.replace(master, master[:end] + exdates + master[end:])
    for block in cancelled:
        out = out.replace(block, b"")
    return out


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int, profile: Profile) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream_port = upstream_port
        self.state = ProxyState(profile)

    def handle_error(self, request: object, client_address: object) -> None:
        return None


class ProfileProxy:
    """A running proxy: `url_for(path)` is what the config names; `stop()` ends it."""

    def __init__(self, upstream_port: int, profile: Profile) -> None:
        self.server = _Server(upstream_port, profile)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def state(self) -> ProxyState:
        return self.server.state

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url_for(self, path: str) -> str:
        prefix = self.state.profile.moved_from
        return f"http://127.0.0.1:{self.port}{prefix}{path}"

    def set_profile(self, **changes: object) -> None:
        with self.state.lock:
            self.state.profile = replace(self.state.profile, **changes)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
