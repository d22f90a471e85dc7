"""CalDAV discovery: is a URL a calendar, which calendars the account has, which one a name means.

The configured URL may be a calendar collection, or the server root, `/.well-known/caldav`, a
principal or a calendar home: from those, `current-user-principal` -> `calendar-home-set` ->
the home's members (RFC 4791 section 6.2, RFC 5397, RFC 6764) list the calendars, each with its
display name and component set. A configured URL that is not a calendar is a config error that
lists them; a calendar may be named by its display name instead of its URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from connectors.caldav.transport import CALDAV, DAV, DavResponse, Transport, normal_path, public_url, tag
from worker.errors import ConfigError, Problem

_PROPS = "<D:resourcetype/><D:displayname/><C:supported-calendar-component-set/>"
# asked for separately: Radicale refuses them (401) to an anonymous client, even on a calendar
_PRINCIPAL = "<D:resourcetype/><D:current-user-principal/><C:calendar-home-set/>"


@dataclass(frozen=True, slots=True)
class CalendarInfo:
    """One calendar collection the account can see."""

    url: str
    name: str  # display name ("" when the server has none)
    components: tuple[str, ...] | None  # None: the server does not say

    def line(self) -> str:
        comps = ", ".join(self.components) if self.components is not None else "components not advertised"
        label = f'"{self.name}"' if self.name else "(no display name)"
        return f"{label} {public_url(self.url)} [{comps}]"


def _is_calendar(response: DavResponse) -> bool:
    kinds = response.props.get(tag(DAV, "resourcetype"))
    return kinds is not None and kinds.find(tag(CALDAV, "calendar")) is not None


def _components(response: DavResponse) -> tuple[str, ...] | None:
    element = response.props.get(tag(CALDAV, "supported-calendar-component-set"))
    if element is None:
        return None
    return tuple(
        str(c.get("name", "")).upper() for c in element.findall(tag(CALDAV, "comp")) if c.get("name")
    )


def _href_in(response: DavResponse, name: str, namespace: str, base: str) -> str | None:
    element = response.props.get(tag(namespace, name))
    if element is None:
        return None
    href = element.findtext(tag(DAV, "href"))
    return urljoin(base, href.strip()) if href and href.strip() else None


def _info(base: str, response: DavResponse) -> CalendarInfo:
    url = urljoin(base, response.href) if response.href else base
    url = public_url(url)
    return CalendarInfo(
        url=url if url.endswith("/") else url + "/",
        name=response.text(DAV, "displayname"),
        components=_components(response),
    )


def _self(
    transport: Transport, url: str, props: str = _PROPS, *, lenient: bool = False
) -> DavResponse | None:
    """The Depth-0 properties of `url` (None when the server does not answer them)."""
    # 404, 405, 400, 501: not a DAV resource (or a file); with `lenient` also 401/403 (Radicale
    # refuses principal properties to an anonymous client)
    absent = (400, 404, 405, 409, 501) + ((401, 403) if lenient else ())
    found = transport.propfind("discover", url, props, depth="0", absent=absent)
    own = normal_path(urlsplit(url).path).rstrip("/")
    for response in found.responses:
        if normal_path(urlsplit(response.href).path).rstrip("/") == own or len(found.responses) == 1:
            return response
    return None


def probe(transport: Transport, url: str) -> CalendarInfo | None:
    """`url` as a calendar, or None when it is something else (root, principal, home, a file)."""
    response = _self(transport, url)
    if response is None or not _is_calendar(response):
        return None
    return _info(url, response)


def calendars(transport: Transport, start: str) -> list[CalendarInfo]:
    """Every calendar the account sees, discovered from any URL on the server."""
    homes: list[str] = []
    tried: set[str] = set()
    candidates = [start, urljoin(start, "/.well-known/caldav"), urljoin(start, "/")]
    for url in candidates:
        if url in tried:
            continue
        tried.add(url)
        response = _self(transport, url, _PRINCIPAL, lenient=True)
        if response is None:
            continue
        home = _href_in(response, "calendar-home-set", CALDAV, url)
        if home is None:
            principal = _href_in(response, "current-user-principal", DAV, url)
            if principal is not None:
                found = _self(transport, principal, _PRINCIPAL, lenient=True)
                home = _href_in(found, "calendar-home-set", CALDAV, principal) if found else None
        if home is not None:
            homes.append(home)
            break
    if not homes:  # no principal to ask (an anonymous client): the URL may be a home, or a calendar in one
        parent = urljoin(start, "..") if urlsplit(start).path.strip("/") else start
        homes = list(dict.fromkeys([start, parent]))
    out: list[CalendarInfo] = []
    for home in homes:
        listing = transport.propfind(
            "discover", home, _PROPS, depth="1", absent=(400, 401, 403, 404, 405, 501)
        )
        for response in listing.responses:
            if _is_calendar(response):
                out.append(_info(home, response))
    return sorted(dict.fromkeys(out), key=lambda c: (c.name.lower(), c.url))


def _listing(found: list[CalendarInfo]) -> str:
    if not found:
        return "the account shows no calendars here (check the URL and the username)"
    return "the account's calendars:\n" + "\n".join(f"    {c.line()}" for c in found)


def require_calendar(transport: Transport, url: str, where: str) -> CalendarInfo:
    """`url` as a calendar collection; a ConfigError listing the calendars when it is not one."""
    info = probe(transport, url)
    if info is not None:
        return info
    found = calendars(transport, url)
    raise ConfigError(
        [
            Problem(
                where,
                f"{public_url(url)} is not a calendar collection; set the URL to one of {_listing(found)}",
            )
        ]
    )


def resolve(transport: Transport, start: str, name: str, where: str) -> str:
    """The URL of the calendar whose display name is `name` (case and spaces ignored)."""
    found = calendars(transport, start)
    wanted = " ".join(name.split()).casefold()
    matches = [c for c in found if " ".join(c.name.split()).casefold() == wanted]
    if len(matches) == 1:
        return matches[0].url
    why = "no calendar is called" if not matches else "more than one calendar is called"
    raise ConfigError([Problem(where, f'{why} "{name}"; {_listing(found)}')])
