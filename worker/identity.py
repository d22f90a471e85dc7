"""Who owns a reminder item, and what it is called: UIDs, resource names, owner marks.

Pure (no I/O). `docs/design.md` "Reminder identity" documents the forms:

- the *need* is identified by its key (`worker.model.reminder_key`);
- every written *item* has a UID and a resource name of its own, which carry the key, the item
  kind and a generation: `callsheet-<key>-e<generation>` for an event, `-t<generation>` for a
  task. An item written again after a withdrawal or a deletion gets the next generation, so a
  server that reserves deleted ids (Google) or keeps them in a trash bin (Nextcloud) never sees
  the same name twice, and an event and its task never share a UID (Cyrus, iCloud).
- generation 0 is the form earlier versions wrote (`callsheet-<key>` for both kinds, without an
  owner mark): still recognised and adopted, never written again.
- the owner mark (`X-CALLSHEET-OWNER`) is derived from the identity of the configured source, so
  a rebuilt state still recognises its own items and another installation's items are never
  touched.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from worker.model import ItemKind, ItemName, Managed, ReminderKey

UID_PREFIX = "callsheet-"
LEGACY_GENERATION = 0
FIRST_GENERATION = 1
_KIND_LETTER: dict[ItemKind, str] = {"event": "e", "task": "t"}
_LETTER_KIND: dict[str, ItemKind] = {"e": "event", "t": "task"}
_UID = re.compile(r"^callsheet-(?P<key>[0-9a-v]{26})(?:-(?P<kind>[et])(?P<gen>[1-9][0-9]{0,8}))?$")
_GOOGLE_ID = re.compile(r"^(?P<key>[0-9a-v]{26})(?:(?P<kind>e)(?P<gen>[1-9][0-9]{0,8}))?$")


def item_uid(key: str, kind: ItemKind, generation: int) -> str:
    """The UID of one incarnation of one item (generation 0: the legacy shared form)."""
    if generation <= LEGACY_GENERATION:
        return f"{UID_PREFIX}{key}"
    return f"{UID_PREFIX}{key}-{_KIND_LETTER[kind]}{generation}"


def file_name(key: str, kind: ItemKind, generation: int) -> str:
    """The resource name of an item in a folder or a CalDAV collection."""
    return f"{item_uid(key, kind, generation)}.ics"


def google_event_id(key: str, generation: int) -> str:
    """A Google Calendar event id: base32hex only (0-9, a-v), 5 to 1024 characters."""
    if generation <= LEGACY_GENERATION:
        return key
    return f"{key}e{generation}"


def parse_uid(uid: str) -> ItemName | None:
    """Read a UID written by callsheet (any generation); None for anything else."""
    found = _UID.match(uid)
    if found is None:
        return None
    letter, gen = found.group("kind"), found.group("gen")
    if letter is None:
        return ItemName(ReminderKey(found.group("key")), None, LEGACY_GENERATION)
    return ItemName(ReminderKey(found.group("key")), _LETTER_KIND[letter], int(gen))


def parse_file_name(name: str) -> ItemName | None:
    """Read a resource name (`<uid>.ics`); None when it is not one callsheet writes."""
    if not name.endswith(".ics"):
        return None
    return parse_uid(name[: -len(".ics")])


def parse_google_event_id(event_id: str) -> ItemName | None:
    """Read a Google event id written by callsheet; None for anything else."""
    found = _GOOGLE_ID.match(event_id)
    if found is None:
        return None
    if found.group("kind") is None:
        return ItemName(ReminderKey(found.group("key")), "event", LEGACY_GENERATION)
    return ItemName(ReminderKey(found.group("key")), "event", int(found.group("gen")))


def owner_mark(identities: Iterable[str]) -> str:
    """This installation's mark: a short hash over the identities of its configured sources.

    The identities are normalised spellings (`connectors.base.source_identities`), so the mark
    survives a lost state and a restart, and differs between two practices.
    """
    joined = "\n".join(sorted(set(identities)))
    return hashlib.sha256(f"callsheet-owner\n{joined}".encode()).hexdigest()[:16]


def foreign_reason(item: Managed, owner: str) -> str:
    """Why `item` is not ours ("" when it is).

    An item is ours only when its key, UID, resource name and owner mark agree with what
    callsheet writes. `name` is what the sink read from the item's resource name (None when
    the sink has no names of its own, such as Google Tasks, whose ids the server picks).
    Legacy items (generation 0) carry no owner mark and are recognised by UID and name alone.
    """
    from_uid = parse_uid(item.uid)
    if from_uid is None or from_uid.key != item.key:
        return "uid"
    if from_uid.kind is not None and from_uid.kind != item.kind:
        return "uid"
    if from_uid.generation != item.generation:
        return "uid"
    name = item.named
    if name is not None and (name.key != item.key or name.generation != item.generation):
        return "name"
    if item.generation == LEGACY_GENERATION:
        return "" if item.owner in ("", owner) else "owner"
    return "" if item.owner == owner else "owner"
