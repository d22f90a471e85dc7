"""CalDAV discovery: what a collection is, and which calendars the account sees."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from caldav.elements import dav

from worker.errors import (
    ConnectorError,
)

if TYPE_CHECKING:
    pass
from connectors.caldav.transport import _Dav, _path, public_url


def _describe_collection(transport: _Dav, url: str) -> str:
    calendar = transport.client.calendar(url=url)

    def once() -> tuple[str, list[str]]:
        props = calendar.get_properties([dav.DisplayName()])
        name = str(props.get(dav.DisplayName.tag) or "")
        components = [str(c) for c in calendar.get_supported_components()]
        return name, components

    name, components = transport.call("describe", url, once)
    label = f'"{name}", ' if name else ""
    return f"{label}holds {', '.join(components) or 'nothing'}"


def _visible_calendars(transport: _Dav, configured: Iterable[str]) -> list[str]:
    """Best effort: the other calendars of the account (servers without discovery say nothing)."""
    known = {_path(u) for u in configured}
    try:
        calendars = transport.call(
            "discover",
            public_url(str(transport.client.url)),
            lambda: transport.client.principal().get_calendars(),
        )
    except ConnectorError:
        return []
    lines = []
    for calendar in calendars:
        if _path(calendar.url) in known:
            continue
        lines.append(f"  also visible: {public_url(str(calendar.url))}")
    return lines
