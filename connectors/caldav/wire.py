"""HTTP/1.1 for the CalDAV connector, on the standard library alone.

A pass makes a handful of requests to one server, so what it needs is small: one kept-alive
connection per origin, TLS with the system's trust store, answers read as a stream (the
caller caps size and time), gzip/deflate decoded in bounded steps (a gzip bomb never grows
past one step), Basic and Digest credentials (RFC 7617, RFC 7616), and the proxies of the
environment (`https_proxy`, `http_proxy`, `no_proxy`). An HTTP client library brings more
than that and costs more to import than a warm pass costs to run (niquests: ~180 ms of a
~300 ms process; `http.client`, `ssl` and `zlib`: ~20 ms).

A kept-alive connection the server has closed meanwhile (its idle timeout) shows as a
disconnect before any answer: the request is sent once more on a fresh connection. Nothing
else is retried here; `transport.Transport` owns retries and deadlines.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.client
import os
import re
import socket
import ssl
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

STEP = 65536  # bytes decoded at a time


class NetworkError(Exception):
    """The exchange failed below HTTP: `kind` is connect, timeout, broken, tls or decode."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def request_target(url: str) -> str:
    """The path and query to send: characters a URL may not carry raw (a configured
    `…/thérapeute/…`) percent-encoded, escapes already there kept as they are."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return quote(target, safe="!#$%&'()*+,/:;=?@[]~")


# -- credentials --------------------------------------------------------------------------------


def basic(username: str, password: str) -> str:
    """The Authorization value for Basic (UTF-8, RFC 7617)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


def challenge_params(header: str) -> dict[str, str]:
    """The parameters of a Digest challenge (`WWW-Authenticate: Digest realm="…", nonce="…", …`)."""
    start = header.lower().find("digest")
    text = header[start + len("digest") :] if start >= 0 else header
    out: dict[str, str] = {}
    for name, value in _PARAM.findall(text):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.setdefault(name.lower(), value)
    return out


@dataclass(slots=True)
class Digest:
    """Digest credentials answering one challenge; each request counts its nonce use (nc)."""

    username: str
    password: str
    params: dict[str, str]
    count: int = 0
    cnonce: str = field(default_factory=lambda: os.urandom(12).hex())

    def usable(self) -> bool:
        algorithm = self.params.get("algorithm", "MD5").upper().removesuffix("-SESS")
        qops = {q.strip() for q in self.params.get("qop", "auth").split(",")}
        return algorithm in ("MD5", "SHA-256") and "nonce" in self.params and ("auth" in qops or not qops)

    def header(self, method: str, target: str) -> str:
        """The Authorization value for `method` on `target` (the request's path and query)."""
        algorithm = self.params.get("algorithm", "MD5")
        base = algorithm.upper().removesuffix("-SESS")
        fn = hashlib.sha256 if base == "SHA-256" else hashlib.md5

        def h(text: str) -> str:
            return fn(text.encode()).hexdigest()

        realm, nonce = self.params.get("realm", ""), self.params["nonce"]
        self.count += 1
        nc = f"{self.count:08x}"
        ha1 = h(f"{self.username}:{realm}:{self.password}")
        if algorithm.upper().endswith("-SESS"):
            ha1 = h(f"{ha1}:{nonce}:{self.cnonce}")
        ha2 = h(f"{method}:{target}")
        qop = "qop" in self.params
        response = h(f"{ha1}:{nonce}:{nc}:{self.cnonce}:auth:{ha2}") if qop else h(f"{ha1}:{nonce}:{ha2}")
        parts = [
            f'username="{_quoted(self.username)}"',
            f'realm="{_quoted(realm)}"',
            f'nonce="{_quoted(nonce)}"',
            f'uri="{_quoted(target)}"',
            f'response="{response}"',
            f"algorithm={algorithm}",
        ]
        if "opaque" in self.params:
            parts.append(f'opaque="{_quoted(self.params["opaque"])}"')
        if qop:
            parts += ["qop=auth", f"nc={nc}", f'cnonce="{self.cnonce}"']
        return "Digest " + ", ".join(parts)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# -- answers ------------------------------------------------------------------------------------


class Reply:
    """One answer: status and headers read, the body still on the wire (`chunks`)."""

    def __init__(self, response: http.client.HTTPResponse, drop: Callable[[], None]) -> None:
        self._response = response
        self._drop = drop
        self.status = int(response.status)
        self.headers: dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            self.headers[key] = f"{self.headers[key]}, {value}" if key in self.headers else value
        self._complete = False

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives, decoded (gzip, deflate) in steps of at most STEP bytes."""
        coding = self.headers.get("content-encoding", "").strip().lower()
        decoder = None
        if coding in ("gzip", "x-gzip"):
            decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            decoder = zlib.decompressobj(zlib.MAX_WBITS)
        try:
            while True:
                data = self._response.read1(16384)
                if not data:
                    if self._response.length:  # the connection closed before the declared length
                        raise http.client.IncompleteRead(b"", self._response.length)
                    break
                if decoder is None:
                    yield data
                    continue
                piece = decoder.decompress(data, STEP)
                while True:
                    if piece:
                        yield piece
                    if not decoder.unconsumed_tail:
                        break
                    piece = decoder.decompress(decoder.unconsumed_tail, STEP)
            if decoder is not None:
                rest = decoder.flush()
                if rest:
                    yield rest
            self._complete = True
        except zlib.error as exc:
            raise NetworkError("decode", "the answer could not be decoded") from exc
        except TimeoutError as exc:
            raise NetworkError("timeout") from exc
        except (http.client.IncompleteRead, http.client.HTTPException, OSError) as exc:
            raise NetworkError("broken", type(exc).__name__) from exc

    def close(self) -> None:
        """Done with the answer: the connection goes back for the next request when it was read to its end."""
        self._response.close()
        if not self._complete or self._response.will_close:
            self._drop()


# -- connections -------------------------------------------------------------------------------


Origin = tuple[str, str, int]


def _proxy_for(scheme: str, host: str) -> str | None:
    """The environment's proxy for this scheme and host (`http_proxy`, `https_proxy`, `no_proxy`)."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # the common case: urllib.request (~15 ms to import) is not needed
    from urllib.request import getproxies, proxy_bypass

    return None if proxy_bypass(host) else getproxies().get(scheme)


@dataclass(slots=True)
class _Conn:
    """One open connection; through an http proxy, requests name the whole URL (and the proxy's credentials)."""

    conn: http.client.HTTPConnection
    absolute: bool = False
    proxy_headers: dict[str, str] = field(default_factory=dict)


class Wire:
    """Kept-alive HTTP/1.1 connections, one per origin, for one connector."""

    def __init__(self, *, verify: bool, user_agent: str) -> None:
        self.verify = verify
        self.user_agent = user_agent
        self._conns: dict[Origin, _Conn] = {}
        self._tls: ssl.SSLContext | None = None
        self.opened = 0  # connections opened (tests and the benchmark read it)

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            context = ssl.create_default_context()
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls = context
        return self._tls

    def _connect(self, scheme: str, host: str, port: int, timeout: float) -> _Conn:
        """A new connection to the origin, through the environment's proxy if it names one."""
        proxy = _proxy_for(scheme, host)
        absolute = False
        headers: dict[str, str] = {}
        conn: http.client.HTTPConnection
        if proxy:
            parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            via, via_port = parts.hostname or "", parts.port or 80
            if parts.username:
                headers["Proxy-Authorization"] = basic(unquote(parts.username), unquote(parts.password or ""))
            if scheme == "https":
                conn = http.client.HTTPSConnection(via, via_port, timeout=timeout, context=self._context())
                conn.set_tunnel(host, port, headers=headers)
            else:
                conn = http.client.HTTPConnection(via, via_port, timeout=timeout)
                absolute = True
        elif scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.connect()
        if conn.sock is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened += 1
        return _Conn(conn, absolute, headers if absolute else {})

    def send(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> Reply:
        """Send one request and read the answer's status and headers.

        Raises:
            NetworkError: no answer (connect, timeout, tls, broken).
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        origin = (scheme, host, port)
        target = request_target(url)
        sent = {"User-Agent": self.user_agent, "Accept-Encoding": "gzip, deflate", **headers}
        if not body and method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            sent.setdefault("Content-Length", "0")
        for attempt in (1, 2):
            held = self._conns.get(origin)
            reused = held is not None
            try:
                if held is None:
                    held = self._connect(scheme, host, port, connect_timeout)
                    self._conns[origin] = held
                if held.conn.sock is not None:
                    held.conn.sock.settimeout(read_timeout)
                path = f"{scheme}://{parts.netloc.rsplit('@', 1)[-1]}{target}" if held.absolute else target
                held.conn.request(method, path, body=body or None, headers={**sent, **held.proxy_headers})
                response = held.conn.getresponse()
            except ssl.SSLError as exc:
                self._drop(origin)
                raise NetworkError("tls", type(exc).__name__) from exc
            except TimeoutError as exc:
                self._drop(origin)
                raise NetworkError("timeout") from exc
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop(origin)
                if reused and attempt == 1:
                    continue  # the server closed the idle connection: once more on a fresh one
                raise NetworkError("broken" if reused else "connect", type(exc).__name__) from exc
            except (http.client.HTTPException, OSError) as exc:
                self._drop(origin)
                raise NetworkError("connect", type(exc).__name__) from exc
            return Reply(response, functools.partial(self._drop_if, origin, held))
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop_if(self, origin: Origin, held: _Conn) -> None:
        """Close `held` (an answer not read to its end leaves it unusable) unless already replaced."""
        if self._conns.get(origin) is held:
            self._drop(origin)

    def _drop(self, origin: Origin) -> None:
        held = self._conns.pop(origin, None)
        if held is not None:
            held.conn.close()

    def close(self) -> None:
        for origin in list(self._conns):
            self._drop(origin)
