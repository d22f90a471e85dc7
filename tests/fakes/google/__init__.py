"""A local fake of Google Calendar v3, Google Tasks v1 and Google's OAuth endpoints.

Served over real HTTP (stdlib http.server in a thread, on 127.0.0.1 and a free port) so the
real google-api-python-client talks to it through `api_endpoint`. Routes come from the
discovery documents the client library ships: a method the fake does not implement answers
501, an unknown path 404, and every request is checked against the method's OAuth scopes.

Faithful to the documented behaviour callsheet relies on (see ../shared/research/google-api.md):
events list/get/insert/patch/delete; pagination (a small page size exercises it);
`syncToken`/`nextSyncToken` (on the last page only) and 410 fullSyncRequired for a bad or
expired token; the parameters that may not travel with a sync token (400); deleted events kept
as `status: cancelled` (returned by sync and with showDeleted, and a 409 on re-insert);
`singleEvents` expansion of weekly/daily series in their time zone, with moved and cancelled
instances (a cancelled instance comes back with only its ids and original start);
`privateExtendedProperty`; partial responses (`fields`); If-Match (412); calendars.insert,
calendars.get, calendarList; `calendar.app.created` only reaches calendars the app made;
tasklists and tasks (date-only due, completed, hidden, deleted); the OAuth authorization and
token endpoints (PKCE, refresh, `invalid_grant` on demand); injected errors (429, 403, 500,
slow answers that time out) and a log of every request for counting.

Split by concern: `server` (HTTP, request log, faults, dispatch), `calendar` (Calendar v3),
`tasks` (Tasks v1), `auth` (OAuth and scopes), `errors` (Google's error shape), `common`
(routes and helpers), `practice` (fixtures: the sample practice as .ics files and as Google
events). Each rule that mirrors Google cites the documentation it follows in a comment.
"""

from __future__ import annotations

from tests.fakes.google.common import AUTH
from tests.fakes.google.errors import ApiError
from tests.fakes.google.practice import (
    SAMPLE_NOW,
    Appt,
    GooglePractice,
    google_id,
    google_practice,
    sample_calendars,
    sample_clients,
    seed,
    vdir_twin,
    write_token,
)
from tests.fakes.google.server import Call, FakeGoogle, Fault

__all__ = [
    "AUTH",
    "SAMPLE_NOW",
    "ApiError",
    "Appt",
    "Call",
    "FakeGoogle",
    "Fault",
    "GooglePractice",
    "google_id",
    "google_practice",
    "sample_calendars",
    "sample_clients",
    "seed",
    "vdir_twin",
    "write_token",
]
