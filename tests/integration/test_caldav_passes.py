"""Whole passes through the real command line against real CalDAV servers (Radicale, Xandikos).

The practice: a weekly series with an EXDATE and a moved no-show instance, a weekly series
whose last instance is cancelled, a client who did not rebook, a discharged client, a client
booked into the slot the EXDATE freed, and a personal event. Both [source] and [reminders]
are CalDAV collections on the server under test.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable

import icalendar
import pytest

from tests.integration.conftest import DavPractice, DavServer, RequestLog
from tests.practice import DEFAULT_CLIENTS, ClientSpec, local, vevent
from worker.identity import file_name, item_uid
from worker.log import digest
from worker.object_ids import caldav_object_id

NOW = "2026-03-11T12:00:00-05:00"
NEXT_DAY = "2026-03-12T12:00:00-05:00"
CLIENTS = (*DEFAULT_CLIENTS, ClientSpec("c005", "Emery Stone"))
NAMES = ("Avery", "Quinn", "Blake", "Rowe", "Cameron", "Tate", "Devon", "Ueda", "Emery", "Stone", "Dentist")
EXPECTED = {
    ("c001", "no_show", "avery-weekly|20260303T160000Z", "2026-03-05T15:50:00-06:00"),
    ("c002", "cancelled_not_rebooked", "blake-weekly|20260309T140000Z", "2026-03-09T10:00:00-05:00"),
    ("c005", "not_rebooked", "emery-last|", "2026-03-09T12:50:00-05:00"),
}


def load_practice(dp: DavPractice) -> None:
    """Put the practice's appointments into the source collection."""
    dp.add(
        "avery-weekly",
        vevent(
            "avery-weekly",
            "Avery Quinn",
            local("2026-02-03 10:00"),
            rrule="FREQ=WEEKLY;COUNT=10",
            exdates=[local("2026-03-17 10:00")],
        ),
        # the 3 March session moved to Thursday 5 March, and Avery did not come
        vevent(
            "avery-weekly",
            "Avery Quinn no show",
            local("2026-03-05 15:00"),
            recurrence_id=local("2026-03-03 10:00"),
        ),
    )
    # Cameron is booked into the slot the EXDATE freed: no double booking if EXDATE is honoured
    dp.add("cameron-past", vevent("cameron-past", "Cameron Tate", local("2026-03-04 14:00")))
    dp.add("cameron-next", vevent("cameron-next", "Cameron Tate", local("2026-03-17 10:00")))
    dp.add(
        "blake-weekly",
        vevent(
            "blake-weekly",
            "Blake Rowe",
            local("2026-02-02 09:00"),
            rrule="FREQ=WEEKLY;COUNT=6",
            exdates=[local("2026-02-16 09:00")],
        ),
        # the last instance was cancelled two days ahead and never rebooked
        vevent(
            "blake-weekly",
            "Blake Rowe",
            local("2026-03-09 09:00"),
            recurrence_id=local("2026-03-09 09:00"),
            status="CANCELLED",
            last_modified=local("2026-03-07 09:00"),
        ),
    )
    dp.add("emery-last", vevent("emery-last", "Emery Stone", local("2026-03-02 11:00")))
    dp.add("devon-last", vevent("devon-last", "Devon Ueda", local("2026-03-02 13:00")))  # discharged
    dp.add("dentist", vevent("dentist", "Dentist", local("2026-03-11 13:00"), minutes=60))


def components(objects: dict[str, bytes], name: str) -> dict[str, icalendar.cal.Component]:
    """Our items in a collection: {key: VEVENT or VTODO}."""
    out = {}
    for data in objects.values():
        for comp in icalendar.Calendar.from_ical(data).walk(name):
            out[str(comp["X-CALLSHEET-KEY"])] = comp
    return out


def due_needs(lines: list[dict[str, str]]) -> set[tuple[str, str, str, str]]:
    return {(x["client"], x["reason"], x["anchor"], x["due"]) for x in lines if x["state"] == "due"}


def vanished(lines: list[dict[str, str]]) -> bool:
    """Cameron's future session was seen to vanish (it counts as cancelled, so a call follows)."""
    return any(
        (x["client"], x["reason"], x["anchor"]) == ("c003", "cancelled_not_rebooked", "cameron-next|")
        for x in lines
    )


@pytest.fixture
def dp(dav_server: DavServer, dav_practice: Callable[..., DavPractice]) -> DavPractice:
    """The loaded practice on the server under test."""
    practice = dav_practice(dav_server, clients=CLIENTS)
    load_practice(practice)
    return practice


def test_pass_writes_events_and_tasks(dp: DavPractice, capsys: pytest.CaptureFixture[str]) -> None:
    """One pass writes a private, transparent event with an alarm and a task with DUE per due need."""
    source_before = dp.source.objects()
    assert dp.run(NOW) == 0
    lines = dp.plan(NOW, capsys)
    assert due_needs(lines) == EXPECTED
    assert {x["action"] for x in lines if x["state"] == "due"} == {"keep"}
    keys = {x["key"] for x in lines if x["state"] == "due"}
    events = components(dp.events.objects(), "VEVENT")
    tasks = components(dp.tasks.objects(), "VTODO")
    assert set(events) == keys and set(tasks) == keys
    for key, event in events.items():
        assert str(event["UID"]) == item_uid(key, "event", 1)
        assert str(event["CLASS"]) == "PRIVATE" and str(event["TRANSP"]) == "TRANSPARENT"
        assert len(list(event.walk("VALARM"))) == 1
        assert tasks[key]["DUE"].dt == event["DTSTART"].dt
        assert not any(name in str(event["SUMMARY"]) for name in NAMES)
    assert set(dp.events.objects()) == {file_name(k, "event", 1) for k in keys}
    assert dp.source.objects() == source_before  # the source is never written


def test_second_pass_writes_nothing(dp: DavPractice, dav_requests: RequestLog) -> None:
    """A second pass at the same time sends no write and leaves every reminder byte-identical."""
    assert dp.run(NOW) == 0
    before = (dp.events.objects(), dp.tasks.objects())
    dav_requests.clear()
    assert dp.run(NOW) == 0
    assert not [r for r in dav_requests.sent if r.method in ("PUT", "DELETE")]
    assert (dp.events.objects(), dp.tasks.objects()) == before


def test_idle_pass_leaves_the_reminder_cache_file_alone(dp: DavPractice) -> None:
    """A pass where nothing changed does not rewrite (and fsync) the sink's cache of item readings."""
    assert dp.run(NOW) == 0
    assert dp.run(NOW) == 0
    (cache,) = (dp.practice.root / "var").glob("caldav-sink-*.json")
    before = (cache.stat().st_ino, cache.stat().st_mtime_ns)
    assert dp.run(NOW) == 0
    assert (cache.stat().st_ino, cache.stat().st_mtime_ns) == before


def test_unchanged_calendar_costs_one_request_per_collection(
    dp: DavPractice, dav_requests: RequestLog
) -> None:
    """Passes where nothing changed send at most one request to each collection (no GETs)."""
    assert dp.run(NOW) == 0
    for _ in range(2):
        dav_requests.clear()
        assert dp.run(NOW) == 0
        for collection in (dp.source, dp.events, dp.tasks):
            assert len(dav_requests.to(collection)) <= 1, dav_requests.to(collection)
        assert dav_requests.methods(dp.source) == ["REPORT"]
        assert "sync-collection" in dav_requests.to(dp.source)[0].body
        assert len(dav_requests.sent) == 3


WARM_PROBE = """
import json, sys
from worker.cli import main
code = main(["--config", sys.argv[1], "run", "--once", "--now", sys.argv[2]])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_warm_pass_imports_no_http_library_and_no_icalendar(dp: DavPractice) -> None:
    """A warm pass in a fresh interpreter imports no HTTP client library, nor icalendar (nothing to read or write)."""
    heavy = ("niquests", "urllib3", "requests", "caldav", "icalendar", "connectors.ical")
    for warm in (False, True):
        done = subprocess.run(
            [sys.executable, "-c", WARM_PROBE, str(dp.config), NOW],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["code"] == 0, done.stderr[-800:]
        loaded = sorted(m for m in result["modules"] if any(m == n or m.startswith(n + ".") for n in heavy))
        if warm:
            assert loaded == []
        else:  # the cold pass reads the appointments and writes reminders: icalendar, still no HTTP library
            assert "icalendar" in loaded and not {"niquests", "urllib3", "caldav"} & set(loaded)


def test_changes_are_fetched_with_one_multiget(
    dp: DavPractice, dav_requests: RequestLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """A changed and a deleted appointment cost one sync REPORT plus one multiget, and both count."""
    assert dp.run(NOW) == 0
    assert not vanished(dp.plan(NOW, capsys))
    dp.add("cameron-past", vevent("cameron-past", "Cameron Tate no show", local("2026-03-04 14:00")))
    dp.remove("cameron-next")
    dav_requests.clear()
    assert dp.run(NOW) == 0
    sent = dav_requests.to(dp.source)
    assert [r.method for r in sent] == ["REPORT", "REPORT"]
    assert "sync-collection" in sent[0].body and "calendar-multiget" in sent[1].body
    assert "cameron-past.ics" in sent[1].body and "avery-weekly" not in sent[1].body
    lines = dp.plan(NOW, capsys)
    assert ("c003", "no_show", "cameron-past|", "2026-03-04T14:50:00-06:00") in due_needs(lines)
    assert vanished(lines)


def test_window_move_refetches_only_recurring(dp: DavPractice, dav_requests: RequestLog) -> None:
    """When the day (the window) changes, the recurring objects come again in one multiget."""
    assert dp.run(NOW) == 0
    dav_requests.clear()
    assert dp.run(NEXT_DAY) == 0
    sent = dav_requests.to(dp.source)
    assert [r.method for r in sent] == ["REPORT", "REPORT"]
    body = sent[1].body
    assert "avery-weekly.ics" in body and "blake-weekly.ics" in body
    assert "emery-last" not in body and "dentist" not in body
    dav_requests.clear()
    assert dp.run(NEXT_DAY) == 0
    assert len(dav_requests.to(dp.source)) == 1


def test_deleted_reminder_becomes_tombstone(dp: DavPractice, capsys: pytest.CaptureFixture[str]) -> None:
    """The therapist deleting our event means handled: it is not recreated and its task is completed."""
    assert dp.run(NOW) == 0
    need = next(x for x in dp.plan(NOW, capsys) if x["reason"] == "no_show")
    dp.events.delete(item_uid(need["key"], "event", 1))
    assert dp.run(NOW) == 0
    assert dp.run(NOW) == 0
    assert need["key"] not in components(dp.events.objects(), "VEVENT")
    task = components(dp.tasks.objects(), "VTODO")[need["key"]]
    assert str(task["STATUS"]) == "COMPLETED"
    again = next(x for x in dp.plan(NOW, capsys) if x["key"] == need["key"])
    assert again["action"] == "none"


def test_booking_withdraws_not_rebooked(dp: DavPractice, capsys: pytest.CaptureFixture[str]) -> None:
    """Booking a future session deletes the not-rebooked event and completes its task."""
    assert dp.run(NOW) == 0
    need = next(x for x in dp.plan(NOW, capsys) if x["reason"] == "not_rebooked")
    assert need["key"] in components(dp.events.objects(), "VEVENT")
    dp.add("emery-next", vevent("emery-next", "Emery Stone", local("2026-03-18 11:00")))
    resolved = [x for x in dp.plan(NOW, capsys) if x["key"] == need["key"]]
    assert resolved and {x["action"] for x in resolved} == {"resolve"}
    assert dp.run(NOW) == 0
    assert need["key"] not in components(dp.events.objects(), "VEVENT")
    task = components(dp.tasks.objects(), "VTODO")[need["key"]]
    assert str(task["STATUS"]) == "COMPLETED" and "callsheet: closed" in str(task["DESCRIPTION"])
    other = {x["key"] for x in dp.plan(NOW, capsys) if x["state"] == "due"}
    assert other <= set(components(dp.events.objects(), "VEVENT"))


def _cursor(dp: DavPractice) -> dict[str, object]:
    with sqlite3.connect(dp.practice.root / "var" / "state.db") as db:
        (text,) = db.execute("SELECT cursor FROM cursors").fetchone()
    value: dict[str, object] = json.loads(text)
    return value


def _set_cursor(dp: DavPractice, cursor: dict[str, object]) -> None:
    with sqlite3.connect(dp.practice.root / "var" / "state.db") as db:
        db.execute("UPDATE cursors SET cursor = ?", (json.dumps(cursor),))


def test_refused_token_falls_back_and_finds_deletions(
    dp: DavPractice, dav_requests: RequestLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sync token the server refuses gives a full listing; deletions are found by diffing hrefs."""
    assert dp.run(NOW) == 0
    cursor = _cursor(dp)
    collections = cursor["collections"]
    assert isinstance(collections, dict)
    (state,) = collections.values()
    assert state["mode"] == "sync" and state["token"] and not str(state["token"]).startswith("fake-")
    # the server forgets our token (Radicale expires them after 30 days) while an object goes
    state["token"] = (
        "http://radicale.org/ns/sync/" + "0" * 64 if "radicale" in str(state["token"]) else "0" * 40
    )
    _set_cursor(dp, cursor)
    dp.remove("cameron-next")
    dav_requests.clear()
    assert dp.run(NOW) == 0
    assert "GET" not in dav_requests.methods(dp.source)
    assert vanished(dp.plan(NOW, capsys))
    (after,) = _cursor(dp)["collections"].values()  # type: ignore[union-attr]
    # the listing started again without a token: complete, and with a fresh token of its own
    assert after["token"] and after["token"] != state["token"] and after["mode"] == "sync"
    (url,) = collections
    gone = caldav_object_id(str(url), f"{dp.source.path}cameron-next.ics")
    assert gone in state["etags"] and gone not in after["etags"]  # known by id, never by href
    assert dp.run(NOW) == 0
    (again,) = _cursor(dp)["collections"].values()  # type: ignore[union-attr]
    assert again["token"] and not str(again["token"]).startswith("fake-")


def test_server_without_sync_collection_uses_etag_listing(
    dp: DavPractice,
    dav_requests: RequestLog,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without RFC 6578 the source is read by a PROPFIND etag listing plus multiget, still 1 request idle."""
    from connectors.caldav.transport import Answer, Transport

    real = Transport.exchange

    def no_sync(self: Transport, method: str, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        if method == "REPORT" and b"sync-collection" in body:
            return Answer(501, {}, b"", url)  # a server that does not implement RFC 6578
        return real(self, method, url, body, headers)

    monkeypatch.setattr(Transport, "exchange", no_sync)
    assert dp.run(NOW) == 0
    (state,) = _cursor(dp)["collections"].values()  # type: ignore[union-attr]
    assert state["mode"] == "propfind"
    assert due_needs(dp.plan(NOW, capsys)) == EXPECTED
    dav_requests.clear()
    assert dp.run(NOW) == 0
    assert dav_requests.methods(dp.source) == ["PROPFIND"]
    dp.remove("cameron-next")
    dp.add("cameron-past", vevent("cameron-past", "Cameron Tate no show", local("2026-03-04 14:00")))
    dav_requests.clear()
    assert dp.run(NOW) == 0
    sent = dav_requests.to(dp.source)
    assert [r.method for r in sent] == ["PROPFIND", "REPORT"] and "cameron-past.ics" in sent[1].body
    lines = dp.plan(NOW, capsys)
    assert vanished(lines)
    assert ("c003", "no_show", "cameron-past|", "2026-03-04T14:50:00-06:00") in due_needs(lines)


def test_unreadable_object_is_skipped_and_logged_without_content(
    dp: DavPractice, capsys: pytest.CaptureFixture[str]
) -> None:
    """An object we cannot use is counted and logged by href only; the pass goes on; no client data leaks."""
    # valid iCalendar (the server takes it) that parse_calendar refuses: a rule finer than hourly
    dp.add(
        "broken",
        vevent(
            "broken", "Avery Quinn private note", local("2026-03-10 10:00"), rrule="FREQ=MINUTELY;COUNT=5"
        ),
    )
    capsys.readouterr()
    assert dp.run(NOW) == 0
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    skipped = [x for x in lines if x["event"] == "source.item.skipped"]
    assert [x["item"] for x in skipped] == [digest(f"{dp.source.path}broken.ics")]  # never the name
    read = next(x for x in lines if x["event"] == "source.read")
    assert read["bad"] == 1
    assert not any(name in err for name in NAMES)
    assert due_needs(dp.plan(NOW, capsys)) == EXPECTED


def test_several_source_calendars(
    dav_server: DavServer, dav_practice: Callable[..., DavPractice], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two source calendars are read together; the same file name in both stays two objects."""
    from tests.practice import vcalendar

    dp = dav_practice(dav_server, clients=CLIENTS)
    second = dav_server.make_collection()
    text = dp.config.read_text()
    dp.config.write_text(
        text.replace(f'urls = ["{dp.source.url}"]', f'urls = ["{dp.source.url}", "{second.url}"]')
    )
    dp.add("a", vevent("emery-last", "Emery Stone", local("2026-03-02 11:00")))
    second.put("a", vcalendar(vevent("avery-x", "Avery Quinn no show", local("2026-03-06 10:00"))))
    assert dp.run(NOW) == 0
    needs = {(n[0], n[1]) for n in due_needs(dp.plan(NOW, capsys))}
    assert needs == {("c005", "not_rebooked"), ("c001", "no_show")}
    assert len(_cursor(dp)["collections"]) == 2  # type: ignore[arg-type]
    second.delete("a")
    assert dp.run(NOW) == 0
    needs = {(n[0], n[1]) for n in due_needs(dp.plan(NOW, capsys))}
    assert ("c005", "not_rebooked") in needs  # removing the other calendar's "a" left this one alone


def _legacy(
    dp: DavPractice,
) -> tuple[dict[str, list[tuple[object, ...]]], dict[str, list[tuple[object, ...]]]]:
    """The state as the last pass wrote it, and the same state as schema 2 held it: items named
    `<url hash>:<href>`, a version-1 cursor keyed by href."""
    from connectors.caldav.transport import short_hash
    from worker.state import TABLES, dump_rows

    with sqlite3.connect(dp.practice.root / "var" / "state.db") as db:
        now_written = dump_rows(db)
    ((_, text, _),) = now_written["cursors"]
    cursor = json.loads(str(text))
    ((url, entry),) = cursor["collections"].items()
    hrefs = {
        caldav_object_id(url, f"{dp.source.path}{n}"): f"{dp.source.path}{n}" for n in dp.source.objects()
    }
    items = {i: f"{short_hash(url)}:{h}" for i, h in hrefs.items()}
    entry["etags"] = {hrefs[i]: tag for i, tag in entry["etags"].items()}
    entry["recurring"] = sorted(hrefs[i] for i in entry["recurring"])
    entry["later"] = sorted(hrefs[i] for i in entry["later"])
    cursor["version"] = 1
    at = TABLES["occurrences"].index("item")
    old = dict(now_written)
    old["occurrences"] = [
        (*r[:at], items.get(str(r[at]), r[at]), *r[at + 1 :]) for r in now_written["occurrences"]
    ]
    old["objects"] = [(s, items[str(i)]) for s, i in now_written["objects"]]
    old["cursors"] = [(s, json.dumps(cursor, sort_keys=True), u) for s, _, u in now_written["cursors"]]
    return now_written, old


def test_a_schema_2_state_migrates_without_a_cold_read(
    dp: DavPractice, dav_requests: RequestLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state holding hrefs (schema 2) migrates to what a pass now writes; the next pass only asks
    what changed, and the next day's re-expansion still fetches the recurring objects by href."""
    from worker.state import State, dump_rows, load_rows

    assert dp.run(NOW) == 0
    expected = due_needs(dp.plan(NOW, capsys))
    now_written, old = _legacy(dp)
    assert any("avery-weekly.ics" in str(r) for r in old["objects"])
    state = State.open(dp.practice.root / "var")
    load_rows(state, old)
    state.conn.execute("PRAGMA user_version = 2")
    state.close()
    state = State.open(dp.practice.root / "var")  # migrates
    assert {t: sorted(r, key=repr) for t, r in dump_rows(state.conn).items()} == now_written
    state.close()
    dav_requests.clear()
    assert dp.run(NOW) == 0
    reports = [r for r in dav_requests.to(dp.source) if r.method == "REPORT"]
    assert [("multiget" in r.body) for r in reports] == [False]  # one sync, no body fetched again
    dav_requests.clear()
    assert dp.run(NEXT_DAY) == 0
    fetched = " ".join(r.body for r in dav_requests.to(dp.source) if "multiget" in r.body)
    assert "avery-weekly.ics" in fetched and "blake-weekly.ics" in fetched
    assert due_needs(dp.plan(NOW, capsys)) == expected


def test_no_table_holds_an_href(dp: DavPractice) -> None:
    """After a pass and a deletion, no text cell of the state holds an href or an object's file name."""
    from tests.integration.test_object_ids import _text_cells

    names = sorted(dp.source.objects())
    assert dp.run(NOW) == 0
    dp.remove("cameron-next")
    assert dp.run(NEXT_DAY) == 0
    cells = list(_text_cells(dp.practice))
    assert any(table == "cursors" for table, _, _ in cells)
    assert [(t, c) for t, c, v in cells if any(n in v for n in names)] == []
