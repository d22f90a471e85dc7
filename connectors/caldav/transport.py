"""CalDAV transport: one authenticated client, error mapping, bounded retries."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import niquests
import structlog
from caldav.davclient import DAVClient
from caldav.lib import error as caldav_error
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from worker import __version__
from worker.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    Problem,
    TransientError,
)

if TYPE_CHECKING:
    from worker.config import Settings, _Account

log = structlog.get_logger()

# caldav's own log lines can quote request bodies, server replies and URLs; what matters is
# reported through our structured events instead, so keep the library quiet.
logging.getLogger("caldav").addHandler(logging.NullHandler())
logging.getLogger("caldav").propagate = False

T = TypeVar("T")


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
