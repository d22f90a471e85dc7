"""The CalDAV transport against a scripted HTTP server: limits (size, gzip bomb, slow bytes),
redirects, plain http with a password, and the error class of every status a server may answer."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import connectors.caldav.transport as transport_module
from connectors.caldav.transport import QuotaFullError, Transport, member_name, normal_path
from connectors.caldav.wire import challenge_params
from tests.practice import Practice
from worker.cli import main
from worker.config import load_settings
from worker.errors import AuthError, ConfigError, ConnectorError, RefusedError, TransientError

SABRE_403 = (
    b'<?xml version="1.0"?><d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns">'
    b"<s:exception>Sabre\\DAV\\Exception\\Forbidden</s:exception><s:message>Access denied</s:message></d:error>"
)
NEED_PRIVILEGES = b'<?xml version="1.0"?><d:error xmlns:d="DAV:"><d:need-privileges/></d:error>'
MULTISTATUS = b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"></d:multistatus>'


@dataclass
class Script:
    """What the scripted server answers: `answer(handler)` writes the whole response."""

    answer: Callable[[http.server.BaseHTTPRequestHandler], None] | None = None
    seen: list[tuple[str, str, bytes, str]] = field(default_factory=list)  # method, path, body, auth


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.script.seen.append((self.command, self.path, body, self.headers.get("Authorization", "")))
        assert self.server.script.answer is not None
        try:
            self.server.script.answer(self)
        except OSError:
            self.close_connection = True

    do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = Script()

    def handle_error(self, request: object, client_address: object) -> None:
        return None


@pytest.fixture
def scripted() -> Iterator[_Server]:
    """A local HTTP server whose answers each test scripts."""
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """One attempt per request, small limits: each test sees one answer's effect, quickly."""
    monkeypatch.setattr(transport_module, "RETRY", transport_module.RetryPolicy(attempts=1))
    monkeypatch.setattr(
        transport_module, "LIMITS", replace(transport_module.LIMITS, max_response=1024 * 1024)
    )


def reply(
    status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return answer


def _transport(tmp_path: Path, url: str, *, extra: str = "", timeout: str = "1s") -> Transport:
    (tmp_path / "pw").write_text("s3cret")
    (tmp_path / "pw").chmod(0o600)
    practice = Practice(
        tmp_path / "p",
        source=f'kind = "caldav"\nurl = "{url}"\ntimeout = "{timeout}"\nusername = "me"\n'
        f'password_file = "{tmp_path / "pw"}"\n{extra}',
    )
    settings = load_settings(practice.config)
    return Transport(settings, settings.source, name="practice", role="source", first_url=url)


def _url(server: _Server, path: str = "/cal/") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


# -- limits ---------------------------------------------------------------------------------


def test_endless_body_stops_at_the_size_cap(scripted: _Server, tmp_path: Path) -> None:
    """An endless chunked answer is read up to the cap, then refused; memory stays bounded."""

    def endless(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(207)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b" " * 65536
        while True:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    scripted.script.answer = endless
    dav = _transport(tmp_path, _url(scripted))
    with pytest.raises(ConnectorError, match="larger than 1 MB"):
        dav.request("sync", "REPORT", _url(scripted))
    assert dav.bytes_in <= 1024 * 1024 + 65536
    dav.close()


def test_gzip_bomb_stops_at_the_size_cap(scripted: _Server, tmp_path: Path) -> None:
    """A small gzip body that expands to 64 MB is refused once the decoded bytes pass the cap."""
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))
    scripted.script.answer = reply(207, bomb, {"Content-Encoding": "gzip"})
    dav = _transport(tmp_path, _url(scripted))
    with pytest.raises(ConnectorError, match="larger than 1 MB"):
        dav.request("sync", "REPORT", _url(scripted))
    assert dav.bytes_in <= 2 * 1024 * 1024
    dav.close()


def test_slow_bytes_hit_the_request_deadline(scripted: _Server, tmp_path: Path) -> None:
    """One byte every 0.2 s with timeout = 1s: the request ends at its total deadline (3 s), not when the server stops."""

    def slow(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(207)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        for _ in range(1000):
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.2)

    scripted.script.answer = slow
    dav = _transport(tmp_path, _url(scripted))
    started = time.monotonic()
    with pytest.raises(TransientError, match="did not arrive in time"):
        dav.request("sync", "REPORT", _url(scripted))
    assert time.monotonic() - started < 5
    dav.close()


def test_pass_deadline_stops_further_requests(
    scripted: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the pass deadline has passed, no request goes out: a TransientError says the pass ran out of time."""
    scripted.script.answer = reply(207, MULTISTATUS)
    dav = _transport(tmp_path, _url(scripted))
    dav.pass_end = time.monotonic() - 1
    with pytest.raises(TransientError, match="ran out of time"):
        dav.request("sync", "REPORT", _url(scripted))
    assert not scripted.script.seen
    dav.close()


# -- redirects ------------------------------------------------------------------------------


def test_same_origin_301_keeps_method_body_and_credentials(scripted: _Server, tmp_path: Path) -> None:
    """A 301 to the same server is followed with the same method, body and Authorization."""

    def moved(h: http.server.BaseHTTPRequestHandler) -> None:
        if h.path.startswith("/old/"):
            reply(301, b"", {"Location": h.path[len("/old") :]})(h)
        else:
            reply(207, MULTISTATUS)(h)

    scripted.script.answer = moved
    dav = _transport(tmp_path, _url(scripted, "/old/cal/"))
    assert dav.request("sync", "REPORT", _url(scripted, "/old/cal/"), body="<x/>").status == 207
    (first, second) = scripted.script.seen
    assert second[:3] == ("REPORT", "/cal/", b"<x/>") and second[3] == first[3] != ""
    assert dav.base(_url(scripted, "/old/cal/")) == _url(scripted, "/cal/")
    dav.close()


@pytest.mark.parametrize(
    ("status", "location"),
    [(302, "/cal2/"), (303, "/cal2/"), (301, "https://elsewhere.example/cal/")],
)
def test_other_redirects_are_errors_naming_the_location(
    scripted: _Server, tmp_path: Path, status: int, location: str
) -> None:
    """A 302/303 (PUT would become GET) or a move to another server is an error naming the Location."""
    scripted.script.answer = reply(status, b"", {"Location": location})
    dav = _transport(tmp_path, _url(scripted))
    with pytest.raises(ConnectorError, match=f"redirects \\(HTTP {status}\\) to .*{location.rstrip('/')}"):
        dav.request("put", "PUT", _url(scripted, "/cal/x.ics"), body="data")
    assert len(scripted.script.seen) == 1
    dav.close()


# -- plain http and Google --------------------------------------------------------------------


def test_http_with_a_password_is_refused_off_loopback(tmp_path: Path) -> None:
    """`http://` to a non-loopback host with a password is a config error, unless allow_insecure_http = true."""
    with pytest.raises(ConfigError, match="plain http"):
        _transport(tmp_path, "http://dav.example.invalid/cal/")
    dav = _transport(tmp_path, "http://dav.example.invalid/cal/", extra="allow_insecure_http = true\n")
    assert dav.insecure_http
    dav.close()


def test_google_caldav_url_says_use_kind_google(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Google's CalDAV endpoint needs OAuth: the config error points to kind = "google"."""
    url = "https://apidata.googleusercontent.com/caldav/v2/someone%40gmail.com/events/"
    practice = Practice(tmp_path / "g", source=f'kind = "caldav"\nurl = "{url}"\n')
    capsys.readouterr()
    assert main(["--config", str(practice.config), "run", "--once"]) == 2
    assert 'use kind = "google"' in capsys.readouterr().err


# -- statuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "status", "body", "headers", "error", "text"),
    [
        ("REPORT", 401, b"", {"WWW-Authenticate": 'Basic realm="x"'}, AuthError, "app password"),
        ("REPORT", 403, SABRE_403, {}, AuthError, "access denied"),
        ("PUT", 403, SABRE_403, {}, RefusedError, r"HTTP 403 Forbidden\) \(Access denied\)"),
        ("PUT", 403, NEED_PRIVILEGES, {}, AuthError, "need-privileges"),
        ("PUT", 409, b"", {}, RefusedError, "HTTP 409"),
        ("PUT", 400, b"", {}, RefusedError, "HTTP 400"),
        ("PUT", 412, b"", {}, ConnectorError, "HTTP 412"),
        ("PUT", 423, b"", {"Retry-After": "5"}, TransientError, "locked"),
        ("PUT", 507, b"", {}, QuotaFullError, "out of storage"),
        ("REPORT", 429, b"", {"Retry-After": "7"}, TransientError, "slow down"),
        ("REPORT", 503, b"", {}, TransientError, "HTTP 503"),
    ],
)
def test_status_maps_to_the_right_error(
    scripted: _Server,
    tmp_path: Path,
    method: str,
    status: int,
    body: bytes,
    headers: dict[str, str],
    error: type[Exception],
    text: str,
) -> None:
    """Each status a server answers becomes the error class the runner acts on, with a message that says why."""
    scripted.script.answer = reply(status, body, headers)
    dav = _transport(tmp_path, _url(scripted))
    with pytest.raises(error, match=text) as raised:
        dav.request("op", method, _url(scripted, "/cal/x.ics"), body="x", detail=True)
    if "Retry-After" in headers:
        assert getattr(raised.value, "retry_after", None) == float(headers["Retry-After"])
    dav.close()


def test_quota_full_is_not_retried_in_the_pass(
    scripted: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """507 on a write is transient for the next pass but never retried within this one."""
    monkeypatch.setattr(transport_module, "RETRY", transport_module.RetryPolicy(attempts=4, base=0.01))
    scripted.script.answer = reply(507)
    dav = _transport(tmp_path, _url(scripted))
    with pytest.raises(QuotaFullError):
        dav.request("create", "PUT", _url(scripted, "/cal/x.ics"), body="x")
    assert len(scripted.script.seen) == 1
    dav.close()


# -- hrefs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("href", "name"),
    [
        ("/u/calls/callsheet-x.ics", "callsheet-x.ics"),
        ("/u/calls/../practice/a4.ics", None),
        ("/u/calls/%2e%2e/practice/a4.ics", None),
        ("/u/calls//callsheet-x.ics", "callsheet-x.ics"),
        ("/u/calls/", None),
        ("/u/calls/sub/x.ics", None),
        ("https://other.example/u/calls/x.ics", None),
        ("/u/calls/call%73heet-x.ics", "callsheet-x.ics"),
    ],
)
def test_only_direct_members_of_the_collection_are_ours(href: str, name: str | None) -> None:
    """An href counts only when, normalised, it lies directly inside the configured collection."""
    assert member_name("https://dav.example/u/calls/", href) == name


@given(
    st.lists(
        st.sampled_from(["..", ".", "", "calls", "u", "x.ics", "%2e%2e", "%2E", "a%2fb", "callsheet-k.ics"]),
        max_size=6,
    )
)
def test_a_member_name_always_lies_inside_the_collection(segments: list[str]) -> None:
    """Whatever the href, a name member_name accepts is one segment directly under the normalised collection."""
    collection = "https://dav.example/u/calls/"
    href = "/u/calls/" + "/".join(segments)
    name = member_name(collection, href)
    if name is not None:
        assert "/" not in name and name not in ("", ".", "..")
        assert normal_path(href) == "/u/calls/" + name


# -- the wire: connections, Digest, gzip, proxies ---------------------------------------------


def test_requests_share_one_kept_alive_connection(scripted: _Server, tmp_path: Path) -> None:
    """Three requests of one pass go over one connection (no new TCP or TLS handshake per request)."""
    scripted.script.answer = reply(207, MULTISTATUS)
    dav = _transport(tmp_path, _url(scripted))
    for _ in range(3):
        assert dav.request("sync", "REPORT", _url(scripted), body="<x/>").status == 207
    assert dav.wire.opened == 1 and len(scripted.script.seen) == 3
    dav.close()


def test_a_connection_the_server_closed_while_idle_is_replaced(scripted: _Server, tmp_path: Path) -> None:
    """A server that drops the kept-alive connection after an answer (its idle timeout) costs a new connection, not an error."""

    def then_hang_up(h: http.server.BaseHTTPRequestHandler) -> None:
        reply(207, MULTISTATUS)(h)
        h.close_connection = True  # closes without saying so (no Connection: close)

    scripted.script.answer = then_hang_up
    dav = _transport(tmp_path, _url(scripted))
    assert dav.request("sync", "REPORT", _url(scripted), body="<x/>").status == 207
    time.sleep(0.1)
    assert dav.request("sync", "REPORT", _url(scripted), body="<x/>").status == 207
    assert dav.wire.opened == 2 and len(scripted.script.seen) == 2
    dav.close()


def test_digest_is_answered_when_the_server_asks_for_it(scripted: _Server, tmp_path: Path) -> None:
    """A 401 asking for Digest only is answered once with Digest credentials the server can check; later requests send them at once."""
    # research/caldav-servers.md, Baïkal (sabre/dav): "Auth and discovery: Digest or Basic"; and
    # "Preemptive Basic over HTTPS, with a one-time fallback to negotiation (Digest on Baïkal)"
    nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093"

    def digest_only(h: http.server.BaseHTTPRequestHandler) -> None:
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("Digest "):
            reply(401, b"", {"WWW-Authenticate": f'Digest realm="dav", nonce="{nonce}", qop="auth"'})(h)
            return
        params = challenge_params(auth)
        ha1 = hashlib.md5(b"me:dav:s3cret").hexdigest()
        ha2 = hashlib.md5(f"{h.command}:{params['uri']}".encode()).hexdigest()
        want = hashlib.md5(f"{ha1}:{nonce}:{params['nc']}:{params['cnonce']}:auth:{ha2}".encode()).hexdigest()
        assert params["uri"] == h.path and params["response"] == want
        reply(207, MULTISTATUS)(h)

    scripted.script.answer = digest_only
    dav = _transport(tmp_path, _url(scripted))
    assert dav.request("sync", "REPORT", _url(scripted), body="<x/>").status == 207
    assert dav.request("list", "PROPFIND", _url(scripted, "/cal/?a=1"), body="<x/>").status == 207
    auths = [seen[3].split(" ", 1)[0] for seen in scripted.script.seen]
    assert auths == ["Basic", "Digest", "Digest"]
    dav.close()


def test_gzip_answers_are_decoded(scripted: _Server, tmp_path: Path) -> None:
    """A gzip-encoded multistatus reads as the plain one."""
    scripted.script.answer = reply(207, gzip.compress(MULTISTATUS), {"Content-Encoding": "gzip"})
    dav = _transport(tmp_path, _url(scripted))
    assert dav.request("sync", "REPORT", _url(scripted)).body == MULTISTATUS
    dav.close()


def test_the_environment_proxy_is_used(
    scripted: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With http_proxy set, requests go to the proxy in absolute form, its credentials beside the server's."""
    monkeypatch.setenv("http_proxy", f"http://px:pw@127.0.0.1:{scripted.server_address[1]}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    seen_proxy: list[str] = []

    def proxy(h: http.server.BaseHTTPRequestHandler) -> None:
        seen_proxy.append(h.headers.get("Proxy-Authorization", ""))
        reply(207, MULTISTATUS)(h)

    scripted.script.answer = proxy
    url = "http://dav.example.invalid/cal/"
    dav = _transport(tmp_path, url, extra="allow_insecure_http = true\n")
    assert dav.request("sync", "REPORT", url).status == 207
    ((method, path, _, auth),) = scripted.script.seen
    assert (method, path) == ("REPORT", url) and auth.startswith("Basic ")
    assert seen_proxy == ["Basic cHg6cHc="]
    dav.close()
