"""The ids the state keeps for source objects: a digest, never the file name, href or event id.

A file name (`Avery Quinn 10-03.ics`), an href (often `<UID>.ics`, and a UID can carry an email
address) or a Google id may name a client, so the state (objects, occurrences.item, the
connectors' cursors) holds `object_id(name)` instead: blake2b, 16 bytes, hex. Only identity is
needed there: a connector lists its objects by their real names within one pass, and compares
them with what it stored by digest.

Plain, not keyed: the digest stands in for names in a 0600 file that, for the reminder-key
contract (docs/design.md "Reminder keys", `plan --json` "anchor"), must keep the appointment
UIDs themselves (`occurrences.uid`); a per-state secret would protect nothing the file does not
already hold. Every object's id is the digest of the name it had in schema 2 and earlier
(`<file name>`, `<url hash>:<href path>`, `<calendar id>/<series id>`), so the state
migration turns old rows and old cursors into exactly what the connectors now store: the first
pass after an upgrade reads incrementally and the source-loss guard compares like with like.

Pure (standard library only): both state backends and every source connector import it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

# the cursor shapes this module writes (each connector checks its own)
VDIR_CURSOR = 2
CALDAV_CURSOR = 2
GOOGLE_CURSOR = 3  # 3: per object, the end of its last instance seen (connectors.google.source)


def object_id(name: str) -> str:
    """The stored id of the object called `name` (32 hex characters; '' stays '')."""
    if not name:
        return ""
    data = name.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16, person=b"callsheet-object").hexdigest()


def url_hash(url: str) -> str:
    """The short prefix that keeps two CalDAV collections' hrefs apart (as `connectors.caldav`)."""
    return hashlib.sha256(url.encode()).hexdigest()[:8]


def caldav_object_id(url: str, path: str) -> str:
    """The id of the member at href `path` of the collection at `url`."""
    return object_id(f"{url_hash(url)}:{path}")


def google_object_id(calendar_id: str, series: str) -> str:
    """The id of one series (or single event) of one Google calendar."""
    return object_id(f"{calendar_id}/{series}")


def _names(raw: object) -> list[str]:
    return [str(x) for x in raw] if isinstance(raw, list) else []


def upgrade_cursor(cursor: object) -> object:
    """A cursor as stored by schema 2 and earlier, with every object name replaced by its id.

    Recognises the three shapes by their keys (vdir: `files`; CalDAV: `version` 1 and
    `collections`; Google: `v` 1 and `calendars`); anything else (already upgraded, empty, a
    shape of a newer callsheet) is returned as it is. A Google cursor of version 2 (ids, no
    ends) becomes version 3 with every end unknown: its token stays, no cold re-list.
    """
    if not isinstance(cursor, Mapping):
        return cursor
    if isinstance(cursor.get("files"), Mapping) and "v" not in cursor:
        return _vdir(cursor)
    if cursor.get("version") == 1 and isinstance(cursor.get("collections"), Mapping):
        return _caldav(cursor)
    if cursor.get("v") == 1 and isinstance(cursor.get("calendars"), Mapping):
        return _google(cursor, named=True)
    if cursor.get("v") == 2 and isinstance(cursor.get("calendars"), Mapping):
        return _google(cursor, named=False)
    return cursor


def pack_stamps(files: Mapping[str, str]) -> str:
    """The vdir cursor's files (object id -> "size/mtime_ns") as one string,
    "id/size/mtime/id/size/mtime/…" (an id is hex): saving and loading the cursor of a folder of
    ten thousand files then costs next to nothing."""
    return "/".join(f"{item}/{stamp}" for item, stamp in sorted(files.items()))


def unpack_stamps(value: object) -> dict[str, str]:
    """The vdir cursor's files from `pack_stamps`, or from the earlier form {key: [size, mtime_ns]}."""
    if isinstance(value, str):
        parts = value.split("/")
        return {parts[i]: f"{parts[i + 1]}/{parts[i + 2]}" for i in range(0, len(parts) - 2, 3)}
    if isinstance(value, Mapping):
        return {
            str(name): f"{stamp[0]}/{stamp[1]}"
            for name, stamp in value.items()
            if isinstance(stamp, list) and len(stamp) == 2
        }
    return {}


def _vdir(cursor: Mapping[str, Any]) -> dict[str, object]:
    revisit = cursor.get("revisit", cursor.get("recurring"))
    out: dict[str, object] = {k: v for k, v in cursor.items() if k not in ("files", "revisit", "recurring")}
    out["v"] = VDIR_CURSOR
    stamps = unpack_stamps(cursor["files"])
    out["files"] = pack_stamps({object_id(name): stamp for name, stamp in stamps.items()})
    out["revisit"] = sorted(object_id(n) for n in _names(revisit))
    return out


def _caldav(cursor: Mapping[str, Any]) -> dict[str, object]:
    collections: dict[str, object] = {}
    for url, raw in cursor["collections"].items():
        if not isinstance(raw, Mapping):
            continue
        entry = dict(raw)
        etags = raw.get("etags")
        if isinstance(etags, Mapping):
            entry["etags"] = {caldav_object_id(url, str(p)): tag for p, tag in etags.items()}
        for name in ("recurring", "later"):
            entry[name] = sorted(caldav_object_id(url, p) for p in _names(raw.get(name)))
        collections[url] = entry
    return {**cursor, "version": CALDAV_CURSOR, "collections": collections}


def _google(cursor: Mapping[str, Any], *, named: bool) -> dict[str, object]:
    """Version 1 (event ids) or 2 (object ids) to 3: `items` maps each object id to the end of
    its last instance seen, unknown (None) for what an older cursor listed."""
    calendars: dict[str, object] = {}
    for calendar_id, raw in cursor["calendars"].items():
        if not isinstance(raw, Mapping):
            continue
        entry = dict(raw)
        if isinstance(raw.get("items"), list):
            names = _names(raw["items"])
            ids = [google_object_id(calendar_id, s) for s in names] if named else names
            entry["items"] = dict.fromkeys(sorted(ids))
        calendars[calendar_id] = entry
    return {**cursor, "v": GOOGLE_CURSOR, "calendars": calendars}
