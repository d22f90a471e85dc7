"""Google JSON <-> model conversion and error classification, without a network."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httplib2
import pytest
from googleapiclient.errors import HttpError
from hypothesis import given
from hypothesis import strategies as st

from connectors.google import convert
from connectors.google.api import DuplicateError, GoneError, translate_http_error
from worker.errors import AuthError, ConflictError, ConnectorError, DataError, NotFoundError, TransientError
from worker.identity import foreign_reason
from worker.model import ClientId, ItemKind, ItemName, Reason, Reminder, reminder_key

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


def test_all_day_events_are_never_appointments_and_busy_only_when_opaque() -> None:
    """A transparent all-day event gives None; an opaque one (the API default) is busy time without text."""
    day = {
        "id": "a1",
        "summary": "Avery Quinn",
        "start": {"date": "2026-03-20"},
        "end": {"date": "2026-03-22"},
    }
    assert _event({**day, "transparency": "transparent"}) is None
    busy = _event(day)
    assert busy is not None and busy.summary == "" and not busy.transparent
    assert (busy.start, busy.end) == (
        datetime(2026, 3, 20, tzinfo=CHICAGO),
        datetime(2026, 3, 22, tzinfo=CHICAGO),
    )


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
    """The insert body: id = key + generation, private props incl. hash and mark, popup alarm, no attendees."""
    body = convert.event_body(_reminder("event"), tz=CHICAGO, alarm_minutes=5)
    assert body["id"] == f"{_reminder().key}e1"
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


def test_events_carry_generation_in_their_id_and_the_owner_mark() -> None:
    """Each generation has its own event id; managed() reads uid, name, owner and generation back."""
    reminder = replace(_reminder("event"), generation=3, owner="0123456789abcdef")
    body = convert.event_body(reminder, tz=CHICAGO, alarm_minutes=0)
    assert body["id"] == f"{reminder.key}e3"
    assert body["extendedProperties"]["private"]["x-callsheet-owner"] == "0123456789abcdef"
    item = convert.managed_event({**body, "status": "confirmed"})
    assert item is not None
    assert (item.uid, item.named, item.owner, item.generation) == (
        f"callsheet-{reminder.key}-e3",
        ItemName(reminder.key, "event", 3),
        "0123456789abcdef",
        3,
    )
    assert foreign_reason(item, "0123456789abcdef") == ""
    assert foreign_reason(item, "fedcba9876543210") == "owner"


def test_a_legacy_event_named_by_its_key_reads_as_generation_0() -> None:
    """An event written before generations (id == key, no owner mark) is generation 0 and still ours."""
    key = _reminder().key
    raw = {"id": key, "status": "confirmed", "extendedProperties": {"private": {"x-callsheet-key": key}}}
    item = convert.managed_event(raw)
    assert item is not None and (item.uid, item.generation, item.owner) == (f"callsheet-{key}", 0, "")
    assert foreign_reason(item, "0123456789abcdef") == ""


def test_an_event_whose_id_callsheet_did_not_write_is_foreign() -> None:
    """Our key property on an event with another id gives no uid: the runner judges it foreign."""
    key = _reminder().key
    raw = {"id": "somethingelse1", "extendedProperties": {"private": {"x-callsheet-key": key}}}
    item = convert.managed_event(raw)
    assert item is not None and item.named is None and foreign_reason(item, "") == "uid"


def test_the_task_key_line_is_found_anywhere_and_carries_uid_and_owner() -> None:
    """A line typed after the key line changes nothing: same key, uid, owner; the typed text is kept when closing."""
    reminder = replace(_reminder(), generation=2, owner="0123456789abcdef")
    notes = convert.task_body(reminder, tz=CHICAGO)["notes"]
    assert notes.splitlines()[-2] == convert.TASK_SEPARATOR
    edited = notes + "\nleft voicemail Tue\n"
    item = convert.managed_task({"id": "t1", "notes": edited}, CHICAGO)
    assert item is not None
    assert (item.key, item.uid, item.owner, item.generation, item.named) == (
        reminder.key,
        f"callsheet-{reminder.key}-t2",
        "0123456789abcdef",
        2,
        None,
    )
    assert foreign_reason(item, "0123456789abcdef") == ""
    closed = convert.closed_notes(edited, "resolved")
    assert "left voicemail Tue" in closed and closed.splitlines()[-1] == convert.key_line(reminder)
    kept = convert.task_notes(reminder, convert.split_notes(edited)[2])
    assert "left voicemail Tue" in kept and kept.splitlines()[-1] == convert.key_line(reminder)


def test_a_legacy_task_key_line_reads_as_generation_0() -> None:
    """A key line without uid (written before generations) is generation 0 with the legacy uid."""
    key = _reminder().key
    item = convert.managed_task({"id": "t1", "notes": f"text\n\ncallsheet-key: {key} reason=late"}, CHICAGO)
    assert item is not None and (item.uid, item.generation) == (f"callsheet-{key}", 0)


def _timed(**extra: Any) -> dict[str, Any]:
    return {
        "id": "e1",
        "summary": "Avery Quinn",
        "start": {"dateTime": "2026-03-10T10:00:00-05:00"},
        "end": {"dateTime": "2026-03-10T10:50:00-05:00"},
        **extra,
    }


@pytest.mark.parametrize("event_type", ["birthday", "workingLocation", "fromGmail"])
def test_other_event_types_are_ignored(event_type: str) -> None:
    """Birthdays, working locations and from-Gmail entries are neither appointments nor busy time."""
    assert _event(_timed(eventType=event_type)) is None


@pytest.mark.parametrize("event_type", ["outOfOffice", "focusTime"])
def test_out_of_office_and_focus_time_are_busy_time_only(event_type: str) -> None:
    """A focus-time block titled with a client's name keeps its time but loses its text: it matches nobody."""
    event = _event(_timed(eventType=event_type, description="Avery", attendees=[{"email": "a@x.test"}]))
    assert event is not None and (event.summary, event.description, event.attendees) == ("", "", ())
    assert not event.transparent and event.status == "confirmed"


def test_the_therapists_own_decline_is_neither_appointment_nor_busy() -> None:
    """An invitation whose self attendee declined gives None; a client's decline is still read."""
    mine = [{"email": "me@x.test", "self": True, "responseStatus": "declined"}]
    assert _event(_timed(attendees=mine, organizer={"self": False})) is None
    client = [{"email": "a@x.test", "responseStatus": "declined"}, {"email": "me@x.test", "self": True}]
    event = _event(_timed(attendees=client))
    assert event is not None and event.attendees[0].declined


def test_colours_read_as_the_name_the_configuration_uses() -> None:
    """colorId 11 reads as "Tomato" when configured so, as "11" otherwise."""
    assert _event(_timed(colorId="11"), colors=("Tomato",)).color == "Tomato"
    assert _event(_timed(colorId="11"), colors=("11",)).color == "11"
    assert _event(_timed(colorId="4"), colors=("tomato", "flamingo")).color == "flamingo"
    assert set(convert.COLOR_NAMES) == {str(i) for i in range(1, 12)}


def test_a_minimal_cancelled_instance_is_cancelled_by_the_earlier_of_its_start_and_the_series_update() -> (
    None
):
    """No `updated` on the instance: the series' `updated` bounds the time, never later than the start."""
    minimal = {
        "id": "s1_20260310T150000Z",
        "recurringEventId": "s1",
        "status": "cancelled",
        "originalStartTime": {"dateTime": "2026-03-10T10:00:00-05:00"},
    }
    series = _timed(id="s1", updated="2026-03-09T13:00:00Z")
    event = _event(minimal, series=series)
    assert event.last_modified == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    late = _event(minimal, series={**series, "updated": "2026-03-12T13:00:00Z"})
    assert late.last_modified == datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    assert _event(minimal, series={k: v for k, v in series.items() if k != "updated"}).last_modified is None


def test_a_deleted_single_event_cancels_only_with_its_details_before_its_start() -> None:
    """The organizer's copy, deleted before its start, counts; a bare tombstone or a later deletion does not."""
    deleted = _timed(status="cancelled", updated="2026-03-09T12:00:00Z")
    assert convert.deleted_single_cancels(deleted, CHICAGO)
    assert not convert.deleted_single_cancels({"id": "e1", "status": "cancelled"}, CHICAGO)
    assert not convert.deleted_single_cancels({**deleted, "updated": "2026-03-10T16:00:00Z"}, CHICAGO)
    assert not convert.deleted_single_cancels({**deleted, "status": "confirmed"}, CHICAGO)


def test_quota_exceeded_is_the_accounts_usage_limit_not_the_project_quota() -> None:
    """403 quotaExceeded names the account's Calendar usage limits; dailyLimitExceeded the Cloud project."""
    account = translate_http_error(
        _http_error(403, "quotaExceeded"), operation="x", source="s", config_path=None
    )
    project = translate_http_error(
        _http_error(403, "dailyLimitExceeded"), operation="x", source="s", config_path=None
    )
    assert (
        type(account) is ConnectorError and "usage limits" in str(account) and "project" not in str(account)
    )
    assert type(project) is ConnectorError and "Cloud project" in str(project)


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


def test_retry_after_is_read_from_the_answer() -> None:
    """A 429's Retry-After (seconds or an HTTP-date) rides on the TransientError for the retry layer."""
    for header, seconds in (("7", 7.0), ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0)):
        asked = translate_http_error(
            _http_error(429, "rateLimitExceeded", {"retry-after": header}),
            operation="op",
            source="s",
            config_path=None,
        )
        assert isinstance(asked, TransientError) and asked.retry_after == seconds


def test_fixed_offsets_are_fine_for_recurrence_ids() -> None:
    """A recurrence id from a fixed-offset original start is the same UTC instant."""
    assert convert.recurrence_id({"dateTime": "2026-03-09T16:00:00+01:00"}, UTC) == "20260309T150000Z"
    assert convert.recurrence_id({"date": "2026-03-09"}, UTC) == "20260309"


_TYPED = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80).filter(
    lambda s: "callsheet-key:" not in s
)


@given(typed=_TYPED, above=_TYPED, generation=st.integers(min_value=1, max_value=999))
def test_whatever_the_therapist_types_around_the_key_line_the_task_stays_ours(
    typed: str, above: str, generation: int
) -> None:
    """Text added above or below the key line never loses the key, uid or owner, and closing keeps it."""
    reminder = replace(_reminder(), generation=generation, owner="0123456789abcdef")
    notes = f"{above}\n{convert.task_notes(reminder)}\n{typed}"
    item = convert.managed_task({"id": "t1", "notes": notes}, CHICAGO)
    assert item is not None
    assert (item.key, item.generation, item.owner) == (reminder.key, generation, "0123456789abcdef")
    closed = convert.managed_task({"id": "t1", "notes": convert.closed_notes(notes, "x")}, CHICAGO)
    assert closed is not None and closed.uid == item.uid
