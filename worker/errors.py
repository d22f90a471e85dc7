"""The error tree shared by the worker and the connectors (docs/design.md "Errors and exit codes").

Messages never carry client data: name files, keys, uids and URLs without credentials.
"""

from __future__ import annotations

from dataclasses import dataclass


class WorkerError(Exception):
    """Base of every error callsheet raises on purpose; never raised directly."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration: where, and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ConfigError(WorkerError):
    """The configuration or the roster is unusable; lists every problem at once (exit 2)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConnectorError(WorkerError):
    """A calendar could not be read or written."""

    def __init__(self, message: str, *, source: str = "", operation: str = "") -> None:
        self.source = source
        self.operation = operation
        super().__init__(message)


class TransientError(ConnectorError):
    """Timeouts, 5xx, 429: worth retrying, possibly after `retry_after` seconds."""

    def __init__(
        self, message: str, *, source: str = "", operation: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, source=source, operation=operation)
        self.retry_after = retry_after


class AuthError(ConnectorError):
    """Authorisation missing, expired or revoked (exit 3): the message says what fixes it."""


class ConflictError(ConnectorError):
    """Someone else changed the item (etag moved): drop the action, replan next pass."""


class NotFoundError(ConnectorError):
    """The item or collection is gone."""


class RefusedError(ConnectorError):
    """The server refused one item for good (a 400/403/409 that is not about authorisation):
    the runner records it per item and does not retry it every pass."""


class DataError(WorkerError):
    """One stored item cannot be interpreted: skip it, count it, go on."""

    def __init__(self, message: str, *, item: str = "") -> None:
        self.item = item
        super().__init__(message)


class LockedError(WorkerError):
    """Another pass holds the run lock."""


class StateError(WorkerError):
    """The state database is unusable (corrupt, newer schema)."""


class GuardError(ConnectorError):
    """A safety guard stopped the pass before it changed anything; `way_out` names the flag or
    action that accepts what the guard saw when it was intended (docs/design.md "Guards")."""

    way_out = ""


class SourceLossError(GuardError):
    """A source that held objects lists none, or lost most of them at once."""

    way_out = "callsheet run --once --accept-source-loss"

    def __init__(self, message: str, *, source: str = "", operation: str = "", lost: int = 0, held: int = 0):
        super().__init__(message, source=source, operation=operation)
        self.lost = lost
        self.held = held


class MassDeletionError(GuardError):
    """The reminders calendar suddenly holds none of the reminders written earlier."""

    way_out = "callsheet run --once --accept-deletions"


class ClockError(GuardError):
    """`now` is more than an hour before the last pass: the clock is wrong."""

    way_out = "fix the system clock (NTP); the next pass with a correct clock goes on"


class ItemsUnseenError(ConnectorError):
    """The sink could not see its items of `kind` this pass (their list was deleted and made
    anew, empty): the missing items are unknown, never "handled by the therapist"."""

    def __init__(self, message: str, *, kind: str, source: str = "", operation: str = "") -> None:
        super().__init__(message, source=source, operation=operation)
        self.kind = kind
