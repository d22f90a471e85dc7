"""The one retry layer of the connectors (CalDAV's transport and Google's api both use it).

- What is retried: `worker.errors.TransientError` (each connector maps its timeouts, 5xx, 429
  and rate limits to it at its boundary), except a `LaterPassError`: transient, but nothing a
  few seconds fix (a full storage quota), so the next pass tries again.
- How long to wait: full-jitter exponential backoff, uniform(0, min(cap, base * 2**(n-1))),
  and at least what the server asked for in Retry-After (delta-seconds or an HTTP-date).
- When to stop: after `attempts` tries; when the next try would start more than `budget`
  seconds after the first; when the server asks for a pause longer than `max_retry_after`
  (the next pass tries, rather than holding this one); when the wait would end past the
  connector's pass deadline (a monotonic time, when it has one).

The last error is raised as it is (tenacity's reraise). Pure policy apart from `time.sleep`:
`wait` and `stop` take a tenacity RetryCallState and can be tested without a network.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState, Retrying, retry_if_exception

from worker.errors import TransientError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures of one request are retried (each connector keeps a module-level
    default that tests shrink)."""

    attempts: int = 8  # tries in all, the first included
    budget: float = 60.0  # seconds from the first try; no try starts after this
    base: float = 1.0  # the first wait's ceiling; it doubles with each try
    cap: float = 20.0  # the longest backoff wait
    max_retry_after: float = 30.0  # a longer Retry-After ends the retries (the next pass tries)


class LaterPassError(TransientError):
    """Transient, but not retried within the pass (a full storage quota)."""


def is_transient(exc: BaseException) -> bool:
    """True for the failures worth trying again within this pass."""
    return isinstance(exc, TransientError) and not isinstance(exc, LaterPassError)


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks for: delta-seconds, or an HTTP-date (RFC 9110 10.2.3).

    None when absent or unreadable; never negative (a date in the past means "now").
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _asked(state: RetryCallState) -> float | None:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    asked = getattr(exc, "retry_after", None)
    return float(asked) if isinstance(asked, int | float) else None


def backoff(policy: RetryPolicy, attempt: int) -> float:
    """Full jitter after the `attempt`-th try: uniform(0, min(cap, base * 2**(attempt-1)))."""
    ceiling = min(policy.cap, policy.base * (2 ** max(0, attempt - 1)))
    return random.uniform(0, ceiling)


def wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    """The wait before the next try: the backoff, or the server's Retry-After when longer."""

    def waiting(state: RetryCallState) -> float:
        asked = _asked(state)
        pause = backoff(policy, state.attempt_number)
        return max(pause, asked) if asked is not None else pause

    return waiting


def stop(
    policy: RetryPolicy, deadline: Callable[[], float | None] | None = None
) -> Callable[[RetryCallState], bool]:
    """Whether to give up now (see the module docstring); `deadline()` is a `time.monotonic()` time."""

    def stopping(state: RetryCallState) -> bool:
        asked = _asked(state)
        if asked is not None and asked > policy.max_retry_after:
            return True
        end = deadline() if deadline is not None else None
        if end is not None and time.monotonic() + state.upcoming_sleep >= end:
            return True
        if state.attempt_number >= policy.attempts:
            return True
        return (state.seconds_since_start or 0.0) + state.upcoming_sleep >= policy.budget

    return stopping


def retrying(
    policy: RetryPolicy,
    *,
    deadline: Callable[[], float | None] | None = None,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Retrying:
    """A tenacity Retrying for one request under `policy` (iterate it: `for attempt in ...`)."""
    return Retrying(
        stop=stop(policy, deadline),
        wait=wait(policy),
        retry=retry_if_exception(is_transient),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
