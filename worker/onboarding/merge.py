"""Merge imported people into clients.toml, keeping ids, her edits and the file's comments.

tomlkit edits the document in place, so comments, key order and formatting survive. Rules:
an entry is the same person when an email matches, else the full name (any case); her values
are never overwritten: new emails are added, a missing phone is filled in only while no call
consent is on file (consent belongs to the number it was given for), a changed phone is
shown and kept, and an active client whom the export lists as inactive becomes discharged
(the safe direction). New people get the next free id and no consent. The lines it returns
name entries by id and alias only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from worker.config import initials
from worker.onboarding.people import Person, Reading, tidy


@dataclass(slots=True)
class Merged:
    text: str
    lines: list[str] = field(default_factory=list)
    added: int = 0
    updated: int = 0
    unchanged: int = 0


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


def _key(name: str) -> str:
    return tidy(name).casefold()


def _alias(entry: Table) -> str:
    return str(entry.get("alias") or initials(str(entry.get("name", ""))))


def _dedupe(people: list[Person], lines: list[str]) -> list[Person]:
    """One Person per email or name; later rows add their emails to the first."""
    kept: list[Person] = []
    for person in people:
        twin = next(
            (
                i
                for i, k in enumerate(kept)
                if set(k.emails) & set(person.emails) or _key(k.name) == _key(person.name)
            ),
            None,
        )
        if twin is None:
            kept.append(person)
            continue
        first = kept[twin]
        lines.append(f"  line {person.line}: the same person as line {first.line} (merged)")
        kept[twin] = Person(
            line=first.line,
            name=first.name,
            preferred=first.preferred or person.preferred,
            emails=tuple(dict.fromkeys(first.emails + person.emails)),
            phone=first.phone or person.phone,
            status=first.status if first.status == person.status else "active",
            members=first.members,
        )
    return kept


class _Roster:
    def __init__(self, doc: tomlkit.TOMLDocument) -> None:
        found = doc.get("clients")
        if found is None:
            found = tomlkit.aot()
            doc.append("clients", found)
        self.entries: AoT = found

    def find(self, person: Person) -> list[Table]:
        wanted = set(person.emails)
        by_email = [e for e in self.entries if wanted & {str(x).lower() for x in e.get("emails", [])}]
        if by_email:
            return by_email
        return [e for e in self.entries if _key(str(e.get("name", ""))) == _key(person.name)]

    def next_id(self) -> str:
        numbers = [int(m.group(1)) for e in self.entries if (m := re.fullmatch(r"c(\d+)", str(e.get("id"))))]
        return f"c{max(numbers, default=0) + 1:03d}"

    def add(self, person: Person, members: list[str]) -> Table:
        entry = tomlkit.table()
        entry.trivia.indent = "\n"  # a blank line before its [[clients]] header
        entry.add(tomlkit.comment("imported: confirm consent_to_call and voicemail_ok with the client"))
        entry.add("id", self.next_id())
        entry.add("name", person.name)
        first = person.name.split()[0]
        if person.preferred and _key(person.preferred) != _key(first) and len(person.name.split()) >= 2:
            entry.add("match", [f"{person.preferred} {person.name.split()[-1]}"])
        if members:
            entry.add("members", members)
        if person.emails:
            entry.add("emails", list(person.emails))
        if person.phone:
            entry.add("phone", person.phone)
        entry.add("consent_to_call", False)
        entry.add("voicemail_ok", False)
        entry.add("status", person.status)
        self.entries.append(entry)
        return self.entries[-1]


def _update(entry: Table, person: Person) -> list[str]:
    said: list[str] = []
    known = [str(x).lower() for x in entry.get("emails", [])]
    new = [e for e in person.emails if e not in known]
    if new:
        if "emails" in entry:
            for email in new:
                entry["emails"].append(email)
        else:
            entry["emails"] = new
        said.append(f"{len(new)} new email(s)")
    phone = str(entry.get("phone", ""))
    if person.phone and not phone and not entry.get("consent_to_call", False):
        entry["phone"] = person.phone
        said.append("phone added")
    elif person.phone and phone and _digits(person.phone) != _digits(phone):
        said.append("phone differs from the export (kept; consent goes with the number it was given for)")
    if person.status == "discharged" and entry.get("status", "active") == "active":
        entry["status"] = "discharged"
        said.append("now discharged (inactive in the export)")
    return said


def merge(existing: str, reading: Reading) -> Merged:
    """The roster text with `reading` merged in, and the lines that describe the change."""
    doc = tomlkit.parse(existing)
    roster = _Roster(doc)
    out = Merged(text="")
    out.lines += [f"  line {line}: {why} (skipped)" for line, why in reading.bad]
    people = _dedupe(reading.people, out.lines)
    # people first, then couples: a couple's members are found among them
    for person in sorted(people, key=lambda p: (bool(p.members), p.line)):
        found = roster.find(person)
        if len(found) > 1:
            out.lines.append(
                f"  line {person.line}: fits {len(found)} roster entries (skipped; merge by hand)"
            )
            continue
        if found:
            before = found[0].as_string()
            said = _update(found[0], person)
            if found[0].as_string() != before:
                out.updated += 1
            else:
                out.unchanged += 1
            if said:
                out.lines.append(f"~ {found[0].get('id')} ({_alias(found[0])}): {'; '.join(said)}")
            continue
        members: list[str] = []
        for name in person.members:
            twin = roster.find(Person(line=person.line, name=name))
            if not twin:
                twin = [roster.add(Person(line=person.line, name=name, status=person.status), [])]
                out.added += 1
                out.lines.append(f"+ {twin[0].get('id')} ({_alias(twin[0])}): new, from a couple card")
            members.append(str(twin[0].get("id")))
        entry = roster.add(person, members if len(members) >= 2 else [])
        out.added += 1
        kind = "new couple/family" if len(members) >= 2 else "new"
        out.lines.append(f"+ {entry.get('id')} ({_alias(entry)}): {kind}, no consent on file yet")
    out.text = tomlkit.dumps(doc)
    return out


def as_plain(text: str) -> dict[str, Any]:
    """The merged document as plain Python values (for tests and validation)."""
    return tomlkit.parse(text).unwrap()
