"""The roster: clients, their aliases and acquaintances, and matching events to clients.

Matching order (docs/policy.md "Who is whose appointment"): a client attendee's email, then a `[c014]`-style id in the title
or description, then the full name, alias or a `match` phrase as whole words in the title. A
client's name alone never matches when it is one word (clients share first names), but a
one-word `match` phrase the therapist wrote does. Within one level the most specific entry
wins: the one standing for the fewest people that accounts for everything the event names,
so a title naming both partners of a couple counts for the couple's entry (`members`), and
a session of one partner alone stays that partner's. A true tie is ambiguous and skipped.
Pure: no I/O, no logging (the caller logs the event uid).
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


def phrases_of(client: Client) -> list[str]:
    """The phrases that identify a client in a title (stripped; none of them empty).

    The full name counts when it has two words or more; every `match` phrase counts, one
    word or many (the therapist chose it); an alias counts from three characters.
    """
    out = [p.strip() for p in client.match if p.strip()]
    if len(client.name.split()) >= 2:
        out.append(client.name.strip())
    if len(client.alias.strip()) >= 3:
        out.append(client.alias.strip())
    return out


def shared_one_word(clients: Iterable[Client]) -> list[tuple[str, tuple[ClientId, ...]]]:
    """One-word `match` phrases that two or more entries use (neither wins: both are skipped).

    A couple's entry sharing a phrase with one of its members is not reported: the member wins.
    """
    users: dict[str, set[ClientId]] = {}
    by_id = {c.id: c for c in clients}
    for client in by_id.values():
        for phrase in client.match:
            if len(phrase.split()) == 1:
                users.setdefault(phrase.strip().lower(), set()).add(client.id)
    out = []
    for phrase, ids in sorted(users.items()):
        plain = {i for i in ids if not by_id[i].members}
        if len(plain) >= 2 or (not plain and len(ids) >= 2):
            out.append((phrase, tuple(sorted(ids))))
    return out


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
    _by_email: Mapping[str, frozenset[ClientId]]
    _by_phrase: Mapping[str, frozenset[ClientId]]
    _phrases: re.Pattern[str] | None

    @classmethod
    def of(cls, clients: Iterable[Client]) -> Roster:
        by_id = {c.id: c for c in clients}
        by_email: dict[str, set[ClientId]] = {}
        by_phrase: dict[str, set[ClientId]] = {}
        for client in by_id.values():
            for email in client.emails:
                by_email.setdefault(email.lower(), set()).add(client.id)
            for phrase in phrases_of(client):
                by_phrase.setdefault(phrase.lower(), set()).add(client.id)
        return cls(
            clients=by_id,
            _by_email={k: frozenset(v) for k, v in by_email.items()},
            _by_phrase={k: frozenset(v) for k, v in by_phrase.items()},
            _phrases=_phrase_pattern(by_phrase),
        )

    def get(self, client_id: ClientId) -> Client | None:
        return self.clients.get(client_id)

    def _people(self, client_id: ClientId) -> frozenset[ClientId]:
        client = self.clients.get(client_id)
        return frozenset(client.members) if client is not None and client.members else frozenset({client_id})

    def _resolve(self, hits: list[frozenset[ClientId]]) -> ClientId | Ambiguous | None:
        """The entry for the fewest people that accounts for every hit; None, or AMBIGUOUS on a tie."""
        hits = [h for h in hits if h]
        if not hits:
            return None
        candidates = set().union(*hits) | {c.id for c in self.clients.values() if c.members}
        valid = [
            c for c in candidates if all(any(self._people(x) <= self._people(c) for x in hit) for hit in hits)
        ]
        if not valid:
            return AMBIGUOUS
        fewest = min(len(self._people(c)) for c in valid)
        best = [c for c in valid if len(self._people(c)) == fewest]
        return best[0] if len(best) == 1 else AMBIGUOUS

    def match(self, event: Event) -> ClientId | Ambiguous | None:
        """Return the client (or group) an event is for, AMBIGUOUS, or None (a personal event)."""
        by_email = [self._by_email.get(a.email.lower(), frozenset()) for a in event.attendees]
        found = self._resolve(by_email)
        if found is not None:
            return found
        tags = {ClientId(m) for m in _ID_TAG.findall(f"{event.summary}\n{event.description}")}
        found = self._resolve([frozenset({t}) for t in tags & self.clients.keys()])
        if found is not None:
            return found
        if self._phrases is None or not event.summary:
            return None
        return self._resolve(
            [self._by_phrase.get(hit.lower(), frozenset()) for hit in self._phrases.findall(event.summary)]
        )

    def declined(self, event: Event, client_id: ClientId) -> bool:
        """True when the client's own attendee entry declined the event."""
        client = self.clients.get(client_id)
        if client is None:
            return False
        emails = set(client.emails)
        return any(a.declined for a in event.attendees if a.email.lower() in emails)
