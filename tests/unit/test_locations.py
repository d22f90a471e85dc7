"""The never-write-a-source check compares calendars by identity, not spelling (issue 11 item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.base import folder_locations, normalise_url, source_identities, url_locations
from worker.identity import owner_mark


@pytest.mark.parametrize(
    "spelling",
    [
        "http://127.0.0.1:5232/therapist/%70ractice/",
        "http://localhost:5232/therapist/practice/",
        "http://127.0.0.1:5232//therapist//practice",
        "http://127.0.0.1:5232/therapist/./practice/",
        "http://127.0.0.1:5232/therapist/calls/../practice/",
        "HTTP://127.0.0.1:5232/therapist/practice",
    ],
)
def test_every_spelling_of_a_collection_is_the_same_location(spelling: str) -> None:
    """Percent-escapes, localhost, duplicate slashes, dot segments and case all reach one collection."""
    plain = "http://127.0.0.1:5232/therapist/practice/"
    assert url_locations(spelling) & url_locations(plain)


def test_different_collections_and_ports_stay_apart() -> None:
    """Another path or another port is another collection."""
    base = url_locations("http://127.0.0.1:5232/therapist/practice/")
    assert not base & url_locations("http://127.0.0.1:5232/therapist/calls/")
    assert not base & url_locations("http://127.0.0.1:5233/therapist/practice/")


def test_default_ports_are_explicit() -> None:
    """https without a port is port 443, http port 80."""
    assert normalise_url("https://Dav.Example.org/cal") == "https://dav.example.org:443/cal/"
    assert normalise_url("http://dav.example.org/cal/") == "http://dav.example.org:80/cal/"


def test_a_linked_folder_is_the_same_folder(tmp_path: Path) -> None:
    """A symlink to the calendar folder has the folder's device and inode."""
    real = tmp_path / "calendar"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert folder_locations(tmp_path / "link") & folder_locations(real)
    other = tmp_path / "other"
    other.mkdir()
    assert not folder_locations(other) & folder_locations(real)


def test_owner_mark_is_stable_and_differs_between_practices() -> None:
    """The same sources give the same mark in any order; other sources another one."""
    a = owner_mark(["caldav:http://h:80/a/", "caldav:http://h:80/b/"])
    assert a == owner_mark(["caldav:http://h:80/b/", "caldav:http://h:80/a/"])
    assert a != owner_mark(["caldav:http://h:80/c/"])
    assert len(a) == 16


def test_source_identities_are_spelling_independent() -> None:
    """The owner mark does not change when the source URL is written another way."""

    class Src:
        kind = "caldav"
        path = None
        all_urls = ("http://127.0.0.1:5232/therapist/%70ractice",)
        all_calendar_ids = ()

    class Same(Src):
        all_urls = ("http://127.0.0.1:5232//therapist/practice/",)

    assert source_identities(Src()) == source_identities(Same())  # type: ignore[arg-type]
