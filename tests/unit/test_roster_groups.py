"""Roster matching for one-word phrases and couples, and the roster loader's checks of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.attendance import MarkerRules
from worker.config import load_roster
from worker.errors import ConfigError
from worker.model import Attendee, Client, ClientId, Event
from worker.onboarding.events import Labeller
from worker.roster import AMBIGUOUS, Roster, shared_one_word

START = datetime(2026, 3, 10, 15, tzinfo=UTC)


def _event(summary: str, *emails: str) -> Event:
    return Event(
        uid="u",
        recurrence_id="",
        start=START,
        end=START + timedelta(minutes=50),
        summary=summary,
        attendees=tuple(Attendee(e) for e in emails),
    )


def _client(
    cid: str,
    name: str,
    *,
    match: tuple[str, ...] = (),
    emails: tuple[str, ...] = (),
    members: tuple[str, ...] = (),
) -> Client:
    return Client(
        id=ClientId(cid),
        name=name,
        alias=name[:1] + ".",
        match=match,
        emails=emails,
        members=tuple(ClientId(m) for m in members),
    )


def test_a_one_word_match_phrase_equal_to_a_one_word_name_matches():
    """A draft entry name = "Liam", match = ["Liam"]: the phrase she accepted is not silently dropped."""
    roster = Roster.of([_client("c001", "Liam", match=("Liam",))])
    assert roster.match(_event("Liam 2pm")) == "c001"


def test_a_one_word_name_alone_still_never_matches():
    """Without a match phrase a first name in the title is not enough."""
    roster = Roster.of([_client("c001", "Liam")])
    assert roster.match(_event("Liam")) is None


def test_a_shared_one_word_phrase_is_ambiguous_and_reported():
    """Two clients with match = ["Sam"]: the event is skipped and check names the ids."""
    clients = [_client("c001", "Sam Ray", match=("Sam",)), _client("c002", "Sam Cole", match=("Sam",))]
    assert Roster.of(clients).match(_event("Sam")) is AMBIGUOUS
    assert shared_one_word(clients) == [("sam", ("c001", "c002"))]


LEES = [
    _client("c010", "Sam Lee", emails=("sam@x.org", "lees@x.org")),
    _client("c011", "Kim Lee", emails=("kim@x.org",)),
    _client("c020", "Sam and Kim Lee", match=("Lees",), emails=("lees@x.org",), members=("c010", "c011")),
]


@pytest.mark.parametrize(
    ("summary", "emails", "expected"),
    [
        ("Sam Lee & Kim Lee", (), "c020"),
        ("Lees", (), "c020"),
        ("Lees with Sam Lee", (), "c020"),
        ("Sam Lee", (), "c010"),
        ("x", ("sam@x.org", "kim@x.org"), "c020"),
        ("x", ("lees@x.org",), "c010"),  # the shared address alone: the fewest people it can mean
        ("x", ("sam@x.org",), "c010"),
    ],
)
def test_the_most_specific_entry_wins(summary, emails, expected):
    """The entry for the fewest people that accounts for everything the event names."""
    assert Roster.of(LEES).match(_event(summary, *emails)) == expected


def test_roster_loader_checks_members(tmp_path):
    """Members must be two or more known individual ids; a pause reason needs a pause date."""
    path = tmp_path / "clients.toml"
    path.write_text(
        '[[clients]]\nid = "a"\nname = "A B"\n\n[[clients]]\nid = "g"\nname = "G"\nmembers = ["a", "zz"]\n\n'
        '[[clients]]\nid = "h"\nname = "H"\nmembers = ["g", "a"]\npause_reason = "x"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_roster(path)
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "clients[2].members: unknown client id 'zz'" in text
    assert "clients[3].members: 'g' is a group itself" in text
    assert "clients[3].pause_reason: needs pause_until" in text


def test_roster_loader_reads_rhythm_in_the_practice_zone(tmp_path):
    """pause_until and call_after are local midnight in the zone given; rebook_within a duration."""
    from zoneinfo import ZoneInfo

    path = tmp_path / "clients.toml"
    path.write_text(
        '[[clients]]\nid = "a"\nname = "A B"\nrebook_within = "28d"\npause_until = 2026-09-01\n'
        'call_after = "2026-04-01"\nno_calls = true\n',
        encoding="utf-8",
    )
    (client,) = load_roster(path, ZoneInfo("America/Chicago"))
    assert client.rebook_within == timedelta(days=28)
    assert client.pause_until == datetime(2026, 9, 1, tzinfo=ZoneInfo("America/Chicago"))
    assert client.call_after is not None and client.call_after.hour == 0
    assert client.no_calls


@pytest.mark.parametrize(
    ("title", "label"),
    [
        ("Liam 2pm", "Liam"),
        ("Maya - cancelled", "Maya"),
        ("Noah no-show", "Noah"),
        ("[c003] Zoe K 10:30", "Zoe K"),
    ],
)
def test_labels_drop_times_markers_and_tags(title, label):
    """A title reads as its label: no times, marker words, [id] tags."""
    markers = MarkerRules(no_show=("no-show", "no show"), cancelled=("cancelled",))
    assert Labeller(markers).label(title) == label
