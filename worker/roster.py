"""The roster: clients, their aliases and acquaintances, and matching events to clients.

Matching order (docs/policy.md "Who is whose appointment"): a client attendee's email, then a
`[c014]`-style id in the title or description, then the full name, alias or a `match` phrase as
whole words in the title. A single first or last name is never enough. When one level names two
clients the event is ambiguous and skipped. Pure: no I/O, no logging (the caller logs the event uid).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from worker.model import Client, ClientId, Event


class Ambiguous(Enum):
    """Marker returned when an event names more than one client."""

    TOKEN = "ambiguous"


AMBIGUOUS = Ambiguous.TOKEN

_ID_TAG = re.compile(r"\[([A-Za-z0-9_.-]+)\]")


def _phrase_pattern(phrases: Iterable[str]) -> re.Pattern[str] | None:
    unique = sorted({p.strip() for p in phrases if p.strip()}, key=lambda p: (-len(p), p))
    if not unique:
        return None
    body = "|".join(re.escape(p) for p in unique)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Roster:
    """Clients by id, with the compiled matchers."""

    clients: Mapping[ClientId, Client]
    _by_email: Mapping[str, ClientId]
    _by_phrase: Mapping[str, frozenset[ClientId]]
    _phrases: re.Pattern[str] | None

    @classmethod
    def of(cls, clients: Iterable[Client]) -> Roster:
        by_id = {c.id: c for c in clients}
        by_email: dict[str, ClientId] = {}
        by_phrase: dict[str, set[ClientId]] = {}
        for client in by_id.values():
            for email in client.emails:
                by_email[email.lower()] = client.id
            words = [client.name, *client.match]
            # An alias of one letter pair ("J.S.") is only safe as a phrase when it has a dot
            # or is at least three characters; "JS" alone is configured through `match`.
            if len(client.alias) >= 3:
                words.append(client.alias)
            for phrase in words:
                if len(phrase.split()) < 2 and phrase == client.name:
                    # a one-word name would match any client sharing it
                    continue
                by_phrase.setdefault(phrase.strip().lower(), set()).add(client.id)
        return cls(
            clients=by_id,
            _by_email=by_email,
            _by_phrase={k: frozenset(v) for k, v in by_phrase.items()},
            _phrases=_phrase_pattern(by_phrase),
        )

    def get(self, client_id: ClientId) -> Client | None:
        return self.clients.get(client_id)

    def match(self, event: Event) -> ClientId | Ambiguous | None:
        """Return the client an event is for, AMBIGUOUS, or None (a personal event)."""
        found = {
            self._by_email[a.email.lower()] for a in event.attendees if a.email.lower() in self._by_email
        }
        if found:
            return found.pop() if len(found) == 1 else AMBIGUOUS
        tagged = {
            ClientId(m) for m in _ID_TAG.findall(f"{event.summary}\n{event.description}")
        } & self.clients.keys()
        if tagged:
            return tagged.pop() if len(tagged) == 1 else AMBIGUOUS
        if self._phrases is None or not event.summary:
            return None
        named: set[ClientId] = set()
        for hit in self._phrases.findall(event.summary):
            named |= self._by_phrase.get(hit.lower(), frozenset())
        if not named:
            return None
        return named.pop() if len(named) == 1 else AMBIGUOUS

    def declined(self, event: Event, client_id: ClientId) -> bool:
        """True when the client's own attendee entry declined the event."""
        client = self.clients.get(client_id)
        if client is None:
            return False
        emails = set(client.emails)
        return any(a.declined for a in event.attendees if a.email.lower() in emails)
