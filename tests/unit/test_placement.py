"""Placement: office hours, free slots, calls that never stack, and alternative slots."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from worker import placement
from worker.model import Busy, CallNeed, ClientId, Reason, ReminderKey

TZ = ZoneInfo("America/Chicago")
HOURS = placement.Hours(tz=TZ, weekdays=frozenset(range(5)), start=time(9), end=time(17))
M15 = timedelta(minutes=15)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def busy(*spans: tuple[str, str]) -> list[Busy]:
    return [Busy(at(a), at(b)) for a, b in spans]


def need(
    key: str,
    due: str | datetime,
    reason: Reason = Reason.NO_SHOW,
    start: str = "2026-03-09 10:00",
    minutes: int = 50,
) -> CallNeed:
    begin = at(start)
    return CallNeed(
        key=ReminderKey(key),
        client_id=ClientId("c001"),
        reason=reason,
        due=at(due) if isinstance(due, str) else due,
        state="due",
        anchor_uid=key,
        anchor_rid="",
        appointment_start=begin,
        appointment_end=begin + timedelta(minutes=minutes),
    )


def test_hours_contains():
    """Office hours hold [start, end) only on office days, between opening and closing, within one day."""
    assert HOURS.contains(at("2026-03-10 09:00"), at("2026-03-10 09:15"))
    assert HOURS.contains(at("2026-03-10 16:45"), at("2026-03-10 17:00"))
    assert not HOURS.contains(at("2026-03-10 08:50"), at("2026-03-10 09:05"))
    assert not HOURS.contains(at("2026-03-10 16:50"), at("2026-03-10 17:05"))
    assert not HOURS.contains(at("2026-03-14 10:00"), at("2026-03-14 10:15"))  # Saturday
    assert HOURS.contains(at("2026-03-10 15:00").astimezone(UTC), at("2026-03-10 15:15").astimezone(UTC))


def test_first_free_rounds_up_to_the_slot_grid():
    """The search starts at the next 15-minute mark at or after `after`."""
    index = placement.BusyIndex([])
    assert placement.first_free(at("2026-03-10 10:50"), HOURS, index, M15) == at("2026-03-10 11:00")
    assert placement.first_free(at("2026-03-10 11:00"), HOURS, index, M15) == at("2026-03-10 11:00")


def test_first_free_skips_closed_time_and_weekends():
    """Before opening it waits for 09:00; after closing on Friday it goes to Monday 09:00."""
    index = placement.BusyIndex([])
    assert placement.first_free(at("2026-03-10 06:10"), HOURS, index, M15) == at("2026-03-10 09:00")
    assert placement.first_free(at("2026-03-13 16:50"), HOURS, index, M15) == at("2026-03-16 09:00")


def test_first_free_skips_busy_time():
    """Busy stretches are skipped (slots stay on the 15-minute grid); a slot may begin as one ends."""
    index = placement.BusyIndex(
        busy(("2026-03-10 09:00", "2026-03-10 09:50"), ("2026-03-10 10:00", "2026-03-10 10:50"))
    )
    assert placement.first_free(at("2026-03-10 09:00"), HOURS, index, M15) == at("2026-03-10 11:00")
    exact = placement.BusyIndex(busy(("2026-03-10 09:00", "2026-03-10 10:00")))
    assert placement.first_free(at("2026-03-10 09:00"), HOURS, exact, M15) == at("2026-03-10 10:00")
    wide = placement.BusyIndex(busy(("2026-03-10 10:30", "2026-03-10 11:00")))
    assert placement.first_free(at("2026-03-10 10:00"), HOURS, wide, timedelta(minutes=45)) == at(
        "2026-03-10 11:00"
    )


def test_first_free_keeps_wall_clock_hours_across_dst():
    """On the Monday after the spring change office hours still open at 09:00 local."""
    index = placement.BusyIndex([])
    found = placement.first_free(at("2026-03-07 12:00"), HOURS, index, M15)
    assert found == at("2026-03-09 09:00")
    assert found is not None and found.utcoffset() == timedelta(hours=-5)


def test_first_free_gives_up_after_the_search_horizon():
    """With every office hour busy for the next 200 days there is no slot."""
    index = placement.BusyIndex(busy(("2026-03-10 00:00", "2026-10-01 00:00")))
    assert placement.first_free(at("2026-03-10 09:00"), HOURS, index, M15) is None


def test_busy_index_touching_and_merging():
    """Touching stretches leave their boundary free; overlapping ones merge; margins widen a query."""
    index = placement.BusyIndex(
        busy(("2026-03-10 10:00", "2026-03-10 11:00"), ("2026-03-10 10:30", "2026-03-10 12:00"))
    )
    assert index.conflicts(at("2026-03-10 11:30"), at("2026-03-10 11:45"))
    assert not index.conflicts(at("2026-03-10 12:00"), at("2026-03-10 12:15"))
    assert not index.conflicts(at("2026-03-10 09:45"), at("2026-03-10 10:00"))
    assert index.conflicts(at("2026-03-10 12:00"), at("2026-03-10 12:15"), margin=timedelta(minutes=1))
    index.add(at("2026-03-10 12:00"), at("2026-03-10 12:30"))
    assert index.conflicts(at("2026-03-10 12:15"), at("2026-03-10 12:20"))
    assert not index.conflicts(at("2026-03-10 12:30"), at("2026-03-10 13:00"))


def test_busy_index_long_block_before_short_ones():
    """A long block that began long ago is still found behind many later short ones."""
    spans = [("2026-03-01 00:00", "2026-03-20 00:00")] + [
        (f"2026-03-1{d} 10:00", f"2026-03-1{d} 10:30") for d in range(9)
    ]
    index = placement.BusyIndex(busy(*spans))
    assert index.conflicts(at("2026-03-19 15:00"), at("2026-03-19 15:15"))
    assert not index.conflicts(at("2026-03-20 00:00"), at("2026-03-20 00:15"))


def test_place_never_stacks_calls():
    """Calls due together go in consecutive free slots, skipping busy time and taken slots."""
    needs = [need("a", "2026-03-10 08:00"), need("b", "2026-03-10 08:00"), need("c", "2026-03-10 08:00")]
    placed = placement.place(
        needs,
        now=at("2026-03-10 08:00"),
        hours=HOURS,
        busy=busy(("2026-03-10 09:15", "2026-03-10 10:00")),
        taken=[at("2026-03-10 09:00")],
    )
    assert placed == {"a": at("2026-03-10 10:00"), "b": at("2026-03-10 10:15"), "c": at("2026-03-10 10:30")}


def test_place_at_or_after_due_and_now():
    """A call goes no earlier than its due time, nor before now."""
    placed = placement.place(
        [need("future", "2026-03-12 13:07"), need("past", "2026-03-01 10:00")],
        now=at("2026-03-10 11:20"),
        hours=HOURS,
        busy=[],
    )
    assert placed == {"future": at("2026-03-12 13:15"), "past": at("2026-03-10 11:30")}


def test_late_and_same_day_conflicts_go_at_now():
    """late calls and conflicts about today's appointments go at now (to the minute); later conflicts wait."""
    now = at("2026-03-10 10:17:42")
    needs = [
        need("late", now, Reason.LATE, start="2026-03-10 10:00"),
        need("today", now, Reason.DOUBLE_BOOKED, start="2026-03-10 15:00"),
        need("friday", now, Reason.ACQUAINTED_CONFLICT, start="2026-03-13 15:00"),
    ]
    placed = placement.place(needs, now=now, hours=HOURS, busy=busy(("2026-03-10 10:00", "2026-03-10 10:50")))
    assert placed == {
        "late": at("2026-03-10 10:17"),
        "today": at("2026-03-10 10:17"),
        "friday": at("2026-03-10 11:00"),
    }


def test_place_falls_back_to_due_when_nothing_is_free():
    """With no free slot in the search horizon the call goes at max(due, now)."""
    placed = placement.place(
        [need("a", "2026-03-10 12:00")],
        now=at("2026-03-10 08:00"),
        hours=HOURS,
        busy=busy(("2026-03-01 00:00", "2026-12-01 00:00")),
    )
    assert placed == {"a": at("2026-03-10 12:00")}


def test_place_memo_matches_a_fresh_search():
    """Placing many calls with the shared memo gives what one fresh search per call would."""
    spans = busy(*[(f"2026-03-1{d} {h}:00", f"2026-03-1{d} {h}:50") for d in range(6) for h in (10, 11, 14)])
    dues = [
        "2026-03-10 08:00",
        "2026-03-10 11:05",
        "2026-03-10 08:00",
        "2026-03-11 16:55",
        "2026-03-10 09:00",
    ] * 8
    needs = [need(f"n{i}", due) for i, due in enumerate(dues)]
    now = at("2026-03-10 08:00")
    placed = placement.place(needs, now=now, hours=HOURS, busy=spans)
    index = placement.BusyIndex(spans)
    for n in needs:
        fresh = placement.first_free(max(n.due, now), HOURS, index, M15)
        assert placed[n.key] == fresh
        assert fresh is not None
        index.add(fresh, fresh + M15)


def test_alternatives_clear_of_busy_and_acquaintances():
    """Alternatives skip the appointment's own start, busy time, and keep the gap to acquaintances."""
    conflict = need("x", "2026-03-10 08:00", Reason.ACQUAINTED_CONFLICT, start="2026-03-12 10:50")
    found = placement.alternatives(
        conflict,
        now=at("2026-03-10 08:00"),
        hours=HOURS,
        busy=busy(("2026-03-12 10:00", "2026-03-12 10:50"), ("2026-03-12 11:30", "2026-03-12 12:00")),
        keep_clear=busy(("2026-03-12 10:00", "2026-03-12 10:50")),
        gap=M15,
    )
    # spread (issue 12 item 10): Thursday afternoon, Friday morning, Monday afternoon
    assert found == [at("2026-03-12 12:00"), at("2026-03-13 09:00"), at("2026-03-16 12:00")]


def test_alternatives_start_that_day_but_never_before_now():
    """The search starts at the appointment day's opening, or now if later; count and horizon limit it."""
    conflict = need("x", "2026-03-12 13:02", Reason.DOUBLE_BOOKED, start="2026-03-12 15:00")
    found = placement.alternatives(conflict, now=at("2026-03-12 13:02"), hours=HOURS, busy=[], count=2)
    assert found == [at("2026-03-12 13:15"), at("2026-03-13 09:00")]
    nothing = placement.alternatives(
        conflict,
        now=at("2026-03-12 13:02"),
        hours=HOURS,
        busy=busy(("2026-03-12 00:00", "2026-03-20 00:00")),
        horizon=timedelta(days=3),
    )
    assert nothing == []


def test_alternatives_are_spread_over_days_and_half_days():
    """Three alternatives are never adjacent slots: each on another day, morning and afternoon alternating."""
    conflict = need("x", "2026-03-10 08:00", Reason.DOUBLE_BOOKED, start="2026-03-10 09:00")
    found = placement.alternatives(conflict, now=at("2026-03-10 08:00"), hours=HOURS, busy=[])
    assert found == [at("2026-03-10 09:15"), at("2026-03-11 12:00"), at("2026-03-12 09:00")]
    assert len({f.date() for f in found}) == 3


def test_alternatives_share_a_day_only_when_the_horizon_is_short():
    """With one office day in reach, the alternatives fall back to its two halves, then to any free slot."""
    conflict = need("x", "2026-03-10 08:00", Reason.DOUBLE_BOOKED, start="2026-03-10 09:00")
    found = placement.alternatives(
        conflict, now=at("2026-03-10 08:00"), hours=HOURS, busy=[], horizon=timedelta(hours=8)
    )
    assert found == [at("2026-03-10 09:15"), at("2026-03-10 09:30"), at("2026-03-10 12:00")]
