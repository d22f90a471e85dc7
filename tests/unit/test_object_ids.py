"""worker.object_ids: the digests the state keeps for source objects, and the upgrade of the cursors
schema 2 stored (by name) into the shapes the connectors now write (by id)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from connectors.caldav.transport import short_hash
from connectors.google.source import GoogleSource
from worker.object_ids import (
    CALDAV_CURSOR,
    GOOGLE_CURSOR,
    VDIR_CURSOR,
    caldav_object_id,
    google_object_id,
    object_id,
    pack_stamps,
    upgrade_cursor,
)

URL = "https://dav.example.org/cal/therapist/appointments/"
WINDOW = ["2026-02-09T00:00:00-06:00", "2026-09-08T00:00:00-05:00"]


def test_object_id_is_a_stable_digest() -> None:
    """An id is 32 hex characters, the same for the same name, different for another; '' stays ''."""
    one = object_id("Avery Quinn 2026-03-03.ics")
    assert len(one) == 32 and int(one, 16) >= 0
    assert one == object_id("Avery Quinn 2026-03-03.ics") != object_id("Avery Quinn 2026-03-04.ics")
    assert object_id("") == ""
    assert len(object_id("bad-\udcff.ics")) == 32  # a file name that is not UTF-8


def test_caldav_ids_keep_the_old_url_prefix() -> None:
    """A CalDAV id is the digest of the schema-2 id (`<short_hash(url)>:<path>`), so old rows map onto it."""
    path = "/cal/therapist/appointments/avery@example.org.ics"
    assert caldav_object_id(URL, path) == object_id(f"{short_hash(URL)}:{path}")
    assert GoogleSource._item("primary", "abc123") == google_object_id("primary", "abc123")
    assert google_object_id("primary", "abc123") == object_id("primary/abc123")


def test_vdir_cursor_of_schema_2_is_upgraded() -> None:
    """A vdir cursor keyed by file name comes back keyed by id, the stamps and window as they were."""
    old = {
        "files": {"Avery Quinn.ics": [812, 1770000000000000000], "weekly.ics": [900, 1770000001000000000]},
        "revisit": ["weekly.ics"],
        "window": WINDOW,
    }
    assert upgrade_cursor(old) == {
        "v": VDIR_CURSOR,
        "files": pack_stamps(
            {
                object_id("Avery Quinn.ics"): "812/1770000000000000000",
                object_id("weekly.ics"): "900/1770000001000000000",
            }
        ),
        "revisit": [object_id("weekly.ics")],
        "window": WINDOW,
    }
    # the oldest shape named them `recurring`
    legacy = {"files": {"weekly.ics": [1, 2]}, "recurring": ["weekly.ics"], "window": WINDOW}
    assert upgrade_cursor(legacy) == {
        "v": VDIR_CURSOR,
        "files": pack_stamps({object_id("weekly.ics"): "1/2"}),
        "revisit": [object_id("weekly.ics")],
        "window": WINDOW,
    }


def test_caldav_cursor_of_schema_2_is_upgraded() -> None:
    """A CalDAV cursor keyed by href comes back keyed by id; token, mode, window and resolution stay."""
    href = "/cal/therapist/appointments/avery@example.org.ics"
    old = {
        "version": 1,
        "window": WINDOW,
        "collections": {
            URL: {"mode": "sync", "token": "t-1", "etags": {href: '"e1"'}, "recurring": [href], "later": []}
        },
        "resolved": {"name": "Appointments", "from": URL, "url": URL},
    }
    new = upgrade_cursor(old)
    ident = caldav_object_id(URL, href)
    assert new == {
        "version": CALDAV_CURSOR,
        "window": WINDOW,
        "collections": {
            URL: {"mode": "sync", "token": "t-1", "etags": {ident: '"e1"'}, "recurring": [ident], "later": []}
        },
        "resolved": {"name": "Appointments", "from": URL, "url": URL},
    }
    assert "avery" not in json.dumps(new)


def test_google_cursor_of_schema_2_is_upgraded() -> None:
    """A Google cursor listing event ids comes back mapping ids of (calendar, event) to an unknown end."""
    old = {"v": 1, "window": WINDOW, "calendars": {"primary": {"token": "s-1", "items": ["evt2", "evt1"]}}}
    ids = sorted([google_object_id("primary", "evt1"), google_object_id("primary", "evt2")])
    assert upgrade_cursor(old) == {
        "v": GOOGLE_CURSOR,
        "window": WINDOW,
        "calendars": {"primary": {"token": "s-1", "items": dict.fromkeys(ids)}},
    }


def test_google_cursor_of_version_2_keeps_its_token_and_ids() -> None:
    """A version-2 Google cursor (object ids, no ends) becomes version 3: same token, same ids, ends unknown."""
    ids = [google_object_id("primary", "evt2"), google_object_id("primary", "evt1")]
    old = {"v": 2, "window": WINDOW, "calendars": {"primary": {"token": "s-1", "items": ids}, "bad": 3}}
    new = upgrade_cursor(old)
    assert new == {
        "v": GOOGLE_CURSOR,
        "window": WINDOW,
        "calendars": {"primary": {"token": "s-1", "items": dict.fromkeys(sorted(ids))}},
    }
    assert GOOGLE_CURSOR == 3 and upgrade_cursor(new) == new


@given(st.lists(st.text("ghijklmnopqrstuvwxyz .-", min_size=3, max_size=12), unique=True, max_size=6))
def test_upgrade_is_idempotent_and_leaves_other_shapes(names: list[str]) -> None:
    """Upgrading an upgraded cursor changes nothing; an unknown shape or None passes through as it is."""
    old = {"files": {n: [1, 2] for n in names}, "revisit": names[:1], "window": WINDOW}
    once = upgrade_cursor(old)
    assert upgrade_cursor(once) == once
    assert upgrade_cursor(None) is None and upgrade_cursor({"v": 9, "files": {}}) == {"v": 9, "files": {}}
    assert isinstance(once, dict)
    stored = json.dumps([sorted(once["files"]), once["revisit"]])
    assert not any(n in stored for n in names)  # none of them is hex: no chance match
