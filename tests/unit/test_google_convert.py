"""Google JSON <-> model conversion and error classification, without a network."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httplib2
import pytest
from googleapiclient.errors import HttpError
from tenacity import RetryCallState

from connectors.google import convert
from connectors.google.api import DuplicateError, GoneError, RetryPolicy, _Wait, translate_http_error
from worker.errors import AuthError, ConflictError, ConnectorError, DataError, NotFoundError, TransientError
from worker.model import ClientId, ItemKind, Reason, Reminder, reminder_key

CHICAGO = ZoneInfo("America/Chicago")


def _event(raw: dict[str, Any], **kw: Any) -> Any:
    return convert.to_event(
        raw,
        item="cal/x",
        source="practice",
        fallback=kw.pop("fallback", CHICAGO),
        default_length=timedelta(minutes=50),
        **kw,
    )


def test_a_datetime_keeps_its_own_offset() -> None:
    """A dateTime with an offset is read as written, whatever the calendar's zone."""
    event = _event(
        {
            "id": "a1",
            "start": {"dateTime": "2026-03-03T21:00:00+01:00"},
            "end": {"dateTime": "2026-03-03T21:50:00+01:00"},
        }
    )
    assert event.start == datetime(2026, 3, 3, 20, 0, tzinfo=UTC)
    assert event.start.utcoffset() == timedelta(hours=1)


def test_a_datetime_without_offset_uses_its_time_zone_then_the_calendars() -> None:
    """A floating dateTime is read in its timeZone, else in the calendar's zone."""
    tokyo = _event(
        {
            "id": "a1",
            "start": {"dateTime": "2026-03-03T10:00:00", "timeZone": "Asia/Tokyo"},
            "end": {"dateTime": "2026-03-03T11:00:00", "timeZone": "Asia/Tokyo"},
        }
    )
    assert tokyo.start == datetime(2026, 3, 3, 1, 0, tzinfo=UTC)
    local = _event(
        {"id": "a1", "start": {"dateTime": "2026-07-03T10:00:00"}, "end": {"dateTime": "2026-07-03T11:00:00"}}
    )
    assert local.start == datetime(2026, 7, 3, 15, 0, tzinfo=UTC)  # CDT


def test_all_day_events_are_not_appointments() -> None:
    """An event with a `date` start gives None."""
    assert _event({"id": "a1", "start": {"date": "2026-03-20"}, "end": {"date": "2026-03-21"}}) is None


def test_an_instance_is_named_by_its_series_and_original_start_in_utc() -> None:
    """uid = recurringEventId, recurrence id = originalStartTime in UTC, stable when moved."""
    raw = {
        "id": "s1_20260309T150000Z",
        "recurringEventId": "s1",
        "summary": "x",
        "originalStartTime": {"dateTime": "2026-03-09T10:00:00-05:00", "timeZone": "America/Chicago"},
        "start": {"dateTime": "2026-03-10T11:00:00-05:00"},
        "end": {"dateTime": "2026-03-10T11:50:00-05:00"},
    }
    event = _event(raw)
    assert (event.uid, event.recurrence_id) == ("s1", "20260309T150000Z")
    assert event.start == datetime(2026, 3, 10, 16, 0, tzinfo=UTC)
    assert convert.series_id(raw) == "s1" and convert.instance_key(raw) == raw["id"]
    single = _event(
        {
            "id": "one",
            "start": {"dateTime": "2026-03-10T11:00:00Z"},
            "end": {"dateTime": "2026-03-10T12:00:00Z"},
        }
    )
    assert (single.uid, single.recurrence_id) == ("one", "")


def test_an_instance_without_id_is_keyed_by_series_and_original_start() -> None:
    """The fallback key is (recurringEventId, originalStartTime); no id at all is a DataError."""
    raw = {"recurringEventId": "s1", "originalStartTime": {"dateTime": "2026-03-09T10:00:00-05:00"}}
    assert convert.instance_key(raw) == "s1@2026-03-09T10:00:00-05:00"
    with pytest.raises(DataError):
        convert.instance_key({"summary": "x"})


def test_a_minimal_cancelled_instance_borrows_its_series_text_and_length() -> None:
    """A cancelled instance with only ids and original start still matches its client."""
    sibling = {
        "id": "s1_a",
        "summary": "Avery Quinn",
        "description": "notes",
        "attendees": [{"email": "Avery@Example.org", "responseStatus": "accepted"}],
        "start": {"dateTime": "2026-03-02T10:00:00-06:00"},
        "end": {"dateTime": "2026-03-02T11:00:00-06:00"},
    }
    raw = {
        "id": "s1_b",
        "status": "cancelled",
        "recurringEventId": "s1",
        "updated": "2026-03-08T14:00:00.000Z",
        "originalStartTime": {"dateTime": "2026-03-09T10:00:00-05:00", "timeZone": "America/Chicago"},
    }
    event = _event(raw, series=sibling)
    assert event.status == "cancelled"
    assert event.summary == "Avery Quinn" and event.attendees[0].email == "avery@example.org"
    assert event.end - event.start == timedelta(hours=1)
    assert event.last_modified == datetime(2026, 3, 8, 14, 0, tzinfo=UTC)
    assert event.recurrence_id == "20260309T150000Z"


def test_attendees_colour_times_and_transparency_are_carried() -> None:
    """responseStatus becomes a PARTSTAT; colorId, created, updated and transparency are kept."""
    event = _event(
        {
            "id": "a1",
            "start": {"dateTime": "2026-03-03T10:00:00Z"},
            "end": {"dateTime": "2026-03-03T11:00:00Z"},
            "attendees": [
                {"email": "b@example.org", "responseStatus": "declined"},
                {"responseStatus": "accepted"},
            ],
            "colorId": "11",
            "created": "2026-01-02T03:04:05.000Z",
            "updated": "2026-02-03T04:05:06Z",
            "transparency": "transparent",
            "status": "tentative",
        }
    )
    assert [(a.email, a.partstat, a.declined) for a in event.attendees] == [
        ("b@example.org", "DECLINED", True)
    ]
    assert event.color == "11" and event.transparent and event.status == "tentative"
    assert event.created == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert event.last_modified == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_an_unreadable_time_is_a_data_error() -> None:
    """A broken dateTime raises DataError (the object is skipped and counted)."""
    with pytest.raises(DataError):
        _event({"id": "a1", "start": {"dateTime": "yesterday"}, "end": {"dateTime": "today"}})


def _reminder(kind: ItemKind = "task", start: datetime | None = None) -> Reminder:
    at = start or datetime(2026, 3, 18, 23, 30, tzinfo=CHICAGO)
    return Reminder(
        key=reminder_key("c001", "no_show", "u", ""),
        kind=kind,
        client_id=ClientId("c001"),
        reason=Reason.NO_SHOW,
        start=at,
        end=at + timedelta(minutes=15),
        title="Call A.Q.",
        description="body\nmore",
        payload_hash="abc123",
    )


def test_event_body_is_private_transparent_with_a_popup_and_our_properties() -> None:
    """The insert body: id = key, private props incl. hash and mark, popup alarm, no attendees."""
    body = convert.event_body(_reminder("event"), tz=CHICAGO, alarm_minutes=5)
    assert body["id"] == _reminder().key
    assert body["visibility"] == "private" and body["transparency"] == "transparent"
    assert body["reminders"] == {"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}]}
    assert body["extendedProperties"]["private"] == {
        "x-callsheet-key": _reminder().key,
        "x-callsheet-reason": "no_show",
        "x-callsheet-client": "c001",
        "x-callsheet-hash": "abc123",
        "x-callsheet-app": "callsheet",
    }
    assert body["start"] == {"dateTime": "2026-03-18T23:30:00-05:00", "timeZone": "America/Chicago"}
    assert "attendees" not in body
    managed = convert.managed_event({**body, "etag": '"1"', "status": "confirmed"})
    assert managed is not None and (managed.key, managed.payload_hash, managed.status) == (
        _reminder().key,
        "abc123",
        "open",
    )
    assert (
        convert.managed_event({"id": "x", "extendedProperties": {"private": {"x-callsheet-key": "no!"}}})
        is None
    )


def test_task_due_is_the_local_date_and_the_key_line_round_trips() -> None:
    """due is the practice-zone date at midnight UTC; the notes' last line gives back key, hash, client."""
    body = convert.task_body(_reminder(), tz=CHICAGO)
    assert body["due"] == "2026-03-18T00:00:00.000Z"  # 23:30 in Chicago is already the 19th in UTC
    managed = convert.managed_task({**body, "id": "t1", "etag": "e"}, CHICAGO)
    assert managed is not None
    assert (managed.key, managed.payload_hash, managed.client_id, managed.reason) == (
        _reminder().key,
        "abc123",
        "c001",
        "no_show",
    )
    assert managed.start == datetime(2026, 3, 18, tzinfo=CHICAGO)
    closed = convert.closed_notes(body["notes"], "resolved")
    assert closed.splitlines()[-1] == body["notes"].splitlines()[-1]
    assert "callsheet: closed (resolved)." in closed
    done = convert.managed_task({**body, "id": "t1", "status": "completed"}, CHICAGO)
    gone = convert.managed_task({**body, "id": "t1", "deleted": True}, CHICAGO)
    assert done is not None and done.status == "completed"
    assert gone is not None and gone.status == "cancelled"
    assert convert.managed_task({"id": "t2", "notes": "a task of my own"}, CHICAGO) is None


def _http_error(status: int, reason: str = "", headers: dict[str, str] | None = None) -> HttpError:
    resp = httplib2.Response({"status": str(status), **(headers or {})})
    body = {"error": {"code": status, "message": "m", "errors": [{"reason": reason, "domain": "global"}]}}
    return HttpError(resp, json.dumps(body).encode(), uri="https://example.invalid/x")


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (500, "backendError", TransientError),
        (503, "", TransientError),
        (429, "rateLimitExceeded", TransientError),
        (403, "rateLimitExceeded", TransientError),
        (403, "userRateLimitExceeded", TransientError),
        (403, "quotaExceeded", ConnectorError),
        (403, "forbidden", ConnectorError),
        (403, "insufficientPermissions", AuthError),
        (401, "authError", AuthError),
        (400, "badRequest", ConnectorError),
        (404, "notFound", NotFoundError),
        (410, "fullSyncRequired", GoneError),
        (409, "duplicate", DuplicateError),
        (412, "conditionNotMet", ConflictError),
    ],
)
def test_http_errors_are_classified(status: int, reason: str, expected: type[Exception]) -> None:
    """Only connection errors, 5xx, 429 and 403 rate limits are transient; quota ends the pass."""
    error = translate_http_error(_http_error(status, reason), operation="op", source="s", config_path=None)
    assert type(error) is expected
    assert "example.invalid" not in str(error)


def test_the_wait_honours_retry_after_within_the_cap() -> None:
    """Full jitter stays under base*2**n, but a Retry-After (capped) is waited at least."""
    policy = RetryPolicy(budget=60, base=1.0, cap=20.0)
    wait = _Wait(policy)

    def state(attempt: int, exc: BaseException) -> RetryCallState:
        s = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        s.attempt_number = attempt
        s.set_exception((type(exc), exc, None))
        return s

    plain = TransientError("x")
    assert all(0 <= wait(state(3, plain)) <= 4 for _ in range(50))
    asked = translate_http_error(
        _http_error(429, "rateLimitExceeded", {"retry-after": "7"}),
        operation="op",
        source="s",
        config_path=None,
    )
    assert isinstance(asked, TransientError) and asked.retry_after == 7
    assert all(7 <= wait(state(1, asked)) <= 20 for _ in range(20))
    huge = TransientError("x", retry_after=3600)
    assert wait(state(1, huge)) == 20


def test_fixed_offsets_are_fine_for_recurrence_ids() -> None:
    """A recurrence id from a fixed-offset original start is the same UTC instant."""
    assert convert.recurrence_id({"dateTime": "2026-03-09T16:00:00+01:00"}, UTC) == "20260309T150000Z"
    assert convert.recurrence_id({"date": "2026-03-09"}, UTC) == "20260309"
