"""`roster suggest`: the client-like appointments no roster entry matches, grouped by label.

Repeated labels (two appointments or more, a recurring series counts each occurrence) become
proposals; a one-word label ("Liam") is proposed as a `match` phrase only when it is
unambiguous in her calendar: in no personal event, in no other label, and not the first or
last name of two roster entries. When exactly one roster entry carries that name, the
proposal is to add the phrase to it rather than a new entry. Consent is never guessed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import tomlkit

from worker.config import Settings, initials
from worker.model import Client, ClientId, Event
from worker.onboarding.events import Labeller, appointment_like, hours_of, markers_of
from worker.roster import Roster


@dataclass(slots=True)
class Group:
    """Unmatched appointments that share a label (or, untitled, an attendee address)."""

    label: str
    count: int
    first: datetime
    last: datetime
    emails: tuple[str, ...] = ()
    near: tuple[ClientId, ...] = ()  # roster entries whose name shares a word with the label
    why_not: str = ""  # why it is not proposed ("" when it is)
    add_to: ClientId | None = None  # proposed as a match phrase for this existing entry
    titled: bool = True  # False: untitled appointments grouped by an attendee address

    @property
    def proposed(self) -> bool:
        return not self.why_not


@dataclass(slots=True)
class _Seen:
    spellings: Counter[str] = field(default_factory=Counter)
    starts: list[datetime] = field(default_factory=list)
    emails: Counter[str] = field(default_factory=Counter)


def suggest(events: Iterable[Event], clients: Iterable[Client], settings: Settings) -> list[Group]:
    """The groups of unmatched appointment-like events, most appointments first."""
    clients = tuple(clients)
    roster = Roster.of(clients)
    hours = hours_of(settings)
    labeller = Labeller(markers_of(settings))
    personal: set[str] = set()
    seen: dict[str, _Seen] = {}
    labels_of_email: dict[str, set[str]] = {}
    known = {e for c in clients for e in c.emails}
    for event in events:
        if not appointment_like(event, hours):
            personal |= {w.casefold() for w in Labeller.words(event.summary)}
            continue
        if roster.match(event) is not None:
            continue  # matched, or ambiguous (check reports those)
        label = labeller.label(event.summary)
        emails = sorted({a.email.lower() for a in event.attendees if a.email} - known)
        key = label.casefold() or (f"@{emails[0]}" if emails else "")
        if not key:
            continue
        group = seen.setdefault(key, _Seen())
        group.spellings[label or emails[0]] += 1
        group.starts.append(event.start)
        group.emails.update(emails)
        for email in emails:
            labels_of_email.setdefault(email, set()).add(key)
    # an address on many different labels is the therapist's own (or a shared room)
    shared = {e for e, keys in labels_of_email.items() if len(keys) >= 3}
    name_words: dict[str, set[ClientId]] = {}
    for client in clients:
        for word in Labeller.words(client.name):
            name_words.setdefault(word.casefold(), set()).add(client.id)
    out = []
    for key, group in seen.items():
        label = group.spellings.most_common(1)[0][0]
        words = [w.casefold() for w in Labeller.words(label)]
        near = sorted({i for w in words for i in name_words.get(w, set())})
        addresses = tuple(
            e for e, n in group.emails.items() if e not in shared and 2 * n >= len(group.starts)
        )
        found = Group(
            label=label,
            count=len(group.starts),
            first=min(group.starts),
            last=max(group.starts),
            emails=addresses,
            near=tuple(ClientId(i) for i in near),
            titled=not key.startswith("@"),
        )
        if found.count < 2:
            found.why_not = "seen once"
        elif len(words) == 1 and not key.startswith("@"):
            word = words[0]
            others = [k for k in seen if k != key and word in {w.casefold() for w in Labeller.words(k)}]
            if word in personal:
                found.why_not = "the word also appears in personal events"
            elif others:
                found.why_not = "the word is part of another title too"
            elif len(near) >= 2:
                found.why_not = f"the first or last name of {len(near)} roster entries"
            elif len(near) == 1:
                found.add_to = ClientId(near[0])
        out.append(found)
    return sorted(out, key=lambda g: (-g.count, g.label.casefold()))


def _next_ids(clients: Iterable[Client]) -> Iterable[str]:
    numbers = [int(m.group(1)) for c in clients if (m := re.fullmatch(r"c(\d+)", c.id))]
    n = max(numbers, default=0)
    while True:
        n += 1
        yield f"c{n:03d}"


def draft(groups: Iterable[Group], clients: Iterable[Client], roster: Roster, today: str) -> str:
    """A draft clients.toml holding the proposals (consent false until she confirms it)."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"Draft roster written by `callsheet roster suggest` on {today}."))
    doc.add(tomlkit.comment("Check every entry: the name is the calendar's title, not a full name."))
    doc.add(tomlkit.comment("consent_to_call and voicemail_ok stay false until the client has agreed."))
    doc.add(tomlkit.comment("Then copy the entries into the roster file that config.toml names."))
    groups = list(groups)
    for group in groups:
        if group.proposed and group.add_to is not None:
            client = roster.get(group.add_to)
            alias = client.alias if client else ""
            doc.add(tomlkit.comment(f"add to {group.add_to} ({alias}): match = [{group.label!r}]"))
    for group in groups:
        if not group.proposed:
            doc.add(tomlkit.comment(f"not proposed: {group.label!r} x{group.count} ({group.why_not})"))
    entries = tomlkit.aot()
    ids = iter(_next_ids(clients))
    for group in groups:
        if not group.proposed or group.add_to is not None:
            continue
        entry = tomlkit.table()
        entry.add(
            tomlkit.comment(f"{group.count} appointments, {group.first:%Y-%m-%d} to {group.last:%Y-%m-%d}")
        )
        entry.add("id", next(ids))
        entry.add("name", group.label)
        entry.add("alias", initials(group.label if group.titled else group.label.split("@")[0]))
        if group.titled:
            entry.add("match", [group.label])
        if group.emails:
            entry.add("emails", list(group.emails))
        entry.add("phone", "")
        entry.add("consent_to_call", False)
        entry.add("voicemail_ok", False)
        entry.add("status", "active")
        entries.append(entry)
    if entries:
        doc.add(tomlkit.nl())
        doc.append("clients", entries)
    return tomlkit.dumps(doc)
