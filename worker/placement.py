"""Where a call goes: the first free slot inside office hours, and alternative slots.

Pure: busy time and `now` come in as arguments. Times are searched in the practice's time
zone so office hours mean wall-clock hours across DST changes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from worker.model import Busy, CallNeed, Reason

_SEARCH_DAYS = 120


@dataclass(frozen=True, slots=True)
class Hours:
    """Office hours: weekdays (Monday = 0) and a daily start and end, in `tz`."""

    tz: ZoneInfo
    weekdays: frozenset[int]
    start: time
    end: time
    slot: timedelta = timedelta(minutes=15)

    def contains(self, start: datetime, end: datetime) -> bool:
        """True when [start, end) lies inside one office day."""
        local_start, local_end = start.astimezone(self.tz), end.astimezone(self.tz)
        return (
            local_start.weekday() in self.weekdays
            and local_start.date() == local_end.date()
            and self.start <= local_start.time()
            and local_end.time() <= self.end
        )


class BusyIndex:
    """Busy time as sorted, disjoint intervals: an overlap query is one binary search.

    Overlapping intervals are merged as they come in, so one long block (a day off, a
    retreat) costs no more to query than a short one. Intervals that only touch stay apart:
    [9:00, 10:00) and [10:00, 11:00) leave 10:00 exactly free for nothing of positive length.
    """

    def __init__(self, busy: Iterable[Busy]) -> None:
        self._starts: list[datetime] = []
        self._ends: list[datetime] = []  # non-decreasing, like the starts
        for start, end in sorted((_utc(b.start), _utc(b.end)) for b in busy):
            if self._ends and start < self._ends[-1]:
                self._ends[-1] = max(self._ends[-1], end)
            else:
                self._starts.append(start)
                self._ends.append(end)

    def add(self, start: datetime, end: datetime) -> None:
        """Mark [start, end) busy."""
        start, end = _utc(start), _utc(end)
        lo = bisect.bisect_right(self._ends, start)  # the first interval ending after `start`
        hi = bisect.bisect_left(self._starts, end)  # intervals before `hi` begin before `end`
        if lo < hi:  # lo..hi-1 share time with [start, end): merge them into one
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def conflicts(self, start: datetime, end: datetime, margin: timedelta = timedelta(0)) -> bool:
        """True when [start - margin, end + margin) shares any time with a busy interval."""
        lo, hi = _utc(start) - margin, _utc(end) + margin
        i = bisect.bisect_left(self._starts, hi) - 1  # the last interval beginning before `hi`
        return i >= 0 and self._ends[i] > lo  # ends are sorted: the latest end is the last one


def _utc(moment: datetime) -> datetime:
    # one zone for every stored time: comparisons within one tzinfo are plain and fast (and
    # never naive wall-clock comparisons, which go wrong in the repeated hour of a DST change)
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _ceil(moment: datetime, step: timedelta, tz: ZoneInfo) -> datetime:
    local = moment.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    offset = local - midnight
    steps = -(-offset // step)
    return (midnight + steps * step).astimezone(tz)


def _candidates(start: datetime, hours: Hours, length: timedelta) -> Iterable[datetime]:
    """Slot starts at or after `start`, inside office hours, in wall-clock order."""
    day = start.astimezone(hours.tz).date()
    first = _ceil(start, hours.slot, hours.tz)
    for _ in range(_SEARCH_DAYS):
        if day.weekday() in hours.weekdays:
            open_at = datetime.combine(day, hours.start, hours.tz)
            close_at = datetime.combine(day, hours.end, hours.tz)
            at = max(open_at, first)
            while at + length <= close_at:
                yield at
                at = (at + hours.slot).astimezone(hours.tz)
        day += timedelta(days=1)


def first_free(
    after: datetime,
    hours: Hours,
    busy: BusyIndex,
    length: timedelta,
    *,
    known: dict[datetime, datetime] | None = None,
) -> datetime | None:
    """The first slot of `length` at or after `after` inside office hours with nothing busy.

    `known` is a memo shared by searches over one BusyIndex that only grows: it maps a slot
    to a later slot with nothing free in between, so a run of calls placed from the same
    moment does not re-walk the slots already taken (placement stays linear, not quadratic).
    """
    memo = {} if known is None else known
    stop_day = after.astimezone(hours.tz).date() + timedelta(days=_SEARCH_DAYS)
    passed: list[datetime] = []
    begin = after
    while True:
        for at in _candidates(begin, hours, length):
            if at.date() >= stop_day:
                return None
            jump = memo.get(at)
            if jump is not None and jump > at:
                passed.append(at)
                begin = jump
                break
            if not busy.conflicts(at, at + length):
                for slot in passed:
                    memo[slot] = at
                return at
            if not passed:
                passed.append(at)
        else:
            return None


def is_immediate(need: CallNeed, now: datetime, tz: ZoneInfo) -> bool:
    """`late` calls and same-day conflicts go at `now`, not at the next free slot."""
    if need.reason is Reason.LATE:
        return True
    if need.reason in (Reason.DOUBLE_BOOKED, Reason.ACQUAINTED_CONFLICT):
        return need.appointment_start.astimezone(tz).date() == now.astimezone(tz).date()
    return False


def place(
    needs: Sequence[CallNeed],
    *,
    now: datetime,
    hours: Hours,
    busy: Iterable[Busy],
    taken: Iterable[datetime] = (),
    length: timedelta = timedelta(minutes=15),
) -> dict[str, datetime]:
    """Return a start time per need key.

    Each call goes at the first free slot at or after max(due, now) inside office hours,
    skipping busy time and calls already placed (`taken` and the ones placed here): calls
    never stack. `late` and same-day conflicts go at `now`. A need with no free slot in the
    search horizon goes at max(due, now).
    """
    index = BusyIndex(busy)
    for start in taken:
        index.add(start, start + length)
    out: dict[str, datetime] = {}
    known: dict[datetime, datetime] = {}  # valid while `index` only grows (see first_free)
    for need in needs:
        if is_immediate(need, now, hours.tz):
            at = now.replace(second=0, microsecond=0).astimezone(hours.tz)
        else:
            found = first_free(max(need.due, now), hours, index, length, known=known)
            at = found if found is not None else max(need.due, now).astimezone(hours.tz)
        out[need.key] = at
        index.add(at, at + length)
    return out


def alternatives(
    need: CallNeed,
    *,
    now: datetime,
    hours: Hours,
    busy: Iterable[Busy],
    keep_clear: Iterable[Busy] = (),
    gap: timedelta = timedelta(0),
    horizon: timedelta = timedelta(days=14),
    count: int = 3,
) -> list[datetime]:
    """Up to `count` free starts for the called client's appointment that conflict with nobody.

    The search starts at the appointment's day (never before now) and steps through office
    hours; a slot must not overlap anything busy (the called appointment itself excluded by
    the caller) and must keep `gap` clear of `keep_clear` (the acquaintances' appointments).
    The choices are spread, so the client gets a real choice: the first free time, then each
    further one on another day and in the other half of the day (morning / afternoon); only
    when the horizon has too few such days do they share a day, and then a half-day.
    """
    length = need.appointment_end - need.appointment_start
    index = BusyIndex(busy)
    clear = BusyIndex(keep_clear)
    day_start = datetime.combine(need.appointment_start.astimezone(hours.tz).date(), hours.start, hours.tz)
    begin = max(day_start, now)
    limit = begin + horizon
    free: list[datetime] = []
    for at in _candidates(begin, hours, length):
        if at > limit:
            break
        if at == need.appointment_start:
            continue
        if index.conflicts(at, at + length) or clear.conflicts(at, at + length, gap):
            continue
        free.append(at)
    return _spread(free, hours.tz, count)


def _spread(free: Sequence[datetime], tz: ZoneInfo, count: int) -> list[datetime]:
    """Pick up to `count` of the sorted `free` starts, as far apart in kind as they allow."""

    def half(at: datetime) -> tuple[object, bool]:
        local = at.astimezone(tz)
        return local.date(), local.hour >= 12  # (day, afternoon)

    picked: list[datetime] = []
    # strictness 0: a new day and the other half-day; 1: a new day; 2: a new half-day; 3: any
    for strictness in range(4):
        for at in free:
            if len(picked) >= count:
                return sorted(picked)
            if at in picked:
                continue
            day, afternoon = half(at)
            days = {half(p)[0] for p in picked}
            if strictness <= 1 and day in days:
                continue
            if strictness == 0 and picked and afternoon == half(picked[-1])[1]:
                continue
            if strictness == 2 and (day, afternoon) in {half(p) for p in picked}:
                continue
            picked.append(at)
    return sorted(picked)
