"""The shared source contract on the CalDAV source, against Radicale and Xandikos on 127.0.0.1."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from connectors.base import Source, open_source
from connectors.caldav import CalDavSource
from tests.contract.test_source_contract import HOSTILE, SECRET, SourceContract, SourceDriver, TextDriver
from tests.fakes.google.practice import Appt
from tests.integration.conftest import DavCollection, DavServer, dav_config, dav_server
from tests.practice import Practice
from worker.config import load_settings

pytestmark = pytest.mark.integration

__all__ = ["dav_server"]  # the session fixture (Radicale and Xandikos), used here by name


# What a server accepts that callsheet cannot read, standing in for text that is not iCalendar
# (both servers refuse that at the PUT: Radicale 400, Xandikos 412 valid-calendar-data).
# Radicale validates dates and rules, so its stand-in is a rule no appointment follows.
_UNREADABLE = {
    "radicale": "DTSTART:20260304T100000Z\r\nRRULE:FREQ=MINUTELY;COUNT=5\r\n",
    "xandikos": "DURATION:P1H\r\n",  # no DTSTART
}


class CalDavDriver(TextDriver):
    def __init__(self, server: DavServer, root: Path) -> None:
        self.server = server
        self.collection: DavCollection = server.make_collection()
        source_text, _ = dav_config([self.collection.url], "", "", timeout="5s")
        self.practice = Practice(root, source=source_text)
        self._source: CalDavSource | None = None

    def store(self, name: str, data: bytes) -> None:
        self.collection.put(name, data)

    def put_hostile(self, kind: str) -> None:
        if kind != "not_icalendar":
            super().put_hostile(kind)
            return
        with pytest.raises(RuntimeError, match=r"answered (400|412)"):
            self.collection.put("refused", HOSTILE[kind])
        body = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//callsheet tests//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:contract-unreadable\r\nDTSTAMP:20260101T000000Z\r\nSUMMARY:{SECRET}\r\n"
            f"{_UNREADABLE[self.server.kind]}END:VEVENT\r\nEND:VCALENDAR\r\n"
        )
        self.collection.put("hostile-unreadable", body)

    def drop(self, name: str) -> None:
        self.collection.delete(name)

    def item(self, appt: Appt) -> str:
        source = self._source
        assert source is not None, "item ids are asked for after the source is opened"
        return source.item_id(source.urls[0], f"{self.collection.path}{appt.uid}.ics")

    def names(self, appt: Appt) -> list[str]:
        return [f"{self.collection.path}{appt.uid}.ics", f"{appt.uid}.ics", appt.uid]

    def source(self) -> Source:
        settings = load_settings(self.practice.config)
        opened = open_source(settings, settings.source)
        assert isinstance(opened, CalDavSource)
        self._source = opened
        return opened


class TestCalDavSource(SourceContract):
    @pytest.fixture
    def driver(self, dav_server: DavServer, tmp_path: Path) -> SourceDriver:
        return CalDavDriver(dav_server, tmp_path / f"practice-{uuid.uuid4().hex[:6]}")
