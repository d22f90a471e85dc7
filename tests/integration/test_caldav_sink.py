"""The CalDAV sink on real servers: the sink contract every sink keeps, plus the CalDAV specifics
(If-Match / If-None-Match, the therapist's edits, VTODO collections, authentication, errors)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import icalendar
import pytest

from connectors.caldav import CalDavSink, CalDavSource
from tests.contract.test_sink_contract import SinkContract, reminder
from tests.integration.conftest import PASSWORD, USERNAME, DavCollection, DavServer
from tests.practice import Practice, local, vcalendar, vevent
from worker.cli import main
from worker.config import load_settings
from worker.errors import AuthError, ConfigError, ConflictError, ConnectorError, NotFoundError
from worker.identity import item_uid

NOW = "2026-03-11T12:00:00-05:00"


def _practice(
    root: Path, events: str, tasks: str, *, source: str | None = None, account: str = ""
) -> Practice:
    source_text = (
        f'kind = "caldav"\nurl = "{source}"\n{account}' if source else 'kind = "vdir"\npath = "calendar"\n'
    )
    reminders = f'kind = "caldav"\nevents_url = "{events}"\ntasks_url = "{tasks}"\n{account}'
    return Practice(root, source=source_text, reminders=reminders)


def _sink(root: Path, events: DavCollection, tasks: DavCollection) -> CalDavSink:
    settings = load_settings(_practice(root, events.url, tasks.url).config)
    return CalDavSink(settings, settings.reminders)


class TestCalDavSink(SinkContract):
    """The shared sink contract, on Radicale and on Xandikos."""

    @pytest.fixture
    def sink(self, dav_server: DavServer, tmp_path: Path) -> Iterator[CalDavSink]:
        events = dav_server.make_collection()
        tasks = dav_server.make_collection(components=("VTODO",))
        sink = _sink(tmp_path, events, tasks)
        yield sink
        sink.close()


@pytest.fixture
def collections(dav_server: DavServer) -> tuple[DavCollection, DavCollection]:
    """A fresh events collection and a fresh VTODO collection."""
    return dav_server.make_collection(), dav_server.make_collection(components=("VTODO",))


def _edit(collection: DavCollection, key: str, summary: str) -> None:
    """The therapist edits our event in her calendar app (a plain PUT over it)."""
    name = item_uid(key, "event", 1)
    cal = icalendar.Calendar.from_ical(collection.get(name))
    for comp in cal.walk("VEVENT"):
        comp["SUMMARY"] = summary
        del comp["DTSTART"]
        del comp["DTEND"]
        comp.add("dtstart", local("2026-03-12 16:00"))
        comp.add("dtend", local("2026-03-12 16:15"))
    collection.put(name, cal.to_ical())


def test_update_never_overwrites_the_therapists_edit(
    collections: tuple[DavCollection, DavCollection], tmp_path: Path
) -> None:
    """An update from an item read before the therapist's edit is refused (412 -> ConflictError)."""
    events, tasks = collections
    sink = _sink(tmp_path, events, tasks)
    sink.create(reminder())
    (item,) = sink.managed()
    _edit(events, item.key, "moved by me")
    with pytest.raises(ConflictError):
        sink.update(reminder(text="second"), item)
    assert b"moved by me" in events.get(item_uid(item.key, "event", 1))
    sink.close()


def test_withdraw_with_stale_etag_keeps_the_item(
    collections: tuple[DavCollection, DavCollection], tmp_path: Path
) -> None:
    """Deleting an event the therapist changed since we read it is refused; the item stays."""
    events, tasks = collections
    sink = _sink(tmp_path, events, tasks)
    sink.create(reminder())
    (item,) = sink.managed()
    _edit(events, item.key, "moved by me")
    with pytest.raises(ConflictError):
        sink.withdraw(item, note="resolved", delete=True)
    assert b"moved by me" in events.get(item_uid(item.key, "event", 1))
    (fresh,) = sink.managed()
    sink.withdraw(fresh, note="resolved", delete=True)
    assert sink.managed() == []
    sink.close()


def test_foreign_objects_are_never_listed_or_touched(
    collections: tuple[DavCollection, DavCollection], tmp_path: Path
) -> None:
    """The therapist's own events in the reminders calendar are not ours: not listed, not purged."""
    events, tasks = collections
    events.put("lunch", vcalendar(vevent("lunch", "Lunch", local("2026-03-12 12:00"))))
    sink = _sink(tmp_path, events, tasks)
    sink.create(reminder())
    assert [i.key for i in sink.managed()] == [reminder().key]
    for item in sink.managed():
        sink.delete(item)
    assert set(events.objects()) == {"lunch.ics"}
    sink.close()


def test_create_refuses_a_name_held_by_someone_else(
    collections: tuple[DavCollection, DavCollection], tmp_path: Path
) -> None:
    """If our resource name holds an object without our key, create raises instead of overwriting."""
    events, tasks = collections
    uid = item_uid(reminder().key, "event", 1)
    events.put(uid, vcalendar(vevent(uid, "Not ours", local("2026-03-12 12:00"))))
    sink = _sink(tmp_path, events, tasks)
    with pytest.raises(ConflictError):
        sink.create(reminder())
    assert b"Not ours" in events.get(uid)
    sink.close()


def test_events_only_collection_and_tasks(dav_server: DavServer, tmp_path: Path) -> None:
    """check's description says an events-only tasks collection refuses VTODO; Xandikos does refuse."""
    events, events_only = dav_server.make_collection(), dav_server.make_collection()
    sink = _sink(tmp_path, events, events_only)
    (_, tasks_line) = sink.describe()
    assert "does NOT accept tasks (VTODO)" in tasks_line and events_only.url in tasks_line
    if dav_server.kind == "xandikos":  # Radicale stores it anyway
        with pytest.raises(ConnectorError, match="supports VTODO") as caught:
            sink.create(reminder("task"))
        assert not isinstance(caught.value, AuthError | ConflictError)
    good = dav_server.make_collection(components=("VTODO",))
    ok_sink = _sink(tmp_path / "ok", events, good)
    assert "accepts tasks (VTODO)" in ok_sink.describe()[1]
    ok_sink.create(reminder("task"))
    assert [i.kind for i in ok_sink.managed()] == ["task"]
    sink.close()
    ok_sink.close()


def test_source_describe_names_the_calendar(dav_server: DavServer, tmp_path: Path) -> None:
    """The source's check line names the calendar URL and the components it holds."""
    source = dav_server.make_collection()
    events, tasks = dav_server.make_collection(), dav_server.make_collection(components=("VTODO",))
    settings = load_settings(_practice(tmp_path, events.url, tasks.url, source=source.url).config)
    reader = CalDavSource(settings, settings.source)
    (first, *_) = reader.describe()
    assert source.url in first and "VEVENT" in first
    reader.close()


def test_reminders_must_not_point_at_the_source(dav_server: DavServer, tmp_path: Path) -> None:
    """Configuring the source calendar as the reminders calendar is a config error."""
    source = dav_server.make_collection()
    tasks = dav_server.make_collection(components=("VTODO",))
    settings = load_settings(_practice(tmp_path, source.url, tasks.url, source=source.url).config)
    with pytest.raises(ConfigError, match="source calendar"):
        CalDavSink(settings, settings.reminders)


# -- authentication and errors on the command line ------------------------------------------


def _auth_practice(server: DavServer, root: Path, secret: str) -> Practice:
    source = server.make_collection()
    events, tasks = server.make_collection(), server.make_collection(components=("VTODO",))
    source.put("x", vcalendar(vevent("x", "Avery Quinn no show", local("2026-03-10 10:00"))))
    (root / "secrets").mkdir(parents=True)
    (root / "secrets" / "dav").write_text(secret + "\n", encoding="utf-8")
    account = f'username = "{USERNAME}"\npassword_file = "secrets/dav"\n'
    return _practice(root, events.url, tasks.url, source=source.url, account=account)


def test_password_file_authenticates(radicale_auth: DavServer, tmp_path: Path) -> None:
    """With the right password in password_file a pass reads and writes through HTTP Basic auth."""
    practice = _auth_practice(radicale_auth, tmp_path, PASSWORD)
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 0
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 0


def test_password_env_authenticates(
    radicale_auth: DavServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """password_env names the variable holding the password; nothing is inlined."""
    practice = _auth_practice(radicale_auth, tmp_path, "unused")
    text = practice.config.read_text().replace('password_file = "secrets/dav"', 'password_env = "DAV_PW"')
    practice.config.write_text(text)
    monkeypatch.setenv("DAV_PW", PASSWORD)
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 0


def test_wrong_password_exits_3_naming_the_url(
    radicale_auth: DavServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused password is 'authorisation needed' (exit 3), naming the URL and never the password."""
    practice = _auth_practice(radicale_auth, tmp_path, "wrong-password-123")
    capsys.readouterr()
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 3
    err = capsys.readouterr().err
    assert "authorisation needed" in err and f"http://127.0.0.1:{radicale_auth.port}/" in err
    assert "401" in err and "wrong-password-123" not in err and PASSWORD not in err


def test_refused_password_backs_off_until_fixed(
    radicale_auth: DavServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a 401 the next passes wait (no login attempt, the message says until when); check tries at once; a new password is tried at once."""
    practice = _auth_practice(radicale_auth, tmp_path, "wrong-password-123")
    seen = _http_statuses(monkeypatch)
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 3
    assert seen == [("PROPFIND", 401)]  # one refused login per pass, no negotiation round
    seen.clear()
    capsys.readouterr()
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 3
    assert seen == []  # the server is left alone while the wait lasts
    err = capsys.readouterr().err
    assert "waits until" in err and "callsheet check" in err
    assert main(["--config", str(practice.config), "check"]) == 3  # authorisation needed
    assert ("PROPFIND", 401) in seen
    seen.clear()
    (tmp_path / "secrets" / "dav").write_text(PASSWORD + "\n", encoding="utf-8")
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 0
    assert seen and all(status < 400 for _, status in seen)


def test_missing_calendar_fails_the_pass_naming_it(
    dav_server: DavServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source URL that is not a calendar (here: none at all) is a config error (exit 2) naming the URL."""
    events, tasks = dav_server.make_collection(), dav_server.make_collection(components=("VTODO",))
    missing = f"{dav_server.url}{dav_server.home.strip('/')}/no-such-calendar/"
    practice = _practice(tmp_path, events.url, tasks.url, source=missing)
    capsys.readouterr()
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 2
    err = capsys.readouterr().err
    assert "is not a calendar collection" in err and missing in err


def test_password_in_url_is_refused(
    dav_server: DavServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL carrying user:password is a config error (exit 2) that does not print the password."""
    events, tasks = dav_server.make_collection(), dav_server.make_collection(components=("VTODO",))
    inline = events.url.replace("http://", "http://me:hunter2-secret@")
    practice = _practice(tmp_path, inline, tasks.url)
    capsys.readouterr()
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 2
    err = capsys.readouterr().err
    assert "password_file" in err and "hunter2-secret" not in err


def test_not_found_maps_to_not_found_error(dav_server: DavServer, tmp_path: Path) -> None:
    """Listing a reminders collection that is gone raises NotFoundError naming its URL."""
    events, tasks = dav_server.make_collection(), dav_server.make_collection(components=("VTODO",))
    sink = _sink(tmp_path, events, tasks)
    events_path = events.path
    events.server._request("DELETE", events_path)
    with pytest.raises(NotFoundError, match=events.url):
        sink.managed()
    sink.close()


# -- HTTPS ------------------------------------------------------------------------------------


def _http_statuses(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record every HTTP exchange (method, status), below the transport's retries and 401 negotiation."""
    from connectors.caldav.transport import Answer, Transport

    seen: list[tuple[str, int]] = []
    original = Transport.exchange

    def recording(self: Transport, method: str, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        answer = original(self, method, url, body, headers)
        seen.append((method, answer.status))
        return answer

    monkeypatch.setattr(Transport, "exchange", recording)
    return seen


def test_https_certificate_is_verified_by_default(
    xandikos_tls_auth: DavServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A self-signed certificate is refused (exit 1, not retried) unless verify_tls = false."""
    practice = _auth_practice(xandikos_tls_auth, tmp_path, PASSWORD)
    capsys.readouterr()
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 1
    err = capsys.readouterr().err
    assert "TLS certificate was not accepted" in err and "connector.retry" not in err


def test_https_basic_auth_goes_with_the_first_request(
    xandikos_tls_auth: DavServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTPS the password goes with the first request: an idle pass is 3 exchanges, no 401."""
    practice = _auth_practice(xandikos_tls_auth, tmp_path, PASSWORD)
    text = practice.config.read_text().replace(
        'password_file = "secrets/dav"\n', 'password_file = "secrets/dav"\nverify_tls = false\n'
    )
    practice.config.write_text(text)
    seen = _http_statuses(monkeypatch)
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 0
    assert 401 not in [status for _, status in seen] and ("PUT", 201) in seen
    seen.clear()
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 0
    # one sync REPORT for the source, one PROPFIND listing per reminders collection
    assert seen == [("REPORT", 207), ("PROPFIND", 207), ("PROPFIND", 207)]


def test_https_wrong_password_exits_3(
    xandikos_tls_auth: DavServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong password over HTTPS is 'authorisation needed' (exit 3) after one fallback attempt."""
    practice = _auth_practice(xandikos_tls_auth, tmp_path, "not-the-password")
    text = practice.config.read_text().replace(
        'password_file = "secrets/dav"\n', 'password_file = "secrets/dav"\nverify_tls = false\n'
    )
    practice.config.write_text(text)
    capsys.readouterr()
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOW]) == 3
    err = capsys.readouterr().err
    assert "authorisation needed" in err and "not-the-password" not in err


def test_check_lists_the_calendars_and_proves_writes(
    dav_server: DavServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callsheet check` on CalDAV names each calendar, says the tasks one takes VTODO, and writes a probe of each kind."""
    source = dav_server.make_collection()
    source.put("visit", vcalendar(vevent("visit", "Avery Quinn", local("2026-03-12 10:00"))))
    events, tasks = dav_server.make_collection(), dav_server.make_collection(components=("VTODO",))
    config = _practice(tmp_path, events.url, tasks.url, source=source.url).config
    capsys.readouterr()
    assert main(["--config", str(config), "check", "--write-probe"]) == 0
    out = capsys.readouterr().out
    assert "source calendar " in out and f"{source.url} [VEVENT]" in out
    assert f"{tasks.url} [VTODO]; accepts tasks (VTODO)" in out
    assert "[ok] reminders: can write events" in out and "[ok] reminders: can write tasks" in out
    assert "all checks passed" in out
