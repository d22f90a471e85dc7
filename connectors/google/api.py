"""One authorised session with Google: the Calendar and Tasks services and the retry layer.

The only place that executes Google requests. Every call goes through `GoogleApi.call`, which
refreshes the token when needed, runs `request.execute(num_retries=0)` and translates library
errors into the worker's error tree at this boundary:

- connection errors and timeouts, 5xx, 429, 403 rateLimitExceeded/userRateLimitExceeded:
  TransientError, retried here by the connectors' one policy (`connectors.retry`: full-jitter
  exponential backoff, a total budget well below the pass interval, the server's Retry-After
  when it asks for more, and no retry within the pass when it asks for a long pause);
- 403 quotaExceeded (the account's Calendar usage limits, "The user reached one of the Google
  Calendar limits in place to protect Google users") and dailyLimitExceeded (the Cloud
  project's quota): ConnectorError, not retried, each with its own advice;
- 401 after a refresh, refused refresh tokens, missing scopes: AuthError (exit code 3);
- 404 NotFoundError, 410 GoneError, 409 DuplicateError, 412 ConflictError; other 4xx are
  permanent ConnectorErrors.

Messages carry status codes and reasons only: never URLs with content, titles or bodies.
No batch requests (they would not follow `api_endpoint`).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google_auth_httplib2  # type: ignore[import-untyped]
import httplib2  # type: ignore[import-untyped]
import structlog
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from tenacity import RetryCallState, Retrying

from connectors import retry
from connectors.google.auth import (
    TokenKeeper,
    TokenStore,
    auth_error,
    load_credentials,
    require_scopes,
    token_uri_for,
)
from connectors.retry import RetryPolicy
from worker.errors import AuthError, ConflictError, ConnectorError, NotFoundError, TransientError

log = structlog.get_logger()

_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_SCOPE_REASONS = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})


class DuplicateError(ConflictError):
    """409: an item with this id exists already (live or deleted)."""


class GoneError(NotFoundError):
    """410: the sync token expired (fullSyncRequired), or the item was deleted already."""


# How transient failures are retried (connectors.retry). `budget` is the most time (seconds)
# one call may spend waiting and retrying; it is also capped at half the pass interval so a
# slow Google never overlaps two passes. Tests replace this with a fast policy (monkeypatch).
DEFAULT_RETRY = RetryPolicy(attempts=8, budget=60.0, base=1.0, cap=20.0, max_retry_after=30.0)


@dataclass(frozen=True, slots=True)
class Account:
    """The account keys of one config section (shared by [source] and [reminders])."""

    token_file: Path | None
    api_endpoint: str | None
    timeout: timedelta
    verify_tls: bool
    config_path: Path | None
    every: timedelta
    token_store: TokenStore | None = None  # token_secret: the token is a secret in the database


def _error_reason(exc: HttpError) -> str:
    try:
        data = json.loads(exc.content.decode("utf-8"))
        errors = data["error"].get("errors") or []
        if errors and isinstance(errors[0], dict):
            return str(errors[0].get("reason", ""))
        return str(data["error"].get("status", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def _retry_after(exc: HttpError) -> float | None:
    value = exc.resp.get("retry-after") if exc.resp is not None else None
    return retry.retry_after(str(value)) if value is not None else None


def translate_http_error(
    exc: HttpError, *, operation: str, source: str, config_path: Path | None
) -> ConnectorError:
    """Map an HttpError to the worker's error tree (see the module docstring)."""
    status = int(exc.status_code)
    reason = _error_reason(exc)
    what = f"Google answered {status}{' ' + reason if reason else ''} to {operation}"
    if status == 429 or status >= 500 or (status == 403 and reason in _RATE_REASONS):
        return TransientError(what, source=source, operation=operation, retry_after=_retry_after(exc))
    if status == 403 and reason == "quotaExceeded":
        return ConnectorError(
            f"{what}: the Google account reached its Calendar usage limits (too many changes in a short "
            "time, by callsheet or another app on the same account); Google lifts them after a while, "
            "often hours; the next pass tries again",
            source=source,
            operation=operation,
        )
    if status in (403, 429) and reason == "dailyLimitExceeded":
        return ConnectorError(
            f"{what}: the Google Cloud project's daily API quota is used up (check that nothing else "
            "uses the same Cloud project); the next pass tries again",
            source=source,
            operation=operation,
        )
    if status == 401:
        return auth_error(
            "Google did not accept the stored authorisation (401)",
            config_path,
            operation=operation,
            source=source,
        )
    if status == 403 and reason in _SCOPE_REASONS:
        return auth_error(
            "the Google token lacks a permission callsheet needs",
            config_path,
            operation=operation,
            source=source,
        )
    if status == 404:
        return NotFoundError(what, source=source, operation=operation)
    if status == 410:
        return GoneError(what, source=source, operation=operation)
    if status == 409:
        return DuplicateError(what, source=source, operation=operation)
    if status == 412:
        return ConflictError(what, source=source, operation=operation)
    return ConnectorError(what, source=source, operation=operation)


class GoogleApi:
    """Credentials, an httplib2 transport and the two services, for one connector (one thread)."""

    def __init__(
        self,
        account: Account,
        *,
        source: str,
        scopes: list[frozenset[str]],
        policy: RetryPolicy | None = None,
    ) -> None:
        self.account = account
        self.source = source
        policy = policy or DEFAULT_RETRY
        budget = min(policy.budget, account.every.total_seconds() / 2)
        self.policy = replace(policy, budget=budget)
        credentials = load_credentials(
            account.token_file,
            token_uri=token_uri_for(account.api_endpoint),
            config_path=account.config_path,
            source=source,
            store=account.token_store,
        )
        require_scopes(credentials, scopes, config_path=account.config_path, source=source)
        self.keeper = TokenKeeper(
            credentials,
            account.token_file,
            config_path=account.config_path,
            source=source,
            store=account.token_store,
        )
        self.http = httplib2.Http(
            timeout=max(1, int(account.timeout.total_seconds())),
            disable_ssl_certificate_validation=not account.verify_tls,
        )
        self.authed = google_auth_httplib2.AuthorizedHttp(credentials, http=self.http)
        self._calendar: Any = None
        self._tasks: Any = None
        self.requests = 0

    # -- services -----------------------------------------------------------------------------

    def _root(self) -> str | None:
        root = self.account.api_endpoint
        if not root:
            return None
        return root if root.endswith("/") else root + "/"

    @property
    def calendar(self) -> Any:
        if self._calendar is None:
            root = self._root()
            options = {"api_endpoint": root + "calendar/v3/"} if root else None
            self._calendar = build(
                "calendar",
                "v3",
                http=self.authed,
                static_discovery=True,
                cache_discovery=False,
                client_options=options,
            )
        return self._calendar

    @property
    def tasks(self) -> Any:
        if self._tasks is None:
            root = self._root()
            options = {"api_endpoint": root} if root else None
            self._tasks = build(
                "tasks",
                "v1",
                http=self.authed,
                static_discovery=True,
                cache_discovery=False,
                client_options=options,
            )
        return self._tasks

    # -- calls --------------------------------------------------------------------------------

    def retrying(self, operation: str) -> Retrying:
        """The one retry layer (connectors.retry) under this account's policy."""

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            cause = exc.__cause__ if exc is not None else None
            log.warning(
                "connector.retry",
                source=self.source,
                operation=operation,
                attempt=state.attempt_number,
                error=type(cause or exc).__name__,
                status=int(cause.status_code) if isinstance(cause, HttpError) else None,
                reason=_error_reason(cause) if isinstance(cause, HttpError) else None,
                retry_after=getattr(exc, "retry_after", None),
            )

        return retry.retrying(self.policy, before_sleep=before_sleep)

    def call(self, request: Any, *, operation: str, retry: bool = True) -> dict[str, Any]:
        """Execute one request (with retries unless `retry` is False) and return its JSON body.

        Raises:
            TransientError: still failing when the budget ran out (or `retry` is False).
            AuthError, ConflictError, NotFoundError, ConnectorError: see the module docstring.
        """
        if not retry:
            return self._once(request, operation)
        for attempt in self.retrying(operation):
            with attempt:
                return self._once(request, operation)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def pages(self, make: Callable[[str | None], Any], *, operation: str) -> Iterator[dict[str, Any]]:
        """Every page of a list call; `make(page_token)` builds the request for one page."""
        token: str | None = None
        while True:
            page = self.call(make(token), operation=operation)
            yield page
            token = page.get("nextPageToken")
            if not token:
                return

    def _once(self, request: Any, operation: str) -> dict[str, Any]:
        self.requests += 1
        try:
            self.keeper.ensure_fresh(google_auth_httplib2.Request(self.http))
            result = request.execute(num_retries=0)
        except HttpError as exc:
            raise translate_http_error(
                exc, operation=operation, source=self.source, config_path=self.account.config_path
            ) from exc
        except google.auth.exceptions.RefreshError as exc:
            raise self.keeper.translate(exc) from None
        except (
            google.auth.exceptions.TransportError,
            httplib2.HttpLib2Error,
            http.client.HTTPException,  # IncompleteRead: the answer broke off before its end
            OSError,
        ) as exc:
            self._drop_connections()
            raise TransientError(
                f"Google could not be reached during {operation} ({type(exc).__name__})",
                source=self.source,
                operation=operation,
            ) from exc
        self.keeper.persist()  # AuthorizedHttp may have refreshed on a 401
        return result if isinstance(result, dict) else {}

    def _drop_connections(self) -> None:
        """Close pooled connections: a timed-out one may still deliver a stale response."""
        for conn in list(self.http.connections.values()):
            conn.close()
        self.http.connections.clear()

    def close(self) -> None:
        self._drop_connections()


__all__ = ["Account", "AuthError", "DuplicateError", "GoneError", "GoogleApi", "RetryPolicy"]
