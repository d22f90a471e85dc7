"""The shared sink contract on the Google sink, against the local fake of Calendar and Tasks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.base import Sink, open_sink
from connectors.google import api
from tests.contract.test_sink_contract import SinkContract
from tests.fakes.google import FakeGoogle, google_practice
from worker.config import load_settings

pytestmark = pytest.mark.integration  # starts the local Google fake (an HTTP server on 127.0.0.1)


class TestGoogleSink(SinkContract):
    @pytest.fixture
    def sink(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sink]:
        monkeypatch.setattr(api, "DEFAULT_RETRY", api.RetryPolicy(budget=5.0, base=0.01, cap=0.05))
        with FakeGoogle() as fake:
            gp = google_practice(fake, tmp_path / "google", timeout="1s")
            settings = load_settings(gp.config)
            opened = open_sink(settings, settings.reminders)
            yield opened
            opened.close()
