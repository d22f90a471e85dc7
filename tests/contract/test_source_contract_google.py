"""The shared source contract on the Google source, against the local fake of Calendar v3.

Google stores events, not iCalendar text, and expands recurring events on its own servers: the
connector never expands a rule, so the recurrence bomb and the never-advancing rule are not
hazards it can meet. Its hostile object is an event it cannot read (no start).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Source, open_source
from connectors.google import api
from tests.contract.test_source_contract import SECRET, SourceContract, SourceDriver
from tests.fakes.google import FakeGoogle, google_practice
from tests.fakes.google.practice import Appt, google_id
from tests.practice import TZ_NAME
from worker.config import load_settings
from worker.object_ids import google_object_id

pytestmark = pytest.mark.integration

# Deleted after every appointment of the contract took place: Google's tombstone of a single
# event deleted *before* its start counts as a cancellation (docs/policy.md), which the
# contract's "deleted object" case is not about.
DELETED_AT = "2026-06-01T12:00:00Z"


class GoogleDriver(SourceDriver):
    # a calendar that changed is listed over the whole window (connectors/google/source.py)
    lists_only_changes = False

    def __init__(self, fake: FakeGoogle, root: Path) -> None:
        self.fake = fake
        self.practice = google_practice(fake, root, timeout="2s", seeded=False)

    def _body(self, appt: Appt) -> dict[str, Any]:
        (body,) = appt.google(TZ_NAME)  # the contract's objects have no exceptions
        return body

    def put(self, appt: Appt) -> None:
        gid = google_id(appt.uid)
        if gid in self.fake.calendars[FakeGoogle.PRIMARY].events:
            body = self._body(appt)
            self.fake.update_event(
                "primary", gid, {k: body[k] for k in ("summary", "start", "end", "status")}
            )
        else:
            self.fake.add_event("primary", self._body(appt))

    def delete(self, appt: Appt) -> None:
        self.fake.delete_event("primary", google_id(appt.uid), at=DELETED_AT)

    def put_hostile(self, kind: str) -> None:
        assert kind == "not_icalendar"
        self.fake.add_event("primary", {"id": google_id("contract-hostile"), "summary": SECRET})

    def item(self, appt: Appt) -> str:
        return google_object_id("primary", google_id(appt.uid))

    def names(self, appt: Appt) -> list[str]:
        return [google_id(appt.uid), appt.uid]

    def source(self) -> Source:
        settings = load_settings(self.practice.config)
        return open_source(settings, settings.source)


class TestGoogleSource(SourceContract):
    @pytest.fixture
    def driver(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SourceDriver]:
        monkeypatch.setattr(api, "DEFAULT_RETRY", api.RetryPolicy(budget=5.0, base=0.01, cap=0.05))
        with FakeGoogle() as fake:
            yield GoogleDriver(fake, tmp_path / "google")

    @pytest.fixture(params=["not_icalendar"])
    def hostile(self, request: pytest.FixtureRequest) -> str:
        """Only the unreadable object: Google expands recurrences on its side (module docstring)."""
        return str(request.param)
