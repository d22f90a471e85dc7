"""The practice end to end on every server profile (tests/fakes/caldav_proxy.py: a real Radicale
behind a proxy that answers as Fastmail/Cyrus, iCloud, Nextcloud, SOGo, OX, Zimbra, Stalwart do),
plus the rule of each profile that broke the connector before (issue 13)."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from connectors.caldav import CalDavSink
from tests.contract.test_sink_contract import reminder
from tests.fakes.caldav_proxy import ProfileProxy
from tests.integration.conftest import DavPractice, RequestLog
from tests.integration.test_caldav_faults import assert_one_item_per_need
from tests.integration.test_caldav_passes import (
    NEXT_DAY,
    NOW,
    _cursor,
    _set_cursor,
    components,
    vanished,
)
from tests.practice import local, vcalendar, vevent
from worker.cli import main
from worker.config import load_settings
from worker.errors import ConflictError, RefusedError
from worker.identity import file_name

pytestmark = pytest.mark.usefixtures("fast_retries")

Make = Callable[..., tuple[ProfileProxy, DavPractice]]
END_TO_END = ["cyrus", "icloud", "nextcloud", "sogo", "ox", "zimbra", "stalwart", "throttled", "moved"]


def _sink(dp: DavPractice) -> CalDavSink:
    settings = load_settings(dp.config)
    return CalDavSink(settings, settings.reminders)


@pytest.mark.parametrize("profile", END_TO_END)
def test_practice_end_to_end(
    profile: str, profile_practice: Make, dav_requests: RequestLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every due need gets its event and its task, nothing is falsely cancelled, and a warm pass is cheap."""
    _proxy, dp = profile_practice(profile)
    assert dp.run(NOW) == 0, capsys.readouterr().err[-800:]
    assert_one_item_per_need(dp, capsys)
    assert not vanished(dp.plan(NOW, capsys))
    dav_requests.clear()
    assert dp.run(NOW) == 0
    warm = len(dav_requests.sent)
    # one request per collection (source, events, tasks); a moved server doubles them (301 first)
    limit = 6 if profile == "moved" else 3
    assert warm <= limit + (1 if profile == "icloud" else 0), dav_requests.sent
    assert not [r for r in dav_requests.sent if "calendar-multiget" in r.body or r.method == "GET"]
    print(
        f"\nwarm pass {profile}: {warm} requests, {dav_requests.bytes_out} bytes out, "
        f"{dav_requests.bytes_in} bytes in"
    )


# -- 1. Cyrus/Fastmail, iCloud: a UID once per account -------------------------------------


@pytest.mark.parametrize("profile", ["cyrus", "icloud"])
def test_event_and_task_never_share_a_uid(profile: str, profile_practice: Make) -> None:
    """With the shared legacy UID the task is refused (RefusedError naming the rule); per-kind UIDs both land."""
    proxy, dp = profile_practice(profile)
    proxy.set_profile(flaky_every=0)
    with closing(_sink(dp)) as sink:
        event = replace(reminder(), generation=0)  # the shared form earlier versions wrote
        task = replace(reminder(kind="task"), generation=0)
        sink.create(event)
        with pytest.raises(
            RefusedError, match="another calendar of this account holds an item with this UID"
        ):
            sink.create(task)
        sink.create(replace(event, generation=1))
        sink.create(replace(task, generation=1))
        kinds = {(i.kind, i.generation) for i in sink.managed()}
        assert {("event", 1), ("task", 1)} <= kinds


# -- 2. Nextcloud: the trash bin refuses the third DELETE of one name ------------------------


def test_trash_bin_third_delete_of_one_name_is_refused_fresh_names_are_not(profile_practice: Make) -> None:
    """The same name created and deleted a third time is refused (per item, sabre's reason); fresh generations are not."""
    proxy, dp = profile_practice("nextcloud")
    with closing(_sink(dp)) as sink:

        def cycle(generation: int) -> None:
            sink.managed()
            sink.create(replace(reminder(), generation=generation))
            (item,) = [i for i in sink.managed() if i.generation == generation]
            sink.withdraw(item, note="resolved", delete=True)

        for generation in (1, 2, 3, 4):
            cycle(generation)
        assert not proxy.state.refused
        cycle(5)
        cycle(5)
        with pytest.raises(RefusedError, match=r"HTTP 403 Forbidden.*moved into the trash"):
            cycle(5)


# -- 3. Nextcloud: private objects hidden from a sharee ---------------------------------------


def test_appointment_made_private_is_not_a_cancellation(
    profile_practice: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listed by sync but hidden from the multiget (CLASS:PRIVATE through a share): kept as it was, not cancelled."""
    _proxy, dp = profile_practice("nextcloud")
    assert dp.run(NOW) == 0
    body = dp.source.get("cameron-next").replace(b"BEGIN:VEVENT\r\n", b"BEGIN:VEVENT\r\nCLASS:PRIVATE\r\n")
    dp.source.put("cameron-next", body)
    capsys.readouterr()
    assert dp.run(NOW) == 0
    assert '"event": "source.item.hidden"' in capsys.readouterr().err
    assert not vanished(dp.plan(NOW, capsys))


# -- 8. SOGo, Zimbra: If-None-Match ignored ----------------------------------------------------


@pytest.mark.parametrize("profile", ["sogo", "zimbra"])
def test_create_never_overwrites_where_if_none_match_is_ignored(profile: str, profile_practice: Make) -> None:
    """An object already at our name is found by the listing first, so the create adopts or refuses, never overwrites."""
    _proxy, dp = profile_practice(profile)
    mine = reminder()
    name = f"callsheet-{mine.key}-e1"
    dp.events.put(name, vcalendar(vevent(name, "Not ours", local("2026-03-12 12:00"))))
    with closing(_sink(dp)) as sink:
        sink.managed()
        with pytest.raises(ConflictError):
            sink.create(mine)
        assert b"Not ours" in dp.events.get(name)


# -- 11. Zimbra: a cancelled session of a series is stored as an EXDATE -----------------------

EMERY_SERIES = vevent("emery-weekly", "Emery Stone", local("2026-03-04 11:00"), rrule="FREQ=WEEKLY;COUNT=3")
EMERY_CANCELLED = vevent(
    "emery-weekly",
    "Emery Stone",
    local("2026-03-18 11:00"),
    recurrence_id=local("2026-03-18 11:00"),
    status="CANCELLED",
    last_modified=local("2026-03-11 12:30"),
)


def _emery(lines: list[dict[str, str]]) -> list[tuple[str, str, str, str]]:
    return [(x["reason"], x["anchor"], x["state"], x["due"]) for x in lines if x["client"] == "c005"]


@pytest.mark.parametrize("quirk", [True, False])
def test_zimbra_cancelled_session_counts_with_exdate_is_cancellation(
    quirk: bool, profile_practice: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    """The calendar app cancels next week's last session, Zimbra stores an EXDATE: with the quirk a call follows, without it none."""
    proxy, dp = profile_practice("zimbra")
    if quirk:
        dp.practice.source += "exdate_is_cancellation = true\n"
        dp.practice.write_config()
    server, where = dp.source.server, f"{dp.source.path}emery-weekly.ics"

    def put_through_zimbra(*parts: str) -> None:
        status, _, _ = server._request("PUT", where, vcalendar(*parts).encode(), {}, port=proxy.port)
        assert status in (201, 204)

    put_through_zimbra(EMERY_SERIES)
    assert dp.run(NOW) == 0, capsys.readouterr().err[-800:]
    assert _emery(dp.plan(NOW, capsys)) == []  # 18 March is booked
    put_through_zimbra(EMERY_SERIES, EMERY_CANCELLED)
    stored = dp.source.get("emery-weekly")
    assert b"EXDATE;TZID=America/Chicago:20260318T110000" in stored and b"CANCELLED" not in stored
    assert dp.run(NEXT_DAY) == 0, capsys.readouterr().err[-800:]
    if not quirk:  # the session never existed: Emery was last seen on 11 March
        assert _emery(dp.plan(NEXT_DAY, capsys)) == [
            ("not_rebooked", "emery-weekly|20260311T160000Z", "upcoming", "2026-03-18T11:50:00-05:00")
        ]
        return
    # cancelled when the pass noticed (NEXT_DAY), so due after cancel_grace (2 days)
    anchor = "emery-weekly|20260318T160000Z"
    assert _emery(dp.plan(NEXT_DAY, capsys)) == [
        ("cancelled_not_rebooked", anchor, "upcoming", "2026-03-14T12:00:00-05:00")
    ]
    later = "2026-03-14T13:00:00-05:00"
    assert dp.run(later) == 0, capsys.readouterr().err[-800:]
    [line] = [x for x in dp.plan(later, capsys) if x["client"] == "c005"]
    assert (line["reason"], line["state"], line["action"]) == ("cancelled_not_rebooked", "due", "keep")
    for collection, kind in ((dp.events, "event"), (dp.tasks, "task")):
        assert file_name(line["key"], kind, 1) in collection.objects()


# -- 10. OX, SOGo, Stalwart: an unknown token answered with an ordinary 207 ------------------


@pytest.mark.parametrize("profile", ["sogo", "ox"])
def test_deletion_hidden_by_a_forgotten_token_is_found_within_a_day(
    profile: str, profile_practice: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that answers a forgotten token with an empty 207 hides a deletion until the daily full listing."""
    _proxy, dp = profile_practice(profile)
    assert dp.run(NOW) == 0
    cursor = _cursor(dp)
    (state,) = cursor["collections"].values()  # type: ignore[union-attr]
    state["token"] = "http://radicale.org/ns/sync/" + "0" * 64  # forgotten during an outage
    _set_cursor(dp, cursor)
    dp.remove("cameron-next")
    assert dp.run(NOW) == 0
    assert not vanished(dp.plan(NOW, capsys))  # hidden today...
    assert dp.run(NEXT_DAY) == 0
    assert vanished(dp.plan(NEXT_DAY, capsys))  # ...found by the next day's full listing


def test_ox_withdrawals_carry_if_match(profile_practice: Make, capsys: pytest.CaptureFixture[str]) -> None:
    """OX refuses a PUT without If-Match: completing a task and deleting an event both carry it and succeed."""
    proxy, dp = profile_practice("ox")
    assert dp.run(NOW) == 0
    need = next(x for x in dp.plan(NOW, capsys) if x["reason"] == "not_rebooked")
    dp.add("emery-next", vevent("emery-next", "Emery Stone", local("2026-03-18 11:00")))
    assert dp.run(NOW) == 0
    assert not proxy.state.refused
    assert need["key"] not in components(dp.events.objects(), "VEVENT")
    assert str(components(dp.tasks.objects(), "VTODO")[need["key"]]["STATUS"]) == "COMPLETED"


# -- 6. a truncated listing is partial ------------------------------------------------------


def test_truncated_full_listing_derives_no_deletions(
    profile_practice: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token-less listing cut short (507 inside the multistatus, no new token) deletes nothing."""
    proxy, dp = profile_practice("stalwart")
    proxy.set_profile(truncate_sync=0)
    assert dp.run(NOW) == 0
    before = _cursor(dp)
    proxy.set_profile(truncate_sync=2)
    capsys.readouterr()
    assert dp.run(NEXT_DAY) == 0  # the window moved: a full, token-less listing, truncated
    assert '"event": "source.sync.partial"' in capsys.readouterr().err
    assert not vanished(dp.plan(NEXT_DAY, capsys))
    (old,) = before["collections"].values()  # type: ignore[union-attr]
    (new,) = _cursor(dp)["collections"].values()  # type: ignore[union-attr]
    assert set(new["etags"]) == set(old["etags"])  # nothing dropped from what was known


# -- 5. throttling on the sync REPORT -------------------------------------------------------


def test_throttled_sync_is_retried_after_the_delay_without_a_full_download(
    profile_practice: Make, dav_requests: RequestLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 429 with Retry-After on the sync REPORT is retried after the delay; no calendar-query, the token is kept."""
    proxy, dp = profile_practice("throttled", timeout="5s")
    assert dp.run(NOW) == 0
    token = _cursor(dp)["collections"]
    proxy.set_profile(throttle_sync=proxy.state.sync_reports + 1)
    dav_requests.clear()
    capsys.readouterr()
    assert dp.run(NOW) == 0
    err = capsys.readouterr().err
    retries = [json.loads(x) for x in err.splitlines() if '"connector.retry"' in x]
    assert retries and retries[0]["retry_after"] == 1.0 and retries[0]["operation"] == "sync"
    source = dav_requests.to(dp.source)
    assert [r.method for r in source] == ["REPORT", "REPORT"]
    assert all("sync-collection" in r.body for r in source)
    after = _cursor(dp)["collections"]
    assert next(iter(after.values()))["token"]  # type: ignore[union-attr,index]
    assert token.keys() == after.keys()  # type: ignore[union-attr]


# -- 7. redirects ---------------------------------------------------------------------------


def test_redirect_302_is_an_error_naming_the_location(
    profile_practice: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 302 (which would turn PUT into GET) is not followed: the pass fails naming where the server points."""
    proxy, dp = profile_practice("moved302")
    capsys.readouterr()
    assert dp.run(NOW) == 1
    err = capsys.readouterr().err
    assert "redirects (HTTP 302) to" in err and f"127.0.0.1:{proxy.port}{dp.source.path}" in err


def test_state_and_cache_files_are_private(profile_practice: Make) -> None:
    """The sink's etag cache holds no client names and is readable by its owner only."""
    _proxy, dp = profile_practice("cyrus")
    assert dp.run(NOW) == 0
    caches = list(Path(dp.practice.root / "var").glob("caldav-sink-*.json"))
    assert caches and all(p.stat().st_mode & 0o077 == 0 for p in caches)
    text = caches[0].read_text()
    assert not any(name in text for name in ("Avery", "Quinn", "Blake", "Cameron", "Emery"))


def test_check_runs_again_and_again_on_nextcloud(
    profile_practice: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check`'s write probe takes a fresh name each run: the trash bin never refuses its DELETE."""
    proxy, dp = profile_practice("nextcloud")
    for _ in range(3):
        capsys.readouterr()
        assert main(["--config", str(dp.config), "check"]) == 0, capsys.readouterr().out
    assert not proxy.state.refused
