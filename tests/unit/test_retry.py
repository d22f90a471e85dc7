"""connectors.retry: the one retry policy of the CalDAV and Google connectors, without a network."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tenacity import RetryCallState

from connectors import retry
from connectors.caldav import transport
from connectors.google import api
from connectors.retry import LaterPassError, RetryPolicy, backoff, is_transient, retry_after
from worker.errors import AuthError, ConnectorError, TransientError

NOW = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(attempts=5, budget=60.0, base=1.0, cap=8.0, max_retry_after=30.0)


def _state(attempt: int, exc: BaseException, *, elapsed: float = 0.0, sleep: float = 0.0) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    state.outcome_timestamp = state.start_time + elapsed
    state.upcoming_sleep = sleep
    return state


def test_only_transient_errors_are_retried_and_not_a_later_pass_one() -> None:
    """TransientError is retried; a LaterPassError (CalDAV's full quota), auth and other errors are not."""
    assert is_transient(TransientError("x"))
    assert not is_transient(LaterPassError("quota"))
    assert not is_transient(transport.QuotaFullError("quota", retry_after=None))
    assert not is_transient(AuthError("no")) and not is_transient(ConnectorError("no"))
    assert not is_transient(ValueError("no"))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("Wed, 11 Mar 2026 12:00:30 GMT", 30.0),
        ("Wednesday, 11-Mar-26 12:01:00 GMT", 60.0),  # the obsolete RFC 850 form
        ("Wed, 11 Mar 2026 11:00:00 GMT", 0.0),  # a date in the past: now
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    """Retry-After is delta-seconds or an HTTP-date; unreadable or absent is None, never negative."""
    assert retry_after(header, now=NOW) == seconds


def test_both_connectors_read_retry_after_alike() -> None:
    """CalDAV's header reader is the shared one (an HTTP-date included)."""
    assert transport.retry_after({"retry-after": "7"}) == 7.0
    later = transport.retry_after({"retry-after": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert later is not None and later > 10**9


@given(st.integers(1, 40))
def test_backoff_is_full_jitter_under_the_cap(attempt: int) -> None:
    """The backoff after try n lies in [0, min(cap, base * 2**(n-1))]."""
    assert 0 <= backoff(POLICY, attempt) <= min(POLICY.cap, POLICY.base * 2 ** (attempt - 1))


def test_wait_is_at_least_what_the_server_asked() -> None:
    """A Retry-After longer than the backoff is waited in full; a shorter one leaves the backoff."""
    wait = retry.wait(POLICY)
    assert all(wait(_state(1, TransientError("x", retry_after=20.0))) == 20.0 for _ in range(20))
    assert all(0 <= wait(_state(3, TransientError("x", retry_after=0.0))) <= 4 for _ in range(50))
    assert all(0 <= wait(_state(3, TransientError("x"))) <= 4 for _ in range(50))


def test_stop_rules() -> None:
    """Stop after the attempts, past the budget, for a long Retry-After, or past the pass deadline."""
    stop = retry.stop(POLICY)
    plain = TransientError("x")
    assert not stop(_state(1, plain, sleep=1.0))
    assert stop(_state(5, plain, sleep=1.0))  # attempts
    assert stop(_state(2, plain, elapsed=59.5, sleep=1.0))  # the next try would start after the budget
    assert stop(_state(1, TransientError("x", retry_after=31.0), sleep=31.0))  # asks for too long
    assert not stop(_state(1, TransientError("x", retry_after=29.0), sleep=29.0))
    ends = time.monotonic() + 5.0
    by_deadline = retry.stop(POLICY, lambda: ends)
    assert by_deadline(_state(1, plain, sleep=6.0)) and not by_deadline(_state(1, plain, sleep=1.0))
    assert not retry.stop(POLICY, lambda: None)(_state(1, plain, sleep=6.0))


def test_retrying_reraises_the_last_error_after_the_attempts() -> None:
    """A call failing every time is tried `attempts` times and its own error comes out; others at once."""
    calls: list[float] = []
    policy = RetryPolicy(attempts=3, budget=10.0, base=0.001, cap=0.002)

    def failing(exc: BaseException) -> None:
        for attempt in retry.retrying(policy, sleep=calls.append):
            with attempt:
                raise exc

    with pytest.raises(TransientError, match="down"):
        failing(TransientError("down"))
    assert len(calls) == 2  # two waits between three tries
    calls.clear()
    with pytest.raises(LaterPassError):
        failing(LaterPassError("quota"))
    assert calls == []


def test_connectors_use_the_shared_policy() -> None:
    """The CalDAV and Google defaults are RetryPolicy values of this module, with their own numbers."""
    assert isinstance(transport.RETRY, RetryPolicy) and isinstance(api.DEFAULT_RETRY, RetryPolicy)
    assert transport.RetryPolicy is RetryPolicy is api.RetryPolicy
    assert (transport.RETRY.attempts, transport.RETRY.cap) == (4, 15.0)
    assert (api.DEFAULT_RETRY.attempts, api.DEFAULT_RETRY.cap) == (8, 20.0)
