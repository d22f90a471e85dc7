"""Any CalDAV server (RFC 4791) as a Source of appointments and a Sink for reminders.

- `wire`: HTTP/1.1 on the standard library (kept-alive connections, TLS, gzip, Basic and
  Digest, environment proxies);
- `transport`: the HTTP session (credentials, redirects, deadlines, size caps, status mapping,
  retries);
- `discovery`: whether a URL is a calendar, the account's calendars, display names;
- `source`: incremental, read-only reading of appointments (sync-collection + multiget);
- `sink`: reminder events and tasks (PROPFIND listing + multiget, conditional writes).

How each known server differs is reproduced by the test proxy in tests/fakes/caldav_proxy.py.

The registry in connectors.base names `connectors.caldav:CalDavSource` and `:CalDavSink`.
"""

from __future__ import annotations

from connectors.caldav.sink import CalDavSink
from connectors.caldav.source import CalDavSource
from connectors.caldav.transport import LIMITS, RETRY, Limits, RetryPolicy, Transport, public_url

__all__ = [
    "LIMITS",
    "RETRY",
    "CalDavSink",
    "CalDavSource",
    "Limits",
    "RetryPolicy",
    "Transport",
    "public_url",
]
