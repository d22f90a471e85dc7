"""CalDAV transport: one authenticated HTTP session with limits, redirects, error mapping, retries.

Every request of the CalDAV connector goes through `Transport.request`, which

- sends Basic credentials with the first request (a server that wants Digest says so in its
  401 challenge, and only then is Digest tried, once); a plain `http://` URL carries no
  password unless the host is loopback or `allow_insecure_http = true`;
- follows 301/307/308 to the same origin keeping method, body and credentials; any other
  redirect is an error naming the Location (a 302 would turn a PUT into a GET);
- reads the answer as a stream, with a size cap (after decompression, so a gzip bomb stops at
  the cap), a total deadline per request (a server sending one byte at a time cannot hold the
  pass) and a deadline for the whole pass;
- maps statuses to worker.errors (`error_for`): 401, and 403 without a named rule, are
  AuthError (exit 3); a per-item refusal (400, 409, 403 with a precondition or a sabre
  exception on a write) is RefusedError; 412 is ConflictError; 423, 429, 5xx are
  TransientError (Retry-After honoured); 507 (quota full) is transient but not retried in the
  same pass;
- retries transient failures by the connectors' one policy (`connectors.retry`), within a
  budget well below the pass interval and never past the pass deadline.

Messages and log lines name collections by URL (never with credentials), objects by href, and
never carry event text.

Longer than ~400 lines on purpose: the deadlines, size caps, redirects, auth back-off and
the status-to-error table must be read together; splitting them would hide how they interact.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import structlog
from lxml import etree  # type: ignore[import-untyped]
from tenacity import RetryCallState

from connectors import retry
from connectors.caldav.wire import Digest, NetworkError, Wire, basic, challenge_params, request_target
from connectors.retry import LaterPassError
from connectors.retry import RetryPolicy as RetryPolicy  # re-exported by connectors.caldav
from worker import __version__
from worker.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    Problem,
    RefusedError,
    TransientError,
)
from worker.files import write_private

if TYPE_CHECKING:
    from worker.config import Settings, _Account

log = structlog.get_logger()

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
SABRE = "http://sabredav.org/ns"
_RULE_NAMESPACES = (DAV, CALDAV)


# how transient failures of one request are retried (connectors.retry; tests shrink it)
RETRY = RetryPolicy(attempts=4, budget=60.0, base=1.0, cap=15.0, max_retry_after=30.0)


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes and deadlines that keep one request, and one pass, reasonable on every server."""

    multiget_batch: int = 500  # hrefs per calendar-multiget REPORT
    max_response: int = 64 * 1024 * 1024  # bytes of one answer, after decompression
    request_factor: float = 3.0  # a request's total deadline: this many times `timeout`
    pass_deadline: float = 240.0  # seconds for all the requests of one connector in one pass
    max_redirects: int = 5
    sync_pages: int = 50  # sync-collection continuations after a 507 truncation


LIMITS = Limits()


# -- URLs -------------------------------------------------------------------------------------


def public_url(url: str) -> str:
    """The URL without user info, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


GOOGLE_HOSTS = ("google.com", "googleusercontent.com", "googleapis.com")


def collection_url(url: str, where: str) -> str:
    """A configured collection URL, checked and with one trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError([Problem(where, f"{public_url(url)!r} is not an http(s) URL")])
    if parts.password is not None:
        message = f"the URL {public_url(url)} carries a password: use password_file or password_env"
        raise ConfigError([Problem(where, message)])
    host = parts.hostname.lower()
    if any(host == g or host.endswith("." + g) for g in GOOGLE_HOSTS):
        message = (
            f"{public_url(url)} is Google's CalDAV endpoint, which needs OAuth and holds no tasks: "
            'use kind = "google" (see docs/google.md)'
        )
        raise ConfigError([Problem(where, message)])
    clean = public_url(url)
    return clean if clean.endswith("/") else clean + "/"


def href_path(url: Any) -> str:
    """The unquoted path of a URL or href: servers disagree on percent-encoding ('@' vs '%40')."""
    return unquote(urlsplit(str(url)).path)


def normal_path(path: str) -> str:
    """A path with percent-escapes decoded, duplicate slashes and dot segments resolved."""
    decoded = unquote(path)
    out: list[str] = []
    for segment in decoded.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return "/" + "/".join(out)


def member_name(collection: str, href: str) -> str | None:
    """The resource name of `href` when it lies directly inside `collection`, else None.

    Both are normalised (percent-decoding, dot segments, duplicate slashes), so an href like
    `/cal/../other/x.ics` or `/cal/%2e%2e/other/x.ics` is never taken for a member.
    """
    if urlsplit(href).netloc and urlsplit(href).netloc != urlsplit(collection).netloc:
        return None
    base = normal_path(urlsplit(collection).path).rstrip("/") + "/"
    path = normal_path(urlsplit(href).path)
    if not path.startswith(base):
        return None
    name = path[len(base) :]
    if not name or "/" in name:
        return None
    return name


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


# -- XML ----------------------------------------------------------------------------------------

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


def tag(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def parse_xml(data: bytes) -> Any:
    """A parsed XML answer; None when it is not XML (a proxy's error page, garbage)."""
    if not data.strip():
        return None
    try:
        return etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return None


def _status_code(text: str | None) -> int | None:
    parts = (text or "").split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


@dataclass(slots=True)
class DavResponse:
    """One <response> of a multistatus: its href, its own status, and its properties (status 200)."""

    href: str
    status: int | None = None  # the response-level status (404 for a deleted member)
    props: dict[str, Any] = field(default_factory=dict)  # tag -> element, for props found (200)

    def text(self, namespace: str, name: str) -> str:
        element = self.props.get(tag(namespace, name))
        return "" if element is None else "".join(element.itertext()).strip()


@dataclass(slots=True)
class Multistatus:
    responses: list[DavResponse]
    sync_token: str | None = None


def parse_multistatus(data: bytes) -> Multistatus | None:
    """A 207 body read; None when it is not a multistatus."""
    root = parse_xml(data)
    if root is None or root.tag != tag(DAV, "multistatus"):
        return None
    out: list[DavResponse] = []
    for node in root.findall(tag(DAV, "response")):
        href = (node.findtext(tag(DAV, "href")) or "").strip()
        item = DavResponse(href=href, status=_status_code(node.findtext(tag(DAV, "status"))))
        for propstat in node.findall(tag(DAV, "propstat")):
            if _status_code(propstat.findtext(tag(DAV, "status"))) != 200:
                continue
            prop = propstat.find(tag(DAV, "prop"))
            if prop is not None:
                for child in prop:
                    item.props[str(child.tag)] = child
        out.append(item)
    token = root.findtext(tag(DAV, "sync-token"))
    return Multistatus(out, token.strip() if token and token.strip() else None)


def error_conditions(data: bytes) -> tuple[list[str], str, str]:
    """A DAV:error body: the rule names (DAV: and CalDAV only), sabre's exception and message."""
    root = parse_xml(data)
    if root is None or root.tag != tag(DAV, "error"):
        return [], "", ""
    names = []
    for child in root:
        name = str(child.tag)
        if name.startswith("{") and name[1:].split("}", 1)[0] in _RULE_NAMESPACES:
            local = name.rsplit("}", 1)[-1]
            if local != "responsedescription":
                names.append(local)
    exception = (root.findtext(tag(SABRE, "exception")) or "").strip()
    message = (root.findtext(tag(SABRE, "message")) or "").strip()
    return names, exception, message


def _printable(text: str, limit: int = 160) -> str:
    clean = "".join(c if c.isprintable() else " " for c in text)
    return clean[:limit]


# -- answers and errors -----------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    """One HTTP answer, read in full (within the limits)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def header(self, name: str) -> str:
        return str(self.headers.get(name.lower(), ""))

    @property
    def etag(self) -> str:
        return self.header("etag")


class QuotaFullError(LaterPassError):
    """HTTP 507 on a write: the account is out of storage. Not retried within the pass."""


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    return retry.retry_after(headers.get("retry-after"))


WRITES = ("PUT", "DELETE")

CREDENTIALS_FIX = (
    "check username and password_file / password_env (iCloud, Fastmail, Nextcloud and mailbox.org "
    "need an app password made for CalDAV)"
)


def error_for(
    answer: Answer, *, method: str, where: str, name: str, operation: str, detail: bool
) -> ConnectorError:
    """The error a status means (`detail`: sabre's message may be quoted, it is about our item)."""
    status = answer.status
    rules, exception, message = error_conditions(answer.body) if status >= 400 else ([], "", "")
    said = f" ({_printable(message)})" if detail and message else ""
    kw = {"source": name, "operation": operation}
    if status == 401:
        return AuthError(f"{where}: the server refused the credentials (HTTP 401); {CREDENTIALS_FIX}", **kw)
    if status == 403:
        if "need-privileges" in rules:
            return AuthError(
                f"{where}: the account may not do this here (HTTP 403 need-privileges); give it write "
                "access to the calendar, or use a calendar it owns (a read-only share cannot hold reminders)",
                **kw,
            )
        if "supported-calendar-component" in rules:
            return RefusedError(
                f"{where}: this calendar does not accept this kind of item (HTTP 403 "
                "supported-calendar-component); tasks need a calendar that supports VTODO: make one and "
                "set tasks_url (or tasks_calendar) to it",
                **kw,
            )
        if "unique-scheduling-object-resource" in rules or "no-uid-conflict" in rules:
            return RefusedError(
                f"{where}: another calendar of this account holds an item with this UID (HTTP 403 "
                f"{', '.join(rules)})",
                **kw,
            )
        if rules:
            return RefusedError(
                f"{where}: the server refused the request (HTTP 403: {', '.join(rules)})", **kw
            )
        if exception and method in WRITES:
            # sabre (Nextcloud, Baïkal) names its refusal in s:exception; on a write to one of
            # our items it is about that item (Nextcloud's trash bin, a rule), not about access
            short = exception.rsplit("\\", 1)[-1]
            return RefusedError(f"{where}: the server refused this item (HTTP 403 {short}){said}", **kw)
        return AuthError(
            f"{where}: access denied (HTTP 403); the account may not use this calendar: check the URL and "
            "that the calendar is shared with this account",
            **kw,
        )
    if status in (404, 410):
        return NotFoundError(f"{where}: not found (HTTP {status}); check the URL", **kw)
    if status == 412:
        return ConflictError(f"{where}: changed on the server since it was read (HTTP 412)", **kw)
    if status == 507:
        return QuotaFullError(
            f"{where}: the calendar account is out of storage (HTTP 507, quota full); free some space",
            retry_after=None,
            **kw,
        )
    if status in (408, 423, 425, 429) or status >= 500:
        why = {
            423: "the item is locked by another client",
            429: "the server asked to slow down",
        }.get(status, "the server failed")
        return TransientError(
            f"{where}: {why} (HTTP {status})", retry_after=retry_after(answer.headers), **kw
        )
    if status in (400, 409, 415, 422) and method in WRITES:
        return RefusedError(f"{where}: the server refused this item (HTTP {status}){said}", **kw)
    return ConnectorError(f"{where}: the server refused the request (HTTP {status}){said}", **kw)


def _network_problem(exc: NetworkError) -> str:
    if exc.kind == "timeout":
        return "no answer within the timeout"
    if exc.kind == "broken":
        return "the answer broke off before its end"
    if exc.kind == "decode":
        return "the answer could not be decoded"
    return "cannot connect to the server"


# -- waiting after refused credentials ----------------------------------------------------------

AUTH_BACKOFF = True  # `callsheet check` turns this off: it always tries at once
BACKOFF_STEPS = (300.0, 900.0, 3600.0, 3 * 3600.0, 6 * 3600.0)  # after the 1st, 2nd, ... refusal


class AuthBackoff:
    """How long to leave a server alone after it refused these credentials (kept in the state folder).

    Each refusal (401) waits longer, up to 6 hours, so a revoked or changed password does not
    trip the server's login throttling (Nextcloud slows every device behind the office's IP).
    The entry is keyed by server, username and a hash of the password: a new password is tried
    at once; a success clears it.
    """

    def __init__(self, state_dir: Path, origin: str, username: str, password: str) -> None:
        self.file = state_dir / "caldav-auth.json"
        self.key = hashlib.sha256(f"{origin}\n{username}\n{password}".encode()).hexdigest()[:16]

    def _read(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        if not self.file.parent.is_dir():
            return
        with contextlib.suppress(OSError):
            write_private(self.file, json.dumps(data))

    def waiting(self) -> tuple[int, datetime] | None:
        """(refusals so far, when the next try is due) while the wait lasts, else None."""
        entry = self._read().get(self.key)
        if not isinstance(entry, dict):
            return None
        until = float(entry.get("until", 0))
        if until <= time.time():
            return None
        return int(entry.get("count", 1)), datetime.fromtimestamp(until, UTC)

    def refused(self) -> tuple[int, datetime]:
        data = self._read()
        entry = data.get(self.key)
        count = int(entry.get("count", 0)) + 1 if isinstance(entry, dict) else 1
        until = time.time() + BACKOFF_STEPS[min(count, len(BACKOFF_STEPS)) - 1]
        data[self.key] = {"count": count, "until": until}
        self._write(data)
        return count, datetime.fromtimestamp(until, UTC)

    def accepted(self) -> None:
        data = self._read()
        if data.pop(self.key, None) is not None:
            self._write(data)


def _waiting_text(count: int, until: datetime) -> str:
    return (
        f"the server refused these credentials {count} time(s); callsheet waits until "
        f"{until:%Y-%m-%d %H:%M} UTC before trying again (its login throttling would slow every "
        "device of the office); fix the password, then `callsheet check` tries at once"
    )


# -- the session --------------------------------------------------------------------------------


class Transport:
    """One authenticated HTTP session for one connector (source or sink) and one pass."""

    def __init__(
        self, settings: Settings, section: _Account, *, name: str, role: str, first_url: str
    ) -> None:
        self.name = name
        self.role = role  # "source" or "sink": the log key that names us
        self.first_url = first_url
        self.username = section.username or ""
        self.password = settings.secret(section) or ""
        self.timeout = max(1.0, section.timeout.total_seconds())
        self.verify = section.verify_tls
        self.insecure_http = False
        scheme, host, _ = _origin(first_url)
        if scheme == "http" and self.password and not is_loopback(host):
            if not getattr(section, "allow_insecure_http", False):
                raise ConfigError(
                    [
                        Problem(
                            f"[{'source' if role == 'source' else 'reminders'}] url",
                            f"{public_url(first_url)} is plain http: the password would cross the network "
                            "in clear; use https, or set allow_insecure_http = true for a network you trust",
                        )
                    ]
                )
            self.insecure_http = True
            log.warning("connector.http.insecure", **{role: name}, collection=public_url(first_url))
        self.wire = Wire(verify=self.verify, user_agent=f"callsheet/{__version__}")
        self._auth: tuple[str, str] | None = (self.username, self.password) if self.username else None
        self._digest: Digest | None = None  # once the server asked for Digest (its 401 challenge)
        self.pass_end = time.monotonic() + LIMITS.pass_deadline
        self.backoff: AuthBackoff | None = None
        if self._auth is not None:
            self.backoff = AuthBackoff(
                settings.state_dir, ":".join(map(str, _origin(first_url))), *self._auth
            )
        self._backoff_checked = False
        self._accepted = False
        self.located: dict[str, str] = {}  # a URL the server moved (301/307/308) -> where it is now
        self.requests = 0
        self.bytes_in = 0
        self.bytes_out = 0
        if not self.verify:
            log.warning("connector.tls.unverified", **{role: name}, collection=public_url(first_url))

    def close(self) -> None:
        self.wire.close()

    # -- one exchange -------------------------------------------------------------------------

    def _authorization(self, method: str, url: str) -> dict[str, str]:
        if self._digest is not None:
            return {"Authorization": self._digest.header(method, request_target(url))}
        if self._auth is not None:
            return {"Authorization": basic(*self._auth)}
        return {}

    def exchange(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """One HTTP request and its whole answer (redirects not followed), within the limits."""
        now = time.monotonic()
        if now >= self.pass_end:
            raise TransientError(
                f"{method} {public_url(url)}: the pass ran out of time ({int(LIMITS.pass_deadline)} s for "
                "all requests); the next pass goes on",
                source=self.name,
            )
        deadline = min(now + self.timeout * LIMITS.request_factor, self.pass_end)
        read_timeout = max(0.5, min(self.timeout, deadline - now))
        self.requests += 1
        self.bytes_out += len(body)
        response = self.wire.send(
            method,
            url,
            body,
            {**headers, **self._authorization(method, url)},
            connect_timeout=min(self.timeout, 30.0),
            read_timeout=read_timeout,
        )
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > LIMITS.max_response:
                raise self._too_big(method, url)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.chunks():
                size += len(chunk)
                self.bytes_in += len(chunk)
                if size > LIMITS.max_response:
                    raise self._too_big(method, url)
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise TransientError(
                        f"{method} {public_url(url)}: the answer did not arrive in time "
                        f"({int(deadline - now)} s)",
                        source=self.name,
                    )
        finally:
            response.close()
        return Answer(response.status, response.headers, b"".join(chunks), url)

    def _too_big(self, method: str, url: str) -> ConnectorError:
        return ConnectorError(
            f"{method} {public_url(url)}: the answer is larger than {LIMITS.max_response // (1024 * 1024)} MB; "
            "refusing to read it",
            source=self.name,
        )

    def _follow(self, method: str, url: str, body: bytes, headers: dict[str, str], where: str) -> Answer:
        """One request with same-origin 301/307/308 followed and Digest tried when asked for."""
        target = url
        for _ in range(LIMITS.max_redirects + 1):
            answer = self.exchange(method, target, body, headers)
            if answer.status == 401 and self._auth is not None:
                challenge = answer.header("www-authenticate")
                asked = challenge.lower()
                stale = (
                    self._digest is not None
                    and challenge_params(challenge).get("stale", "").lower() == "true"
                )
                if "digest" in asked and "basic" not in asked and (self._digest is None or stale):
                    digest = Digest(*self._auth, challenge_params(challenge))
                    if digest.usable():
                        self._digest = digest
                        continue
            if answer.status not in (301, 302, 303, 307, 308):
                return answer
            location = answer.header("location")
            moved = urljoin(target, location) if location else ""
            # discovery (RFC 6764's /.well-known/caldav) may also follow a same-origin 302/303
            kinds = (301, 302, 303, 307, 308) if where.startswith("discover ") else (301, 307, 308)
            if answer.status in kinds and moved and _origin(moved) == _origin(self.first_url):
                log.warning(
                    "connector.redirected",
                    **{self.role: self.name},
                    status=answer.status,
                    collection=public_url(target),
                    moved_to=public_url(moved),
                )
                self.located[url] = moved
                target = moved
                continue
            shown = public_url(moved) if moved else "(no Location)"
            raise ConnectorError(
                f"{where}: the server redirects (HTTP {answer.status}) to {shown}; set the URL in the "
                "config to the calendar's own address (callsheet follows 301/307/308 only on the same server)",
                source=self.name,
                operation=where.split(" ", 1)[0],
            )
        raise ConnectorError(f"{where}: too many redirects", source=self.name)

    def base(self, url: str) -> str:
        """Where a collection really is: its URL, or where the server moved it (same origin)."""
        return self.located.get(url, url)

    # -- the public door ----------------------------------------------------------------------

    def request(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        body: str | bytes = b"",
        headers: dict[str, str] | None = None,
        ok: Iterable[int] = (200, 201, 204, 207),
        expected: Iterable[int] = (),
        detail: bool = False,
        readable: Callable[[Answer], bool] | None = None,
    ) -> Answer:
        """One request, retried when transient. Statuses in `ok` or `expected` come back; others raise.

        Raises:
            TransientError: still failing when the attempts or the time budget ran out.
            AuthError, NotFoundError, ConflictError, RefusedError, ConnectorError: not retried.
        """
        accepted = set(ok) | set(expected)
        data = body.encode("utf-8") if isinstance(body, str) else body
        where = f"{operation} {public_url(url)}"
        if self.backoff is not None and not self._backoff_checked:
            self._backoff_checked = True
            waiting = self.backoff.waiting() if AUTH_BACKOFF else None
            if waiting is not None:
                raise AuthError(f"{where}: {_waiting_text(*waiting)}", source=self.name, operation=operation)

        def once() -> Answer:
            try:
                answer = self._follow(method, url, data, dict(headers or {}), where)
            except NetworkError as exc:
                if exc.kind == "tls":
                    raise ConnectorError(
                        f"{where}: the TLS certificate was not accepted (set verify_tls = false only for a "
                        "server you control)",
                        source=self.name,
                        operation=operation,
                    ) from exc
                # the log's `error` names what broke underneath (IncompleteRead, ConnectionRefusedError)
                raise TransientError(
                    f"{where}: {_network_problem(exc)}", source=self.name, operation=operation
                ) from (exc.__cause__ or exc)
            if answer.status == 401 and self.backoff is not None and 401 not in accepted:
                count, until = self.backoff.refused()
                raise AuthError(
                    f"{where}: the server refused the credentials (HTTP 401); {CREDENTIALS_FIX}. "
                    f"Next attempt after {until:%Y-%m-%d %H:%M} UTC (refusal {count}; `callsheet check` tries at once)",
                    source=self.name,
                    operation=operation,
                )
            if 200 <= answer.status < 300 and self.backoff is not None and not self._accepted:
                self._accepted = True
                self.backoff.accepted()
            if answer.status in accepted:
                if readable is not None and not readable(answer):
                    # cut short on the way (a proxy, a dropped connection): ask again
                    raise TransientError(
                        f"{where}: the server's answer could not be read",
                        source=self.name,
                        operation=operation,
                    )
                return answer
            raise error_for(
                answer, method=method, where=where, name=self.name, operation=operation, detail=detail
            )

        retrying = retry.retrying(
            RETRY,
            deadline=lambda: self.pass_end,
            before_sleep=lambda state: self._log_retry(operation, url, state),
        )
        for attempt in retrying:
            with attempt:
                return once()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _log_retry(self, operation: str, url: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "connector.retry",
            **{self.role: self.name},
            operation=operation,
            collection=public_url(url),
            attempt=state.attempt_number,
            error=type(exc.__cause__ or exc).__name__ if exc else "",
            retry_after=getattr(exc, "retry_after", None),
        )

    # -- WebDAV helpers -----------------------------------------------------------------------

    def propfind(
        self, operation: str, url: str, props: str, *, depth: str, absent: Iterable[int] = ()
    ) -> Multistatus:
        """PROPFIND with these <prop> children (XML text); the multistatus read.

        A status in `absent` (e.g. 404 when probing) gives an empty multistatus instead of an error.
        """
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" '
            'xmlns:CS="http://calendarserver.org/ns/" xmlns:I="http://apple.com/ns/ical/">'
            f"<D:prop>{props}</D:prop></D:propfind>"
        )
        answer = self.request(
            operation,
            "PROPFIND",
            url,
            body=body,
            headers={"Depth": depth, "Content-Type": 'application/xml; charset="utf-8"'},
            ok=(207,),
            expected=absent,
            readable=_is_multistatus,
        )
        if answer.status != 207:
            return Multistatus([])
        return self.multistatus(answer, operation)

    def report(self, operation: str, url: str, body: str, *, depth: str = "1") -> Multistatus:
        answer = self.request(
            operation,
            "REPORT",
            url,
            body=body,
            headers={"Depth": depth, "Content-Type": 'application/xml; charset="utf-8"'},
            ok=(207,),
            readable=_is_multistatus,
        )
        return self.multistatus(answer, operation)

    def listing(self, operation: str, url: str, props: str) -> Multistatus:
        """A Depth-1 PROPFIND of a collection; NotFoundError when the collection is not there."""
        found = self.propfind(operation, url, props, depth="1")
        own = normal_path(urlsplit(self.base(url)).path).rstrip("/")
        for response in found.responses:
            if normal_path(urlsplit(response.href).path).rstrip("/") == own:
                if response.status in (404, 410):
                    break
                return found
        raise NotFoundError(
            f"{operation} {public_url(url)}: not found; check the URL", source=self.name, operation=operation
        )

    def multistatus(self, answer: Answer, operation: str) -> Multistatus:
        parsed = parse_multistatus(answer.body)
        if parsed is None:
            raise TransientError(
                f"{operation} {public_url(answer.url)}: the server's answer could not be read",
                source=self.name,
                operation=operation,
            )
        return parsed


def _is_multistatus(answer: Answer) -> bool:
    return answer.status != 207 or parse_multistatus(answer.body) is not None


def is_calendar_object(answer: Answer) -> bool:
    """A GET of an item: a whole iCalendar object (not cut short on the way)."""
    return answer.status != 200 or answer.body.rstrip().endswith(b"END:VCALENDAR")


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
