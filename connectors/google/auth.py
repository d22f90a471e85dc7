"""OAuth token handling for the Google connector: load, refresh, re-save; least scopes.

The token file is the one `scripts/authorize_google.py` writes (google-auth's authorized-user
JSON). It is read here, refreshed when the access token has expired, and written back
atomically with mode 0600 after every refresh (google-auth refreshes in memory only). A
refused refresh (`invalid_grant`: revoked, or the 7-day expiry of a consent screen left in
"Testing") becomes one AuthError saying which command fixes it; the token file and the state
are left exactly as they were. No network here except the refresh itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol
from urllib.parse import urljoin

import google.auth.exceptions
import google.auth.transport
from google.oauth2.credentials import Credentials

from worker import files
from worker.errors import AuthError, ConfigError, Problem, TransientError

_AUTH = "https://www.googleapis.com/auth/"
# Read the practice calendar: "View events on all your calendars".
SCOPE_READ_EVENTS = _AUTH + "calendar.events.readonly"
# Broader read scope (also lists calendars); accepted when a token was minted with it.
SCOPE_READ_CALENDARS = _AUTH + "calendar.readonly"
# Make the "Client calls" calendar and write events in it (and only in calendars we made).
SCOPE_CALLS_CALENDAR = _AUTH + "calendar.app.created"
# Google Tasks.
SCOPE_TASKS = _AUTH + "tasks"

DEFAULT_SCOPES = (SCOPE_READ_EVENTS, SCOPE_CALLS_CALENDAR, SCOPE_TASKS)

# Any one of these lets us list the practice calendar's events.
READ_SCOPES = frozenset(
    {
        SCOPE_READ_EVENTS,
        SCOPE_READ_CALENDARS,
        _AUTH + "calendar.events.owned.readonly",
        _AUTH + "calendar.events.owned",
        _AUTH + "calendar.events",
        _AUTH + "calendar",
    }
)
# Any one of these lets us write events in the calls calendar.
EVENT_WRITE_SCOPES = frozenset(
    {SCOPE_CALLS_CALENDAR, _AUTH + "calendar.events", _AUTH + "calendar.events.owned", _AUTH + "calendar"}
)
TASK_SCOPES = frozenset({SCOPE_TASKS})

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
SETUP_SCRIPT = "scripts/authorize_google.py"


def setup_command(config_path: Path | None) -> str:
    """The command that (re-)authorises callsheet, as the messages print it."""
    where = f" --config {config_path}" if config_path is not None else ""
    return f"python {SETUP_SCRIPT}{where}"


def token_uri_for(api_endpoint: str | None) -> str:
    """Where refresh tokens are exchanged: Google's endpoint, or `<api_endpoint>token`.

    google-auth always replaces the token_uri stored in a token file by Google's (a token
    file cannot send the refresh token elsewhere); a configured api_endpoint (tests, proxies)
    serves the token endpoint at its root.
    """
    if not api_endpoint:
        return GOOGLE_TOKEN_URI
    return urljoin(api_endpoint if api_endpoint.endswith("/") else api_endpoint + "/", "token")


def write_private(path: Path, data: str) -> None:
    """Write a whole file or nothing (temporary file + rename), mode 0600, in a 0700 folder."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.write_private(path, data)


def save_credentials(path: Path, credentials: Credentials) -> None:
    """Write the token file atomically, 0600."""
    write_private(path, credentials.to_json())  # type: ignore[no-untyped-call]


def _advice(config_path: Path | None) -> str:
    return f"re-run `{setup_command(config_path)}` to authorise callsheet again"


def auth_error(
    problem: str, config_path: Path | None, *, operation: str = "auth", source: str = ""
) -> AuthError:
    """One clear AuthError: what is wrong and the command that fixes it."""
    return AuthError(
        f"{problem}; {_advice(config_path)}. The token file and the state were left unchanged. "
        "(If this happens about every 7 days, the OAuth consent screen is still in 'Testing': "
        "publish it 'In production' first; see docs/google.md.)",
        source=source,
        operation=operation,
    )


class TokenStore(Protocol):
    """Where a token lives other than a file: a secret in the state database
    (`token_secret`, worker/accounts_db.SecretStore), encrypted there."""

    where: str  # for messages: "the stored secret 'google' of account 'NAME'"

    def load(self) -> str: ...

    def save(self, text: str) -> None: ...


def load_credentials(
    token_file: Path | None,
    *,
    token_uri: str,
    config_path: Path | None,
    source: str = "",
    store: TokenStore | None = None,
) -> Credentials:
    """Read the token file written by the setup script (or the token `store` holds).

    Raises:
        ConfigError: no token_file is configured (or the stored token cannot be read).
        AuthError: the token file is missing or unreadable.
    """
    if store is not None:
        try:
            info = json.loads(store.load())
        except ValueError:
            raise auth_error(f"{store.where} is not a Google token", config_path, source=source) from None
        return _credentials(info, store.where, token_uri=token_uri, config_path=config_path, source=source)
    if token_file is None:
        raise ConfigError(
            [
                Problem(
                    str(config_path or "config"),
                    "kind = 'google' needs token_file = 'PATH' (the file scripts/authorize_google.py writes)",
                )
            ]
        )
    try:
        info = json.loads(token_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise auth_error(
            f"the Google token file {token_file} does not exist", config_path, source=source
        ) from None
    except (OSError, ValueError) as exc:
        raise auth_error(
            f"the Google token file {token_file} cannot be read ({type(exc).__name__})",
            config_path,
            source=source,
        ) from None
    return _credentials(
        info,
        f"the Google token file {token_file}",
        token_uri=token_uri,
        config_path=config_path,
        source=source,
    )


def _credentials(
    info: object, where: str, *, token_uri: str, config_path: Path | None, source: str
) -> Credentials:
    if not isinstance(info, dict):
        raise auth_error(f"{where} is not a token", config_path, source=source)
    try:
        credentials = Credentials.from_authorized_user_info(info)  # type: ignore[no-untyped-call]
    except ValueError:
        raise auth_error(f"{where} lacks a refresh token or client id", config_path, source=source) from None
    fresh: Credentials = credentials.with_token_uri(token_uri)
    fresh.expiry = credentials.expiry  # the copy forgets it: the token would never be refreshed
    return fresh


def require_scopes(
    credentials: Credentials,
    wanted: Iterable[frozenset[str]],
    *,
    config_path: Path | None,
    source: str = "",
) -> None:
    """Check that the token was granted one scope of each group (when the file says which).

    Raises:
        AuthError: a group has no granted scope.
    """
    granted = set(credentials.scopes or ())
    if not granted:
        return  # an old token file without a scope list: the API will say if one is missing
    for group in wanted:
        if not granted & group:
            name = sorted(group)[0].rsplit("/", 1)[-1]
            raise auth_error(
                f"the Google token does not grant the {name!r} permission callsheet needs",
                config_path,
                source=source,
            )


class TokenKeeper:
    """Holds the credentials of one connector; refreshes and re-saves the token file."""

    def __init__(
        self,
        credentials: Credentials,
        path: Path | None,
        *,
        config_path: Path | None,
        source: str,
        store: TokenStore | None = None,
    ) -> None:
        self.credentials = credentials
        self.path = path
        self.store = store  # the token is a stored secret: refreshed tokens go back there, encrypted
        self.config_path = config_path
        self.source = source
        self._saved = credentials.token

    def ensure_fresh(self, request: google.auth.transport.Request) -> None:
        """Refresh the access token when it is missing or expired, then persist it.

        Raises:
            AuthError: the refresh token was refused (invalid_grant and other final errors).
            TransientError: the token endpoint was unreachable or answered 5xx/429.
        """
        if self.credentials.valid:
            return
        try:
            self.credentials.refresh(request)  # type: ignore[no-untyped-call]
        except google.auth.exceptions.RefreshError as exc:
            raise self.translate(exc) from None
        except google.auth.exceptions.TransportError as exc:
            raise TransientError(
                f"the Google token endpoint is unreachable ({type(exc).__name__})",
                source=self.source,
                operation="token.refresh",
            ) from None
        self.persist()

    def translate(self, exc: google.auth.exceptions.RefreshError) -> AuthError | TransientError:
        """A RefreshError as the worker's error: retryable ones are transient."""
        if getattr(exc, "retryable", False):
            return TransientError(
                "the Google token endpoint is temporarily unavailable",
                source=self.source,
                operation="token.refresh",
            )
        text = str(exc.args[0]) if exc.args else ""
        code = text.split(":", 1)[0].strip() if ":" in text else "refused"
        if code == "invalid_grant":
            problem = (
                "the Google token is dead: Google refused the stored authorisation (invalid_grant: "
                "expired or revoked), and until it is renewed nothing reaches Google, not even "
                "callsheet's own 'needs attention' reminder (watch `callsheet check --health`)"
            )
        else:
            problem = f"Google refused to refresh the stored authorisation ({code[:40]})"
        return auth_error(problem, self.config_path, operation="token.refresh", source=self.source)

    def persist(self) -> None:
        """Save the token file when the access token changed since it was read or saved.

        Raises:
            AuthError: the token file cannot be written (names the file and the fix).
        """
        if self.credentials.token and self.credentials.token != self._saved:
            if self.store is not None:
                self.store.save(self.credentials.to_json())  # type: ignore[no-untyped-call]
                self._saved = self.credentials.token
                return
            assert self.path is not None
            try:
                save_credentials(self.path, self.credentials)
            except OSError as exc:
                raise AuthError(
                    f"the Google token file {self.path} cannot be written ({exc.strerror or type(exc).__name__}): "
                    "callsheet renews the access token about hourly and must save it. Keep the token "
                    "where callsheet can write, on the state volume (for example next to state.db), "
                    'and point token_file at it; see docs/google.md "Where the token lives"',
                    source=self.source,
                    operation="token.save",
                ) from None
            self._saved = self.credentials.token
