"""What the onboarding tools look at in a calendar: appointment-like events and their labels.

An event is appointment-like when it blocks time (not transparent), lasts 15 minutes to three
hours and starts inside office hours; cancelled ones count (a cancelled session is still a
session). A label is the title without marker words, times, `[id]` tags and generic words
such as "session": "Liam 2pm", "Liam - cancelled" and "Liam session" all read "Liam".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta

from worker.attendance import MarkerRules
from worker.config import Settings
from worker.model import Event
from worker.placement import Hours

_TIME = re.compile(r"(?<!\w)\d{1,2}(?:[:.h]\d{2})?\s*(?:am|pm|a\.m\.|p\.m\.)?(?!\w)", re.IGNORECASE)
_GENERIC = (
    "session",
    "sessions",
    "appt",
    "appointment",
    "therapy",
    "intake",
    "follow-up",
    "follow up",
    "f/u",
    "telehealth",
    "video",
    "in person",
    "zoom",
)


def hours_of(settings: Settings) -> Hours:
    office = settings.practice.office_hours
    return Hours(tz=settings.practice.tz, weekdays=office.weekdays, start=office.start, end=office.end)


def markers_of(settings: Settings) -> MarkerRules:
    m = settings.markers
    return MarkerRules(no_show=m.no_show, cancelled=m.cancelled, arrived=m.arrived)


def appointment_like(event: Event, hours: Hours) -> bool:
    """Looks like a client session: blocks time, 15 minutes to 3 hours, inside office hours."""
    if event.transparent:
        return False
    if not timedelta(minutes=15) <= event.end - event.start <= timedelta(hours=3):
        return False
    local = event.start.astimezone(hours.tz)
    return local.weekday() in hours.weekdays and hours.start <= local.time() < hours.end


def _words_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    unique = sorted({w.strip() for w in words if w.strip()}, key=lambda w: (-len(w), w))
    if not unique:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in unique) + r")(?!\w)", re.IGNORECASE)


class Labeller:
    """Turns titles into labels (see the module docstring)."""

    def __init__(self, markers: MarkerRules) -> None:
        self._noise = _words_pattern([*markers.no_show, *markers.cancelled, *markers.arrived, *_GENERIC])

    @staticmethod
    def words(title: str) -> list[str]:
        return re.findall(r"\w+", title)

    def label(self, title: str) -> str:
        text = re.sub(r"\[[^\]]*\]", " ", title)
        if self._noise is not None:
            text = self._noise.sub(" ", text)
        text = _TIME.sub(" ", text)
        text = re.sub(r"[\-–—:|/()!?,.;*#]+", " ", text)
        return " ".join(text.split())
