"""Discovery on real servers: a URL that is not a calendar is a config error listing the calendars;
calendars may be named by display name; `check --list` prints every calendar (issue 13, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import PASSWORD, USERNAME, DavCollection, DavServer
from tests.practice import Practice, local, vcalendar, vevent
from worker.cli import main

NOW = "2026-03-11T12:00:00-05:00"


def _calendars(server: DavServer, tag: str) -> tuple[DavCollection, DavCollection, DavCollection]:
    """Three calendars with display names ending in `tag` (the server is shared by several tests)."""
    source = server.make_collection(display=f"Practice {tag}")
    source.put("x", vcalendar(vevent("x", "Avery Quinn no show", local("2026-03-10 10:00"))))
    events = server.make_collection(display=f"Client calls {tag}")
    return source, events, server.make_collection(components=("VTODO",), display=f"Call tasks {tag}")


def _config(root: Path, source: str, reminders: str, *, auth: bool) -> Path:
    account = ""
    if auth:
        (root / "secrets").mkdir(parents=True, exist_ok=True)
        (root / "secrets" / "dav").write_text(PASSWORD + "\n", encoding="utf-8")
        account = f'username = "{USERNAME}"\npassword_file = "secrets/dav"\n'
    return Practice(
        root,
        source=f'kind = "caldav"\n{source}\n{account}',
        reminders=f'kind = "caldav"\n{reminders}\n{account}',
    ).config


@pytest.mark.parametrize("where", ["root", "home"])
def test_url_that_is_not_a_calendar_is_a_config_error_listing_them(
    radicale_auth: DavServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """The server root or the calendar home as the source URL: exit 2, and the message lists the calendars."""
    source, events, tasks = _calendars(radicale_auth, where)
    url = radicale_auth.url if where == "root" else f"{radicale_auth.url.rstrip('/')}{radicale_auth.home}"
    config = _config(
        tmp_path, f'url = "{url}"', f'events_url = "{events.url}"\ntasks_url = "{tasks.url}"', auth=True
    )
    capsys.readouterr()
    assert main(["--config", str(config), "run", "--once", "--now", NOW]) == 2
    err = capsys.readouterr().err
    assert "is not a calendar collection" in err
    assert f'"Practice {where}" {source.url} [VEVENT]' in err
    assert f'"Call tasks {where}" {tasks.url} [VTODO]' in err


def test_calendars_named_by_display_name(
    radicale_auth: DavServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`calendar`, `events_calendar` and `tasks_calendar` name calendars by display name from the server's root."""
    _source, events, tasks = _calendars(radicale_auth, "named")
    config = _config(
        tmp_path,
        f'url = "{radicale_auth.url}"\ncalendar = "practice  NAMED"',
        f'url = "{radicale_auth.url}"\nevents_calendar = "Client calls named"\ntasks_calendar = "Call tasks named"',
        auth=True,
    )
    assert main(["--config", str(config), "run", "--once", "--now", NOW]) == 0
    assert len(events.objects()) == 1 and len(tasks.objects()) == 1
    assert main(["--config", str(config), "run", "--once", "--now", NOW]) == 0


def test_unknown_display_name_lists_the_calendars(
    radicale_auth: DavServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A display name no calendar has is a config error that lists the calendars there are."""
    _calendars(radicale_auth, "unknown")
    config = _config(
        tmp_path, f'url = "{radicale_auth.url}"\ncalendar = "Praxis"', 'events_calendar = "x"', auth=True
    )
    capsys.readouterr()
    assert main(["--config", str(config), "run", "--once", "--now", NOW]) == 2
    err = capsys.readouterr().err
    assert 'no calendar is called "Praxis"' in err and '"Practice unknown"' in err


def test_check_list_prints_every_calendar(
    dav_server: DavServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check --list` prints each calendar with display name, URL and component set."""
    source, events, tasks = _calendars(dav_server, "listed")
    config = _config(
        tmp_path,
        f'url = "{source.url}"',
        f'events_url = "{events.url}"\ntasks_url = "{tasks.url}"',
        auth=False,
    )
    capsys.readouterr()
    assert main(["--config", str(config), "check", "--list"]) == 0
    out = capsys.readouterr().out
    assert f'"Client calls listed" {events.url} [VEVENT]' in out
    assert f'"Call tasks listed" {tasks.url} [VTODO]' in out
