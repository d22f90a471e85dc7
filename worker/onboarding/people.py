"""Read a client list exported from an EHR (CSV) or a contacts app (vCard 3.0/4.0) into Persons.

CSV: the header names the columns; the usual EHR spellings are accepted (First Name / Last
Name / Name / Client, Preferred Name, Email, Phone / Mobile, Status), including the
SimplePractice client list ("Client" as "Last, First", "Client Type" = Couple). A row without
a name is reported by its line number, never by what it holds.

vCard: FN or N, NICKNAME, EMAIL, TEL, CATEGORIES (parsed with vobject). When any card carries
a category mentioning "client", only such cards are read (the rest are personal contacts).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import vobject  # type: ignore[import-untyped]

Status = Literal["active", "discharged"]

_COLUMNS: dict[str, tuple[str, ...]] = {
    "first": ("first name", "firstname", "given name", "legal first name", "first"),
    "middle": ("middle name", "middlename", "middle"),
    "last": ("last name", "lastname", "surname", "family name", "legal last name", "last"),
    "name": ("name", "client", "client name", "full name", "display name"),
    "preferred": ("preferred name", "preferred", "nickname", "goes by", "what name do they go by?"),
    "email": ("email", "e-mail", "email address", "primary email", "client email"),
    "phone": (
        "mobile",
        "mobile phone",
        "cell",
        "cell phone",
        "phone",
        "phone number",
        "primary phone",
        "home phone",
        "client phone",
    ),
    "status": ("status", "client status"),
    "type": ("client type", "type"),
}
_GONE = ("inactive", "discharged", "archived", "former", "closed", "terminated")
_COUPLE = re.compile(r"\s*(?:&|\+|\band\b)\s*", re.IGNORECASE)


class PeopleError(Exception):
    """The file cannot be read at all (the message names the file, never its contents)."""


@dataclass(frozen=True, slots=True)
class Person:
    """One person (or a couple) from an export; `line` is where the row or card starts."""

    line: int
    name: str
    preferred: str = ""
    emails: tuple[str, ...] = ()
    phone: str = ""
    status: Status = "active"
    # a couple or family card: the people's full names ("Sam & Kim Lee" -> Sam Lee, Kim Lee)
    members: tuple[str, ...] = ()


@dataclass(slots=True)
class Reading:
    people: list[Person] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line, what is wrong)
    skipped: int = 0  # personal contacts left out of a vCard file


def tidy(text: str) -> str:
    return " ".join(text.split())


def _status(text: str) -> Status:
    low = text.lower()
    return "discharged" if any(word in low for word in _GONE) else "active"


def split_couple(name: str) -> tuple[str, ...]:
    """'Sam & Kim Lee' -> ('Sam Lee', 'Kim Lee'); a plain name -> ()."""
    parts = [tidy(p) for p in _COUPLE.split(name) if tidy(p)]
    if len(parts) < 2:
        return ()
    family = parts[-1].split()[-1] if len(parts[-1].split()) >= 2 else ""
    return tuple(f"{p} {family}" if len(p.split()) == 1 and family else p for p in parts)


def _emails(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(e.lower() for e in re.split(r"[;,\s]+", text) if "@" in e))


def read_people(path: Path) -> Reading:
    """Read a .csv or .vcf file (by its name, else by its first line)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PeopleError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # Excel on Windows
    if path.suffix.lower() in (".vcf", ".vcard") or text.lstrip().upper().startswith("BEGIN:VCARD"):
        return read_vcard(text)
    try:
        return read_csv(text)
    except csv.Error as exc:  # its message may quote the data: only the line is kept
        raise PeopleError(f"{path}: not readable as CSV near line {_csv_line(exc)}") from None


def _csv_line(exc: csv.Error) -> str:
    found = re.search(r"line (\d+)", str(exc))
    return found.group(1) if found else "?"


def read_csv(text: str) -> Reading:
    """Rows of an EHR client list; the header picks the columns."""
    out = Reading()
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = next(reader, None)
    if header is None:
        return out
    columns: dict[str, int] = {}
    names = [tidy(h).lower().rstrip(":*") for h in header]
    for role, spellings in _COLUMNS.items():
        for spelling in spellings:
            if spelling in names:
                columns[role] = names.index(spelling)
                break
    if "name" not in columns and "first" not in columns and "last" not in columns:
        raise PeopleError("no name column (expected First Name / Last Name, Name or Client)")
    start = reader.line_num + 1
    for row in reader:
        line, start = start, reader.line_num + 1

        def cell(role: str, row: list[str] = row) -> str:
            index = columns.get(role)
            return tidy(row[index]) if index is not None and index < len(row) else ""

        if not any(c.strip() for c in row):
            continue
        name = tidy(" ".join(cell(r) for r in ("first", "middle", "last") if cell(r)))
        if not name:
            name = cell("name")
            if "," in name and not _COUPLE.search(name):
                last, _, first = name.partition(",")  # "Lee, Sam" as client lists print it
                name = tidy(f"{first} {last}")
        if not name:
            out.bad.append((line, "no name"))
            continue
        couple = cell("type").lower() in ("couple", "family") or bool(split_couple(name))
        out.people.append(
            Person(
                line=line,
                name=name,
                preferred=cell("preferred"),
                emails=_emails(cell("email")),
                phone=cell("phone"),
                status=_status(cell("status")),
                members=split_couple(name) if couple else (),
            )
        )
    return out


def read_vcard(text: str) -> Reading:
    """Cards of a contacts export (vCard 3.0 or 4.0)."""
    out = Reading()
    text = text.lstrip("\ufeff")
    marks = [m.start() for m in re.finditer(r"(?im)^BEGIN:VCARD[ \t]*\r?$", text)]
    cards: list[tuple[int, object]] = []
    for begin, end in zip(marks, [*marks[1:], len(text)], strict=True):
        line = text.count("\n", 0, begin) + 1
        try:
            card = vobject.readOne(text[begin:end])
        except Exception:  # noqa: BLE001 - vobject raises many kinds; its messages echo the data
            out.bad.append((line, "not a readable vCard"))
            continue
        cards.append((line, card))
    tagged = any("client" in c.lower() for _, card in cards for c in _values(card, "categories"))
    for line, card in cards:
        categories = [c.lower() for c in _values(card, "categories")]
        if tagged and not any("client" in c for c in categories):
            out.skipped += 1
            continue
        name = tidy(" ".join(_values(card, "fn")[:1]))
        if not name:
            name = _n_name(card)
        if not name:
            out.bad.append((line, "no FN or N"))
            continue
        phones = _phones(card)
        out.people.append(
            Person(
                line=line,
                name=name,
                preferred=tidy(" ".join(_values(card, "nickname")[:1])),
                emails=tuple(dict.fromkeys(e.lower() for e in _values(card, "email") if "@" in e)),
                phone=phones[0] if phones else "",
                status=_status(" ".join(categories)),
                members=split_couple(name),
            )
        )
    return out


def _values(card: object, key: str) -> list[str]:
    out: list[str] = []
    for item in getattr(card, "contents", {}).get(key, []):
        value = item.value
        if isinstance(value, list):
            out += [tidy(str(v)) for v in value if tidy(str(v))]
        elif isinstance(value, str) and tidy(value):
            out += [tidy(v) for v in value.split(",")] if key == "categories" else [tidy(value)]
    return out


def _n_name(card: object) -> str:
    for item in getattr(card, "contents", {}).get("n", []):
        value = item.value
        return tidy(f"{getattr(value, 'given', '')} {getattr(value, 'family', '')}")
    return ""


def _phones(card: object) -> list[str]:
    found: list[tuple[int, str]] = []
    for item in getattr(card, "contents", {}).get("tel", []):
        if not isinstance(item.value, str) or not item.value.strip():
            continue
        kinds = " ".join(item.params.get("TYPE", [])).lower()
        rank = 0 if ("cell" in kinds or "mobile" in kinds) else 1
        found.append((rank, tidy(item.value.removeprefix("tel:"))))
    return [number for _, number in sorted(found, key=lambda f: f[0])]
