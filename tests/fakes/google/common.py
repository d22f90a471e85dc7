"""Shared pieces of the fake: routes from the discovery documents, helpers, stored shapes."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import googleapiclient

from tests.fakes.google.errors import ApiError

_DOCS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


AUTH = "https://www.googleapis.com/auth/"


# Event.id: "characters allowed in the ID are those used in base32hex encoding, i.e. lowercase
# letters a-v and digits 0-9 ... the length of the ID must be between 5 and 1024 characters".
_B32HEX = re.compile(r"^[a-v0-9]{5,1024}$")


# events.list syncToken: "There are several query parameters that cannot be specified together
# with nextSyncToken to ensure consistency of the client state" (these).
_SYNC_FORBIDDEN = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)


@dataclass
class _Route:
    method_id: str
    http_method: str
    pattern: re.Pattern[str]
    names: list[str]
    scopes: frozenset[str]


def _routes() -> list[_Route]:
    routes = []
    for doc_name, prefix in (("calendar.v3.json", "calendar/v3/"), ("tasks.v1.json", "")):
        doc = json.loads((_DOCS / doc_name).read_text(encoding="utf-8"))
        service_path = doc.get("servicePath", "")
        assert service_path == prefix or (prefix == "" and service_path == ""), doc_name

        def walk(resources: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
            for resource in resources.values():
                yield from resource.get("methods", {}).values()
                yield from walk(resource.get("resources", {}))

        for method in walk(doc["resources"]):
            path = prefix + method["path"]
            names: list[str] = []

            def param(match: re.Match[str], names: list[str] = names) -> str:
                names.append(match.group(2))
                return "(.+)" if match.group(1) == "+" else "([^/]+)"

            regex = re.sub(
                r"\{(\+?)([^}]+)\}", param, re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
            )
            routes.append(
                _Route(
                    method["id"],
                    method["httpMethod"],
                    re.compile(f"^/{regex}$"),
                    names,
                    frozenset(method.get("scopes", ())),
                )
            )
    return routes


_ROUTES = _routes()


def _scopes(method_id: str) -> frozenset[str]:
    for route in _ROUTES:
        if route.method_id == method_id:
            return route.scopes
    raise KeyError(method_id)


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _fields_tree(spec: str) -> dict[str, Any]:
    """Parse a `fields` selector ("a,b/c,items(id,start)") into a tree."""
    tree: dict[str, Any] = {}
    pos = 0

    def parse(until: str | None) -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        name = ""
        while pos < len(spec):
            ch = spec[pos]
            pos += 1
            if ch == "(":
                sub = parse(")")
                _put(out, name.strip(), sub)
                name = ""
            elif ch == ",":
                if name.strip():
                    _put(out, name.strip(), None)
                name = ""
            elif ch == ")":
                if until != ")":
                    raise ApiError(400, "invalidParameter", "Invalid field selection")
                if name.strip():
                    _put(out, name.strip(), None)
                return out
            else:
                name += ch
        if until is not None:
            raise ApiError(400, "invalidParameter", "Invalid field selection")
        if name.strip():
            _put(out, name.strip(), None)
        return out

    def _put(out: dict[str, Any], path: str, sub: dict[str, Any] | None) -> None:
        if not path:
            raise ApiError(400, "invalidParameter", "Invalid field selection")
        parts = path.split("/")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = sub

    tree = parse(None)
    return tree


def _select(value: Any, tree: Mapping[str, Any] | None) -> Any:
    if tree is None:
        return value
    if isinstance(value, list):
        return [_select(v, tree) for v in value]
    if isinstance(value, dict):
        return {k: _select(value[k], sub) for k, sub in tree.items() if k in value}
    return value


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Patch semantics: objects merge, arrays and scalars replace, null removes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = json.loads(json.dumps(value))


def _when(raw: Mapping[str, Any] | None) -> datetime | None:
    """An EventDateTime as an aware datetime (all-day: midnight UTC, for ordering only)."""
    if not raw:
        return None
    if raw.get("dateTime"):
        value = datetime.fromisoformat(raw["dateTime"])
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo(raw.get("timeZone") or "UTC"))
        return value
    if raw.get("date"):
        return datetime.combine(date.fromisoformat(raw["date"]), datetime.min.time(), UTC)
    return None


def _b64(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, sort_keys=True).encode()).decode().rstrip("=")


def _unb64(text: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValueError("bad token") from exc
    if not isinstance(value, dict):
        raise ValueError("bad token")
    return value


def _public(event: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


@dataclass
class _Calendar:
    id: str
    summary: str
    time_zone: str
    app_created: bool = False
    access_role: str = "owner"
    primary: bool = False
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: int = 0
    generation: int = 0
    # ids of events purged for good that Google still will not hand out again (GAMADV-X #82:
    # the id stays unusable after purging; unverified, so only tests that ask for it use it)
    reserved: set[str] = field(default_factory=set)


@dataclass
class _TaskList:
    id: str
    title: str
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: int = 0


# "Deleted events are only guaranteed to have the id field populated. On the organizer's
# calendar, cancelled events continue to expose event details (summary, location, etc.) so
# that they can be restored (undeleted)." (Event.status, calendar.v3 discovery document)
TOMBSTONE_KEYS = ("kind", "etag", "id", "status", "updated", "_seq", "iCalUID", "recurringEventId")
