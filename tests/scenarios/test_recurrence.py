"""Recurring appointments and calendar edge cases, from golden files in tests/data/.

Series are expanded locally (recurring-ical-events): weekly and fortnightly rules, UNTIL and
COUNT, EXDATE (an instance simply absent, not cancelled), moved instances (RECURRENCE-ID: the
same appointment at its new time), cancelled instances, series crossing a DST change (09:00
stays 09:00 local), UTC, floating and TZID times, all-day events (ignored) and events
without DTEND (DURATION, else the default length of 50 minutes).
"""

from __future__ import annotations

import pytest

from tests.practice import Practice, local, vevent
from tests.scenarios.conftest import copy_golden, make_practice


def test_weekly_until_ends_on_the_last_instance(practice, plan):
    """A weekly series ending 10 March (UNTIL): booked until then, a rebooking call a week after."""
    copy_golden(practice, "weekly_until")
    assert plan(practice, "2026-03-10T09:00") == []
    assert plan(practice, "2026-03-12T09:00") == [
        ("c001", "not_rebooked", "upcoming", "2026-03-17T10:50:00-05:00")
    ]


def test_weekly_count_ends_after_count_instances(practice, plan):
    """COUNT=3 from 3 March: the last is 17 March, so the call is due 24 March."""
    copy_golden(practice, "weekly_count")
    assert plan(practice, "2026-03-25T09:00") == [
        ("c001", "not_rebooked", "due", "2026-03-24T10:50:00-05:00")
    ]


def test_fortnightly_series(practice, plan):
    """Every other Tuesday until 15 March: 3 Feb, 17 Feb, 3 March; no instance on 10 March."""
    copy_golden(practice, "fortnightly_until")
    # a week after 3 March 10:50 CST, in elapsed time, is 10 March 11:50 CDT
    assert plan(practice, "2026-03-12T09:00") == [
        ("c001", "not_rebooked", "due", "2026-03-10T11:50:00-05:00")
    ]


def test_exdate_is_absent_not_cancelled(practice, plan):
    """EXDATE removes 17 March: the latest appointment is 10 March, attended, so not_rebooked (not a cancellation)."""
    copy_golden(practice, "weekly_with_exdate")
    assert plan(practice, "2026-03-18T12:00") == [
        ("c001", "not_rebooked", "due", "2026-03-17T10:50:00-05:00")
    ]


def test_moved_instance_is_the_same_appointment_at_its_new_time(practice, plan_json):
    """17 March 10:00 moved to 19 March 14:00: booked until then; the call anchors on the instance's recurrence id."""
    copy_golden(practice, "moved_occurrence")
    assert plan_json(practice, "2026-03-17T12:00") == []
    [line] = plan_json(practice, "2026-03-20T09:00")
    assert (line["client"], line["reason"], line["state"], line["due"], line["anchor"]) == (
        "c001",
        "not_rebooked",
        "upcoming",
        "2026-03-26T14:50:00-05:00",
        "moved-1|20260317T150000Z",
    )


def test_cancelled_instance(practice, plan_json):
    """The 17 March instance cancelled on 16 March 09:00: a cancellation call two days later."""
    copy_golden(practice, "cancelled_occurrence")
    [line] = plan_json(practice, "2026-03-18T12:00")
    assert (line["client"], line["reason"], line["state"], line["due"], line["anchor"]) == (
        "c001",
        "cancelled_not_rebooked",
        "due",
        "2026-03-18T09:00:00-05:00",
        "cxl-occ|20260317T150000Z",
    )


def test_no_show_on_one_instance(practice, plan_json):
    """An override of one instance titled DNA is a no-show of that instance only."""
    copy_golden(practice, "no_show_occurrence")
    [line] = plan_json(practice, "2026-03-12T09:00")
    assert (line["client"], line["reason"], line["state"], line["due"], line["anchor"]) == (
        "c001",
        "no_show",
        "due",
        "2026-03-10T10:50:00-05:00",
        "ns-occ|20260310T150000Z",
    )


@pytest.mark.parametrize(
    ("now", "due"),
    [
        ("2026-03-02T09:20", "2026-03-02T09:15:00-06:00"),
        ("2026-03-09T09:20", "2026-03-09T09:15:00-05:00"),
    ],
)
def test_series_across_spring_forward_keeps_local_time(tmp_path, plan, now, due):
    """A Monday 09:00 series either side of 8 March stays at 09:00 local: late at 09:15 CST, then 09:15 CDT."""
    p = make_practice(tmp_path / "p", check_in=True)
    copy_golden(p, "dst_spring_forward")
    assert plan(p, now) == [("c001", "late", "due", due)]


@pytest.mark.parametrize(
    ("now", "due"),
    [
        ("2026-10-26T09:20", "2026-10-26T09:15:00-05:00"),
        ("2026-11-02T09:20", "2026-11-02T09:15:00-06:00"),
    ],
)
def test_series_across_fall_back_keeps_local_time(tmp_path, plan, now, due):
    """A Monday 09:00 series either side of 1 November stays at 09:00 local."""
    p = make_practice(tmp_path / "p", check_in=True)
    copy_golden(p, "dst_fall_back")
    assert plan(p, now) == [("c001", "late", "due", due)]


def test_series_in_utc_does_not_follow_dst(tmp_path, plan):
    """A series written in UTC (16:00Z) is 10:00 CST, then 11:00 CDT after the change, as the calendar says."""
    p = make_practice(tmp_path / "p", check_in=True)
    copy_golden(p, "utc_series")
    assert plan(p, "2026-03-10T10:20") == [("c001", "late", "upcoming", "2026-03-10T11:15:00-05:00")]
    assert plan(p, "2026-03-10T11:20") == [("c001", "late", "due", "2026-03-10T11:15:00-05:00")]


@pytest.mark.parametrize("name", ["floating_time", "other_tzid", "windows_tzid"])
def test_floating_and_tzid_times(practice, plan, name):
    """Floating times read in the practice zone; TZIDs (IANA or Outlook's with VTIMEZONE) convert: all 10:00 CDT."""
    copy_golden(practice, name)
    assert plan(practice, "2026-03-10T15:00") == [
        ("c001", "no_show", "due", "2026-03-10T10:50:00-05:00"),
        ("c001", "not_rebooked", "upcoming", "2026-03-17T10:50:00-05:00"),
    ]


def test_all_day_events_are_ignored(practice, plan):
    """All-day events (single or recurring) are never appointments, even with a client's name and a marker."""
    copy_golden(practice, "all_day")
    assert plan(practice, "2026-03-12T15:00") == []


@pytest.mark.parametrize(("name", "end"), [("no_dtend_duration", "10:30"), ("no_dtend_default", "10:50")])
def test_events_without_dtend(practice, plan, name, end):
    """Without DTEND an event lasts its DURATION (30 minutes), else the default length (50 minutes)."""
    copy_golden(practice, name)
    assert plan(practice, "2026-03-10T15:00") == [
        ("c001", "no_show", "due", f"2026-03-10T{end}:00-05:00"),
        ("c001", "not_rebooked", "upcoming", f"2026-03-17T{end}:00-05:00"),
    ]


def test_default_length_is_configurable(tmp_path, plan):
    """rules.default_length sets the length of an event without DTEND or DURATION."""
    p = make_practice(tmp_path / "p", rules={"default_length": "45m"})
    copy_golden(p, "no_dtend_default")
    assert plan(p, "2026-03-10T15:00")[0] == ("c001", "no_show", "due", "2026-03-10T10:45:00-05:00")


# -- [source] exdate_is_cancellation (Zimbra stores a cancelled session as an EXDATE) ----------


def _series(practice: Practice, exdates: tuple[str, ...] = (), count: int = 3) -> None:
    """c001 weekly on Tuesdays at 10:00 from 3 March, `count` sessions, minus `exdates`."""
    practice.add(
        "series",
        vevent(
            "zimbra-series",
            "Avery Quinn",
            local("2026-03-03 10:00"),
            rrule=f"FREQ=WEEKLY;COUNT={count}",
            exdates=[local(x) for x in exdates],
        ),
    )


def _quirk(tmp_path, on: bool) -> Practice:
    practice = make_practice(tmp_path / "practice")
    if on:
        practice.source += "exdate_is_cancellation = true\n"
        practice.write_config()
    return practice


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        (True, [("c001", "cancelled_not_rebooked", "upcoming", "2026-03-14T09:00:00-05:00")]),
        (False, [("c001", "not_rebooked", "upcoming", "2026-03-17T10:50:00-05:00")]),
    ],
)
def test_new_exdate_on_next_weeks_session(tmp_path, plan, run_once, on, expected):
    """Next week's (last) session gets an EXDATE: with the quirk a cancellation noticed now, without it nothing cancelled."""
    practice = _quirk(tmp_path, on)
    _series(practice)
    run_once(practice, "2026-03-11T09:00")
    assert plan(practice, "2026-03-11T09:00") == []
    _series(practice, exdates=("2026-03-17 10:00",))
    run_once(practice, "2026-03-12T09:00")
    assert plan(practice, "2026-03-12T09:00") == expected


def test_exdate_quirk_keeps_past_sessions_as_history(tmp_path, plan, run_once):
    """With the quirk, an EXDATE on a session already held leaves it attended, not cancelled and not dropped."""
    practice = _quirk(tmp_path, True)
    _series(practice, count=2)
    run_once(practice, "2026-03-11T09:00")
    _series(practice, exdates=("2026-03-10 10:00",), count=2)
    run_once(practice, "2026-03-12T09:00")
    assert plan(practice, "2026-03-12T09:00") == [
        ("c001", "not_rebooked", "upcoming", "2026-03-17T10:50:00-05:00")
    ]


def test_exdate_quirk_a_restored_session_is_booked_again(tmp_path, plan, run_once):
    """With the quirk, an EXDATE taken back before the session restores the booking (no call)."""
    practice = _quirk(tmp_path, True)
    _series(practice)
    run_once(practice, "2026-03-11T09:00")
    _series(practice, exdates=("2026-03-17 10:00",))
    run_once(practice, "2026-03-12T09:00")
    _series(practice)
    run_once(practice, "2026-03-13T09:00")
    assert plan(practice, "2026-03-13T09:00") == []


def test_exdate_quirk_ignores_an_exdate_seen_on_the_first_read(tmp_path, plan):
    """With the quirk, an EXDATE already there when callsheet first reads the series is no cancellation (never seen booked)."""
    practice = _quirk(tmp_path, True)
    _series(practice, exdates=("2026-03-17 10:00",))
    assert plan(practice, "2026-03-12T09:00") == [
        ("c001", "not_rebooked", "upcoming", "2026-03-17T10:50:00-05:00")
    ]
