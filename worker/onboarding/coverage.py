"""Match coverage: how many appointment-like events matched a client, for `check` and `status`.

Counts and the most frequent unmatched labels go to the terminal only; the log gets counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from worker.config import Settings
from worker.model import Client, Event
from worker.onboarding.events import Labeller, appointment_like, hours_of, markers_of
from worker.roster import AMBIGUOUS, Roster, shared_one_word

TOP = 10


@dataclass(slots=True)
class Coverage:
    matched: int = 0
    unmatched: int = 0
    ambiguous: int = 0
    top: list[tuple[str, int]] = field(default_factory=list)  # unmatched labels, most frequent first
    personal_phrases: list[str] = field(default_factory=list)  # one-word phrases seen in personal events

    @property
    def looked_at(self) -> int:
        return self.matched + self.unmatched + self.ambiguous


def measure(events: Iterable[Event], clients: Iterable[Client], settings: Settings) -> Coverage:
    """Coverage of the appointment-like events among `events`."""
    roster = Roster.of(clients)
    hours = hours_of(settings)
    labeller = Labeller(markers_of(settings))
    out = Coverage()
    unmatched: Counter[str] = Counter()
    one_word = {p.strip().lower(): p for c in roster.clients.values() for p in c.match if len(p.split()) == 1}
    personal: set[str] = set()
    for event in events:
        if not appointment_like(event, hours):
            words = {w.lower() for w in Labeller.words(event.summary)}
            personal |= {one_word[w] for w in words & one_word.keys()}
            continue
        found = roster.match(event)
        if found is AMBIGUOUS:
            out.ambiguous += 1
        elif found is None:
            out.unmatched += 1
            unmatched[labeller.label(event.summary) or "(no title)"] += 1
        else:
            out.matched += 1
    out.top = sorted(unmatched.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
    out.personal_phrases = sorted(personal)
    return out


def lines(coverage: Coverage, clients: Iterable[Client]) -> list[str]:
    """The coverage as terminal lines (labels included: terminal only)."""
    out = [
        f"{coverage.matched} of {coverage.looked_at} appointment-like events in the window matched a client; "
        f"{coverage.unmatched} did not, {coverage.ambiguous} named more than one"
    ]
    if coverage.top:
        out.append(
            "most frequent unmatched titles: " + ", ".join(f"{label!r} x{n}" for label, n in coverage.top)
        )
    for phrase, ids in shared_one_word(clients):
        out.append(
            f"warning: the one-word phrase {phrase!r} belongs to {', '.join(ids)}: it matches none of them"
        )
    for phrase in coverage.personal_phrases:
        out.append(f"warning: the one-word phrase {phrase!r} also appears in personal events")
    if coverage.unmatched or not coverage.matched:
        out.append("`callsheet roster suggest` lists the unmatched appointments and drafts roster entries")
    return out


def check_lines(settings: Settings, events: Iterable[Event]) -> tuple[bool, list[str]]:
    """(ok, lines) for `check`: a roster that matches none of the appointments fails."""
    coverage = measure(events, settings.clients, settings)
    ok = coverage.matched > 0 or coverage.looked_at == 0
    return ok, lines(coverage, settings.clients)
