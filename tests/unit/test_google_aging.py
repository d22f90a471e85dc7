"""The Google source's aged-out rule: an absent object whose last end seen is at or before the new
window start (Google's timeMin is exclusive on an instance's end) aged out; unknown ends never do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from connectors.google.source import _aged, _known, _start

START = datetime(2026, 3, 11, 5, 0, tzinfo=UTC)


def test_an_end_at_the_window_start_is_aged_and_one_after_it_is_not() -> None:
    """Ending exactly at the new start: Google no longer lists it; a minute later: it would be listed."""
    # research/google-api.md, "timeMin / timeMax semantics": timeMin is an exclusive lower bound
    # on an event's end (events.list discovery doc)
    known = {"a": START.isoformat(), "b": (START + timedelta(minutes=1)).isoformat()}
    assert _aged(known, "a", START) and not _aged(known, "b", START)


def test_unknown_unreadable_or_naive_ends_never_age() -> None:
    """An end the cursor does not know (None, missing, garbage, no offset) keeps the old rule: absent is removed."""
    known = {"none": None, "junk": "yesterday", "naive": "2026-03-01T10:00:00"}
    assert not any(_aged(known, item, START) for item in ("none", "junk", "naive", "missing"))
    assert not _aged(None, "a", START)


@given(st.integers(min_value=-10_000, max_value=10_000))
def test_offsets_do_not_matter(minutes: int) -> None:
    """The same instant written in another offset ages exactly as in UTC."""
    end = START + timedelta(minutes=minutes)
    chicago = end.astimezone(datetime.fromisoformat("2026-01-01T00:00:00-06:00").tzinfo)
    assert _aged({"a": chicago.isoformat()}, "a", START) == (end <= START)


def test_cursor_items_and_window_are_read_defensively() -> None:
    """A list (version 2) is no mapping of ends; a window without an offset gives no start."""
    assert _known(["a"]) is None and _known({"a": 3, "b": "x"}) == {"a": None, "b": "x"}
    assert _start([START.isoformat(), "x"]) == START
    assert _start(["2026-03-11T00:00:00"]) is None and _start("x") is None and _start([]) is None
