"""Faults between callsheet and a real CalDAV server: the server stopped mid-pass, 500s, 429s,
answers slower than the timeout. A failed pass exits 1 cleanly; the next pass completes and
leaves exactly one item per reminder (nothing duplicated, nothing lost)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import icalendar
import pytest

from connectors.caldav.transport import Answer, Transport
from tests.integration.conftest import DavPractice, DavServer, FaultProxy
from tests.integration.test_caldav_passes import EXPECTED, NAMES, NOW, due_needs, load_practice
from tests.practice import DEFAULT_CLIENTS, ClientSpec
from worker.identity import file_name

CLIENTS = (*DEFAULT_CLIENTS, ClientSpec("c005", "Emery Stone"))
KINDS = ["radicale", "xandikos"]

pytestmark = pytest.mark.usefixtures("fast_retries")


def assert_one_item_per_need(dp: DavPractice, capsys: pytest.CaptureFixture[str]) -> None:
    """Each due need has exactly one event and one task on the server, and plan keeps them all."""
    lines = dp.plan(NOW, capsys)
    assert due_needs(lines) == EXPECTED
    assert {x["action"] for x in lines if x["state"] == "due"} == {"keep"}
    keys = {x["key"] for x in lines if x["state"] == "due"}
    for collection, name, kind in ((dp.events, "VEVENT", "event"), (dp.tasks, "VTODO", "task")):
        objects = collection.objects()
        found = [
            str(c["X-CALLSHEET-KEY"])
            for d in objects.values()
            for c in icalendar.Calendar.from_ical(d).walk(name)
        ]
        assert sorted(found) == sorted(keys), (name, found)
        assert set(objects) == {file_name(k, kind, 1) for k in keys}


@pytest.fixture
def proxied(
    dav_server_factory: Callable[..., DavServer],
    dav_practice: Callable[..., DavPractice],
    fault_proxy: Callable[[DavServer], FaultProxy],
) -> Callable[..., tuple[FaultProxy, DavPractice]]:
    """Make a server of a kind, a fault proxy in front of it, and the practice loaded through it."""

    def make(kind: str, **options: str) -> tuple[FaultProxy, DavPractice]:
        server = dav_server_factory(kind)
        proxy = fault_proxy(server)
        dp = dav_practice(server, clients=CLIENTS, url_of=proxy.url_for, **options)
        load_practice(dp)
        return proxy, dp

    return make


def _errors(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("kind", KINDS)
def test_server_stopped_mid_pass(
    kind: str,
    dav_server_factory: Callable[..., DavServer],
    dav_practice: Callable[..., DavPractice],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The server going away after two writes fails the pass (exit 1); after restart one pass completes."""
    server = dav_server_factory(kind)
    dp = dav_practice(server, clients=CLIENTS)
    load_practice(dp)
    original = Transport.exchange
    puts = []

    def stopping(self: Transport, method: str, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        if method == "PUT":
            puts.append(url)
            if len(puts) == 3:
                server.stop()
        return original(self, method, url, body, headers)

    monkeypatch.setattr(Transport, "exchange", stopping)
    capsys.readouterr()
    assert dp.run(NOW) == 1
    err = capsys.readouterr().err
    # the writes after the server went away fail item by item; the pass says how many and why
    assert "could not be written" in err and "server unreachable" in err
    assert not any(name in err for name in NAMES)
    monkeypatch.setattr(Transport, "exchange", original)
    server.start()
    assert len(dp.events.objects()) + len(dp.tasks.objects()) == 2  # what got written before the stop
    assert dp.run(NOW) == 0
    assert_one_item_per_need(dp, capsys)


@pytest.mark.parametrize("kind", KINDS)
def test_server_errors_fail_the_pass_then_it_recovers(
    kind: str,
    proxied: Callable[..., tuple[FaultProxy, DavPractice]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A server answering 500 to everything fails the pass with exit 1; the next pass completes."""
    proxy, dp = proxied(kind)
    proxy.faults.fail_status, proxy.faults.fail_count = 500, 10_000
    capsys.readouterr()
    began = time.monotonic()
    assert dp.run(NOW) == 1
    assert time.monotonic() - began < 30
    err = capsys.readouterr().err
    assert "the pass failed" in err and "HTTP 500" in err
    assert not any(name in err for name in NAMES)
    assert any(x["event"] == "connector.retry" for x in _errors(err))
    proxy.reset()
    assert dp.run(NOW) == 0
    assert_one_item_per_need(dp, capsys)


@pytest.mark.parametrize("kind", KINDS)
def test_one_failed_write_is_retried_within_the_pass(
    kind: str,
    proxied: Callable[..., tuple[FaultProxy, DavPractice]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A single 502 on a PUT is retried and the pass still succeeds, with nothing duplicated."""
    proxy, dp = proxied(kind)
    proxy.faults.fail_status, proxy.faults.fail_count, proxy.faults.fail_methods = 502, 1, frozenset({"PUT"})
    capsys.readouterr()
    assert dp.run(NOW) == 0
    retries = [x for x in _errors(capsys.readouterr().err) if x["event"] == "connector.retry"]
    assert [x["operation"] for x in retries] == ["create"]
    assert proxy.faults.fail_count == 0
    assert_one_item_per_need(dp, capsys)


@pytest.mark.parametrize("kind", KINDS)
def test_rate_limit_honours_retry_after(
    kind: str,
    proxied: Callable[..., tuple[FaultProxy, DavPractice]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 429 with Retry-After: 2 makes the connector wait at least two seconds, then go on."""
    proxy, dp = proxied(kind)
    proxy.faults.fail_status, proxy.faults.fail_count = 429, 1
    proxy.faults.fail_methods, proxy.faults.fail_headers = frozenset({"PUT"}), {"Retry-After": "2"}
    capsys.readouterr()
    began = time.monotonic()
    assert dp.run(NOW) == 0
    assert time.monotonic() - began >= 2.0
    (retry,) = [x for x in _errors(capsys.readouterr().err) if x["event"] == "connector.retry"]
    assert retry["retry_after"] == 2.0
    assert_one_item_per_need(dp, capsys)


@pytest.mark.parametrize("kind", KINDS)
def test_slow_writes_past_the_timeout(
    kind: str,
    proxied: Callable[..., tuple[FaultProxy, DavPractice]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Writes answered after the timeout fail the pass (exit 1); the writes that did land are adopted."""
    proxy, dp = proxied(kind, timeout="1s")
    proxy.faults.delay, proxy.faults.delay_methods = 2.5, frozenset({"PUT"})
    capsys.readouterr()
    assert dp.run(NOW) == 1
    err = capsys.readouterr().err
    assert "could not be written" in err
    assert not any(name in err for name in NAMES)
    assert dp.events.objects()  # the server did store the first reminder; we never heard back
    proxy.reset()
    assert dp.run(NOW) == 0
    assert_one_item_per_need(dp, capsys)


@pytest.mark.parametrize("kind", KINDS)
def test_slow_reads_past_the_timeout(
    kind: str,
    proxied: Callable[..., tuple[FaultProxy, DavPractice]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A server that answers nothing in time fails the pass within the retry budget; then it recovers."""
    proxy, dp = proxied(kind, timeout="1s")
    assert dp.run(NOW) == 0
    proxy.faults.delay = 2.5
    capsys.readouterr()
    began = time.monotonic()
    assert dp.run(NOW) == 1
    assert time.monotonic() - began < 20
    assert "no answer within the timeout" in capsys.readouterr().err
    proxy.reset()
    assert dp.run(NOW) == 0
    assert_one_item_per_need(dp, capsys)
