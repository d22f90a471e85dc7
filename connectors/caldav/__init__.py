"""
Source: each configured collection is read incrementally. A sync-collection REPORT (RFC 6578,
through caldav's `get_objects_by_sync_token(load_objects=False)`) says what changed since the
last pass; the changed bodies come in one calendar-multiget, never one GET per object. When
caldav silently falls back to a full listing (a token starting with "fake-": the server lost
our token or cannot sync), the listing is diffed against the hrefs in the cursor to find the
deletions, and the next pass starts again without a token. A collection where sync-collection
does not work is read with a PROPFIND Depth:1 getetag listing plus multiget instead. Recurring
objects (and objects that lie beyond the window) are fetched again, with one multiget, when
the window moves (once a day). A pass where nothing changed costs one request per collection.
Recurrences are expanded locally (connectors.ical), never by the server.

Sink: one object per reminder, `<collection>/callsheet-<key>.ics`; created with
`If-None-Match: *` (an existing one is adopted, never duplicated), rewritten and deleted with
`If-Match: <etag>` (a 412 is a ConflictError: the therapist's edit is never overwritten).

Errors are mapped to worker.errors here and nowhere else; transient ones (connection errors,
timeouts, answers cut off, 5xx, 429) are retried with tenacity within a budget well below the
pass interval. Messages and log lines name collections by URL (never with credentials), objects
by href, and never carry event text.
"""

from __future__ import annotations

from connectors.caldav.sink import CalDavSink
from connectors.caldav.source import CalDavSource
from connectors.caldav.transport import LIMITS, RETRY, Limits, RetryPolicy, public_url

__all__ = ["LIMITS", "RETRY", "CalDavSink", "CalDavSource", "Limits", "RetryPolicy", "public_url"]
