"""Real CalDAV servers for the integration tests: Radicale and Xandikos as subprocesses.

Each server listens on 127.0.0.1 on a free port, keeps its data in a temp folder, and is
stopped by its own process id. `dav_server` is one server per kind for the whole session
(parametrised, so a test using it runs on both); `dav_server_factory` starts private ones
for tests that stop, restart or put a proxy in front of a server. `fault_proxy` is a small
HTTP proxy that can answer 500s or hold responses back, and (per request, for the chaos test)
drop connections or cut bodies, for the fault tests.

Only DAV-server fixtures belong here; other integration tests keep their own fixtures.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import http.server
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from tests.fakes.caldav_proxy import PROFILES, ProfileProxy
from tests.fakes.google import FakeGoogle, GooglePractice, google_practice
from tests.practice import DEFAULT_CLIENTS, ClientSpec, Practice, vcalendar
from tests.servers import free_port, postgres
from worker.cli import main as cli_main

BIN = Path(sys.executable).parent
USERNAME = "therapist"
PASSWORD = "s3cret-test-password"


def _command(kind: str, port: int, folder: Path, *, htpasswd: Path | None) -> list[str]:
    if kind == "radicale":
        cmd = [
            str(BIN / "python"),
            "-m",
            "radicale",
            "--server-hosts",
            f"127.0.0.1:{port}",
            "--storage-filesystem-folder",
            str(folder / "collections"),
            "--logging-level",
            "error",
        ]
        if htpasswd is None:
            return [*cmd, "--auth-type", "none"]
        return [
            *cmd,
            "--auth-type",
            "htpasswd",
            "--auth-htpasswd-filename",
            str(htpasswd),
            "--auth-htpasswd-encryption",
            "plain",
        ]
    if kind == "xandikos":
        cmd = [
            str(BIN / "xandikos"),
            "serve",
            "-d",
            str(folder / "data"),
            "--state-dir",
            str(folder / "state"),
            "-l",
            "127.0.0.1",
            "-p",
            str(port),
            "--autocreate",
            "--no-detect-systemd",
        ]
        if htpasswd is None:
            return cmd
        # Xandikos serves Basic auth only over HTTPS: a self-signed certificate of its own
        return [*cmd, "--autocert", "--htpasswd", str(htpasswd)]
    raise ValueError(f"unknown DAV server kind {kind!r}")


def _connection(port: int, *, tls: bool, timeout: float) -> http.client.HTTPConnection:
    if tls:  # the test server's self-signed certificate: these helpers do not verify it
        return http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=timeout, context=ssl._create_unverified_context()
        )
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


class ExitedEarly(RuntimeError):
    """The server process ended before it answered (for one: its port was taken meanwhile)."""


def _wait_until_up(port: int, proc: subprocess.Popen[bytes], *, tls: bool, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ExitedEarly(f"the DAV server exited early with status {proc.returncode}")
        conn = _connection(port, tls=tls, timeout=2)
        try:
            conn.request("OPTIONS", "/")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.05)
        finally:
            conn.close()
    raise RuntimeError(f"the DAV server did not answer on port {port} within {timeout}s")


@dataclass
class DavServer:
    """One Radicale or Xandikos process; `stop()` and `start()` keep port and storage."""

    kind: str
    folder: Path
    port: int = field(default_factory=free_port)
    htpasswd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def tls(self) -> bool:
        return self.kind == "xandikos" and self.htpasswd is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/"

    @property
    def home(self) -> str:
        """Where this server keeps the test user's collections (a path ending in /)."""
        return f"/{USERNAME}/" if self.kind == "radicale" else "/user/calendars/"

    @property
    def storage(self) -> Path:
        """Radicale's collection root (for loading big calendars before start)."""
        return self.folder / "collections" / "collection-root" / USERNAME

    def start(self) -> None:
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(
            _command(self.kind, self.port, self.folder, htpasswd=self.htpasswd),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_until_up(self.port, self.proc, tls=self.tls)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the process by its own pid (terminate, then kill if it hangs)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    # -- collections ----------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        port: int | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        conn = _connection(port or self.port, tls=self.tls, timeout=30)
        try:
            all_headers = dict(headers or {})
            if self.htpasswd is not None:
                token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
                all_headers["Authorization"] = f"Basic {token}"
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, data, {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()

    def make_collection(
        self, name: str | None = None, components: tuple[str, ...] = ("VEVENT",), *, display: str = ""
    ) -> DavCollection:
        """MKCALENDAR a new, uniquely named collection that accepts `components` (display name: `display`)."""
        name = name or f"t-{uuid.uuid4().hex[:10]}"
        path = f"{self.home}{name}/"
        if self.kind == "radicale":
            self._request("MKCOL", self.home)  # the principal's home; 405 when it exists already
        comps = "".join(f'<C:comp name="{c}"/>' for c in components)
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
            f"<D:displayname>{display or name}</D:displayname>"
            f"<C:supported-calendar-component-set>{comps}</C:supported-calendar-component-set>"
            "</D:prop></D:set></C:mkcalendar>"
        ).encode()
        status, data, _ = self._request("MKCALENDAR", path, body, {"Content-Type": "application/xml"})
        if status not in (200, 201):
            raise RuntimeError(f"MKCALENDAR {path} answered {status}: {data[:200]!r}")
        return DavCollection(self, path)


@dataclass
class DavCollection:
    """A calendar collection on a test server, with raw helpers for setting up and asserting."""

    server: DavServer
    path: str

    @property
    def url(self) -> str:
        return f"{self.server.url.rstrip('/')}{self.path}"

    def put(self, name: str, ics: str | bytes) -> str:
        """Store one object as <name>.ics (overwriting); returns its etag."""
        body = ics.encode() if isinstance(ics, str) else ics
        status, data, headers = self.server._request(
            "PUT", f"{self.path}{quote(name)}.ics", body, {"Content-Type": "text/calendar; charset=utf-8"}
        )
        if status not in (200, 201, 204):
            raise RuntimeError(f"PUT {name} answered {status}: {data[:200]!r}")
        return headers.get("etag", "")

    def delete(self, name: str) -> None:
        status, _, _ = self.server._request("DELETE", f"{self.path}{quote(name)}.ics")
        if status not in (200, 204):
            raise RuntimeError(f"DELETE {name} answered {status}")

    def get(self, name: str) -> bytes:
        status, data, _ = self.server._request("GET", f"{self.path}{quote(name)}.ics")
        if status != 200:
            raise RuntimeError(f"GET {name} answered {status}")
        return data

    def objects(self) -> dict[str, bytes]:
        """Every object in the collection: {file name: iCalendar bytes} (one REPORT)."""
        import xml.etree.ElementTree as ET
        from urllib.parse import unquote

        body = (
            b'<?xml version="1.0" encoding="utf-8"?>'
            b'<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            b"<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            b'<C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>'
        )
        status, data, _ = self.server._request(
            "REPORT", self.path, body, {"Depth": "1", "Content-Type": "application/xml"}
        )
        if status != 207:
            raise RuntimeError(f"REPORT {self.path} answered {status}")
        out: dict[str, bytes] = {}
        ns = {"D": "DAV:", "C": "urn:ietf:params:xml:ns:caldav"}
        for response in ET.fromstring(data).findall("D:response", ns):
            href = response.findtext("D:href", default="", namespaces=ns)
            calendar_data = response.find(".//C:calendar-data", ns)
            if calendar_data is None or not calendar_data.text:
                continue
            out[unquote(href.rstrip("/").rsplit("/", 1)[-1])] = calendar_data.text.encode()
        return out


def _start(kind: str, *, auth: bool = False) -> DavServer:
    folder = Path(tempfile.mkdtemp(prefix=f"callsheet-{kind}-"))
    htpasswd = None
    if auth:
        htpasswd = folder / "users"
        if kind == "xandikos":  # {SHA}: the one format it reads without extra packages
            digest = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
            htpasswd.write_text(f"{USERNAME}:{{SHA}}{digest}\n", encoding="utf-8")
        else:
            htpasswd.write_text(f"{USERNAME}:{PASSWORD}\n", encoding="utf-8")
    server = DavServer(kind=kind, folder=folder, htpasswd=htpasswd)
    try:
        for attempt in range(3):  # under xdist another worker may bind the free port first
            try:
                server.start()
                break
            except ExitedEarly:
                if attempt == 2:
                    raise
                server.port = free_port()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return server


def _finish(server: DavServer) -> None:
    server.stop()
    shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture(scope="session", params=["radicale", "xandikos"])
def dav_server(request: pytest.FixtureRequest) -> Iterator[DavServer]:
    """A running Radicale or Xandikos shared by the session (tests make their own collections)."""
    server = _start(str(request.param))
    try:
        yield server
    finally:
        _finish(server)


@pytest.fixture(scope="session")
def radicale_auth() -> Iterator[DavServer]:
    """A Radicale that requires HTTP Basic auth (USERNAME / PASSWORD from this module)."""
    server = _start("radicale", auth=True)
    try:
        yield server
    finally:
        _finish(server)


@pytest.fixture(scope="session")
def xandikos_tls_auth() -> Iterator[DavServer]:
    """A Xandikos over HTTPS (self-signed certificate) that requires HTTP Basic auth."""
    server = _start("xandikos", auth=True)
    try:
        yield server
    finally:
        _finish(server)


@pytest.fixture
def dav_server_factory() -> Iterator[Callable[..., DavServer]]:
    """Start private servers (stopped and removed at the end of the test)."""
    started: list[DavServer] = []

    def factory(kind: str, *, auth: bool = False, start: bool = True) -> DavServer:
        if start:
            server = _start(kind, auth=auth)
        else:
            folder = Path(tempfile.mkdtemp(prefix=f"callsheet-{kind}-"))
            server = DavServer(kind=kind, folder=folder)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            _finish(server)


# -- a proxy that injects faults ------------------------------------------------------------


@dataclass
class Faults:
    """What the proxy does to the next requests; all counters are thread-safe enough for tests."""

    fail_status: int = 0  # answer this status instead of forwarding
    fail_count: int = 0  # ... for this many requests (then forward again)
    fail_methods: frozenset[str] = frozenset()  # only these methods (empty: all)
    fail_headers: dict[str, str] = field(default_factory=dict)  # extra headers on the failure
    delay: float = 0.0  # hold forwarded responses this long before answering
    delay_methods: frozenset[str] = frozenset()  # only for these methods (empty: all)
    seen: list[str] = field(default_factory=list)  # "METHOD path" of every request
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Per-request faults: choose(method, path) names one of CHAOS_KINDS, or "" to pass it on.
    choose: Callable[[str, str], str] | None = None
    slow_by: float = 0.0  # how long a "slow" answer is held back
    injected: list[str] = field(default_factory=list)  # the chosen kind of every injected fault


# What `Faults.choose` may answer: the connection closes before the request reaches the server
# ("drop") or after the server handled it ("drop_after"); an HTTP 500 instead of forwarding; the
# answer held back `slow_by` seconds ("slow"); half the body with a matching Content-Length
# ("truncate"); half the body, the full Content-Length, then the connection closes ("cut").
CHAOS_KINDS = ("drop", "drop_after", "500", "slow", "truncate", "cut")


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _handle(self) -> None:
        faults = self.server.faults
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with faults.lock:
            faults.seen.append(f"{self.command} {self.path}")
            fail = faults.fail_count > 0 and (not faults.fail_methods or self.command in faults.fail_methods)
            if fail:
                faults.fail_count -= 1
            chaos = "" if fail or faults.choose is None else faults.choose(self.command, self.path)
            if chaos:
                faults.injected.append(chaos)
        if chaos == "drop":
            self.close_connection = True
            return
        if fail or chaos == "500":
            payload = b"injected failure"
            self.send_response(faults.fail_status if fail else 500)
            for name, value in faults.fail_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            status, reason, out_headers = response.status, response.reason, response.getheaders()
        except OSError:
            self.close_connection = True
            return
        finally:
            upstream.close()
        if chaos == "drop_after":
            self.close_connection = True
            return
        if faults.delay and (not faults.delay_methods or self.command in faults.delay_methods):
            time.sleep(faults.delay)
        if chaos == "slow":
            time.sleep(faults.slow_by)
        declared = len(data)
        if chaos in ("truncate", "cut"):
            data = data[: len(data) // 2]
            declared = len(data) if chaos == "truncate" else declared
        try:
            self.send_response(status, reason)
            for name, value in out_headers:
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(declared))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True
        if chaos == "cut":
            self.close_connection = True

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:
            self.close_connection = True

    do_GET = do_PUT = do_DELETE = do_OPTIONS = do_PROPFIND = do_REPORT = do_MKCALENDAR = _handle
    do_POST = do_PROPPATCH = do_HEAD = do_MOVE = do_COPY = _handle


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream_port = upstream_port
        self.faults = Faults()

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a client that hung up (timeout) is part of the test


@dataclass
class FaultProxy:
    """The proxy in front of one DavServer: point the config at `url_for(collection)`."""

    server: _ProxyServer
    thread: threading.Thread

    @property
    def faults(self) -> Faults:
        return self.server.faults

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url_for(self, collection: DavCollection) -> str:
        return f"http://127.0.0.1:{self.port}{urlsplit(collection.url).path}"

    def reset(self) -> None:
        with self.faults.lock:
            self.faults.fail_count = 0
            self.faults.fail_status = 0
            self.faults.fail_methods = frozenset()
            self.faults.fail_headers = {}
            self.faults.delay = 0.0
            self.faults.delay_methods = frozenset()
            self.faults.choose = None


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[DavServer], FaultProxy]]:
    """Start a fault-injecting proxy in front of a server (stopped at the end of the test)."""
    proxies: list[FaultProxy] = []

    def start(target: DavServer) -> FaultProxy:
        server = _ProxyServer(target.port)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        proxy = FaultProxy(server, thread)
        proxies.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in proxies:
            proxy.reset()
            proxy.server.shutdown()
            proxy.server.server_close()
            with contextlib.suppress(RuntimeError):
                proxy.thread.join(timeout=5)


# -- a practice whose calendars live on a DAV server -----------------------------------------


@dataclass
class DavPractice:
    """A practice (config + roster on disk) reading `source` and writing `events` / `tasks`."""

    practice: Practice
    source: DavCollection
    events: DavCollection
    tasks: DavCollection

    @property
    def config(self) -> Path:
        return self.practice.config

    def add(self, name: str, *components: str) -> str:
        """Store one appointment object (these VEVENTs) in the source calendar; returns its etag."""
        return self.source.put(name, vcalendar(*components))

    def remove(self, name: str) -> None:
        self.source.delete(name)

    def run(self, now: str) -> int:
        """One pass through the real command line (`run --once --now`)."""
        return cli_main(["--config", str(self.config), "run", "--once", "--now", now])

    def plan(self, now: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
        """`plan --json` through the real command line, parsed."""
        capsys.readouterr()
        assert cli_main(["--config", str(self.config), "plan", "--json", "--now", now]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def dav_config(
    source_urls: list[str], events_url: str, tasks_url: str, *, timeout: str = "5s"
) -> tuple[str, str]:
    """The [source] and [reminders] bodies of a CalDAV practice (reminders inherit the timeout)."""
    urls = ", ".join(json.dumps(u) for u in source_urls)
    source = f'kind = "caldav"\nurls = [{urls}]\ntimeout = "{timeout}"\n'
    reminders = f'kind = "caldav"\nevents_url = "{events_url}"\ntasks_url = "{tasks_url}"\n'
    return source, reminders


@pytest.fixture
def dav_practice(tmp_path: Path) -> Callable[..., DavPractice]:
    """Make a practice on a server: fresh source, events and (VTODO) tasks collections."""

    def make(
        server: DavServer,
        *,
        clients: Sequence[ClientSpec] = DEFAULT_CLIENTS,
        url_of: Callable[[DavCollection], str] = lambda c: c.url,
        timeout: str = "5s",
    ) -> DavPractice:
        source = server.make_collection()
        events = server.make_collection()
        tasks = server.make_collection(components=("VTODO",))
        source_text, reminders_text = dav_config(
            [url_of(source)], url_of(events), url_of(tasks), timeout=timeout
        )
        practice = Practice(
            tmp_path / f"practice-{uuid.uuid4().hex[:6]}",
            clients=clients,
            source=source_text,
            reminders=reminders_text,
        )
        return DavPractice(practice, source, events, tasks)

    return make


# -- counting what the connector sends ------------------------------------------------------


@dataclass(frozen=True)
class SentRequest:
    method: str
    path: str
    body: str


@dataclass
class RequestLog:
    """Every request the CalDAV connector made while the fixture is active."""

    sent: list[SentRequest] = field(default_factory=list)
    bytes_in: int = 0  # answer bodies, after decompression
    bytes_out: int = 0  # request bodies

    def clear(self) -> None:
        self.sent.clear()
        self.bytes_in = self.bytes_out = 0

    def to(self, collection: DavCollection) -> list[SentRequest]:
        """The requests whose URL lies in this collection (the collection or one of its objects)."""
        return [r for r in self.sent if r.path.startswith(collection.path)]

    def methods(self, collection: DavCollection) -> list[str]:
        return [r.method for r in self.to(collection)]


@pytest.fixture
def dav_requests(monkeypatch: pytest.MonkeyPatch) -> RequestLog:
    """Wrap Transport.exchange (the one door every CalDAV request goes through) to record requests."""
    from connectors.caldav.transport import Answer, Transport

    record = RequestLog()
    original = Transport.exchange

    def counting(self: Transport, method: str, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        record.sent.append(SentRequest(method, unquote(urlsplit(url).path), body.decode("utf-8", "replace")))
        answer = original(self, method, url, body, headers)
        record.bytes_out += len(body)
        record.bytes_in += len(answer.body)
        return answer

    monkeypatch.setattr(Transport, "exchange", counting)
    return record


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the CalDAV connector's retry policy so fault tests take seconds, not a minute."""
    import connectors.caldav.transport as module

    monkeypatch.setattr(
        module,
        "RETRY",
        module.RetryPolicy(attempts=3, budget=8.0, base=0.05, cap=0.2, max_retry_after=3.0),
    )


# -- server profiles: a Radicale answering as another server does ---------------------------


@pytest.fixture
def profile_practice(
    dav_server_factory: Callable[..., DavServer], dav_practice: Callable[..., DavPractice]
) -> Iterator[Callable[..., tuple[ProfileProxy, DavPractice]]]:
    """Make a Radicale, a profile proxy in front of it (tests/fakes/caldav_proxy.py), and the practice."""
    proxies: list[ProfileProxy] = []

    def make(profile: str, **options: object) -> tuple[ProfileProxy, DavPractice]:
        from tests.integration.test_caldav_passes import CLIENTS, load_practice

        server = dav_server_factory("radicale")
        proxy = ProfileProxy(server.port, PROFILES[profile])
        proxies.append(proxy)
        dp = dav_practice(server, clients=CLIENTS, url_of=lambda c: proxy.url_for(c.path), **options)
        if profile == "nextcloud":  # the practice calendar reaches callsheet's account through a share
            proxy.set_profile(shared=dp.source.path)
        load_practice(dp)
        return proxy, dp

    try:
        yield make
    finally:
        for proxy in proxies:
            proxy.stop()


# -- the Google fake ----------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeGoogle]:
    """A fresh local fake of Calendar v3, Tasks v1 and the OAuth token endpoint."""
    with FakeGoogle() as server:
        yield server


@pytest.fixture
def google_fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the Google connector's retry policy so fault tests take seconds."""
    from connectors.google import api

    monkeypatch.setattr(api, "DEFAULT_RETRY", api.RetryPolicy(budget=5.0, base=0.01, cap=0.05))


@pytest.fixture
def gp(fake: FakeGoogle, tmp_path: Path) -> GooglePractice:
    """The sample Google practice on the fake, with a 1 s client timeout (for injected hangs)."""
    return google_practice(fake, tmp_path / "google", timeout="1s")


# -- PostgreSQL (the state_url backend) ------------------------------------------------------------------

PG_USER = "callsheet"  # the database superuser initdb creates (trust, on 127.0.0.1 only)
PG_SECRET_ROLE, PG_SECRET_PASSWORD = "guarded", "pg-test-password-7731"  # needs its password


@dataclass
class PgServer:
    """A PostgreSQL server of this test session on 127.0.0.1; `database()` gives each test its own schema."""

    port: int
    folder: Path
    admin_url: str

    def url(self, schema: str) -> str:
        return f"{self.admin_url}?options=-csearch_path%3D{schema}"

    def database(self) -> str:
        """A `state_url` whose tables live in a fresh schema of their own."""
        import psycopg

        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {PG_SECRET_ROLE}".encode())
        return self.url(schema)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL per test session (per xdist worker): initdb in a temp folder owned by an
    unprivileged user, started on a free loopback port with no Unix socket, stopped at the end."""
    # one role that must give a password over TCP (the state_password_env test); the rest is trusted
    hba = f"host all {PG_SECRET_ROLE} 127.0.0.1/32 scram-sha-256\n"
    with postgres(
        prefix="callsheet-pg-", superuser=PG_USER, durable=False, max_connections=300, hba=hba
    ) as cluster:
        server = PgServer(cluster.port, cluster.folder, cluster.admin_url)
        try:
            import psycopg

            with psycopg.connect(server.admin_url, autocommit=True) as conn:
                conn.execute(
                    f"CREATE ROLE {PG_SECRET_ROLE} LOGIN PASSWORD '{PG_SECRET_PASSWORD}'".encode()  # test-only
                )
            yield server
        finally:
            from worker import state_pg

            state_pg.close_pools()


# Test modules that set `pytestmark = pytest.mark.state_backends` run every test using the
# `practice` (or `state_url`) fixture twice (`sqlite_only` tests: once): on SQLite (state_dir/state.db) and on PostgreSQL (state_url).
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise the `practice` of modules marked `state_backends` over both state backends."""
    if metafunc.definition.get_closest_marker("state_backends") and "state_url" in metafunc.fixturenames:
        sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize(
            "state_backend", ["sqlite"] if sqlite_only else ["sqlite", "postgresql"], indirect=True
        )


@pytest.fixture
def state_backend(request: pytest.FixtureRequest) -> str:
    """The state backend of this test: "sqlite" (the default) or "postgresql"."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def state_url(request: pytest.FixtureRequest, state_backend: str) -> Iterator[str]:
    """ "" on SQLite; a fresh PostgreSQL schema's URL when the test runs on PostgreSQL."""
    if state_backend == "sqlite":
        yield ""
        return
    yield request.getfixturevalue("pg_server").database()
    from worker import state_pg

    state_pg.close_pools()


@pytest.fixture
def practice(tmp_path: Path, state_url: str) -> Practice:
    """A small practice on disk (the default made-up clients, an empty calendar), its state on the
    test's backend."""
    return Practice(tmp_path / "practice", state_url=state_url)
