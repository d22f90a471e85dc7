"""Couples and families: a roster entry with `members` stands for several people.

A session whose title or attendees name the members together counts for the group's entry
(one client for the rules); a member's own sessions stay theirs; a true tie is skipped.
"""

from __future__ import annotations

import pytest

from tests.practice import DEFAULT_CLIENTS, ClientSpec, local, vevent
from tests.scenarios.conftest import make_practice

LEES = (
    ClientSpec("c010", "Sam Lee", emails=("sam@example.org",)),
    ClientSpec("c011", "Kim Lee", emails=("kim@example.org",)),
    ClientSpec("c020", "Sam and Kim Lee", alias="S.K.L.", members=("c010", "c011"), match=("Lees",)),
)
SEEN = local("2026-03-10 10:00")
ALONE = local("2026-03-12 14:00")


@pytest.fixture
def couple(tmp_path):
    """The default practice plus Sam, Kim and their couple entry."""
    return make_practice(tmp_path / "practice", clients=(*DEFAULT_CLIENTS, *LEES))


@pytest.mark.parametrize("title", ["Sam Lee & Kim Lee", "Kim Lee / Sam Lee couples", "Lees"])
def test_a_session_naming_both_partners_counts_for_the_couple(couple, plan, title):
    """Before: both names in one title was 'ambiguous, skipped'; now the couple did not rebook."""
    couple.add("s", vevent("cp-1", title, SEEN))
    assert plan(couple, "2026-03-18T09:00") == [
        ("c020", "not_rebooked", "due", "2026-03-17T10:50:00-05:00"),
    ]


def test_both_partners_as_attendees_count_for_the_couple(couple, plan):
    """Invitations to both partners' addresses are a couple session, whatever the title says."""
    attendees = (("sam@example.org", "ACCEPTED"), ("kim@example.org", "ACCEPTED"))
    couple.add("s", vevent("cp-2", "Session", SEEN, attendees=attendees))
    couple.add("n", vevent("cp-3", "Session", ALONE, attendees=(("sam@example.org", "ACCEPTED"),)))
    assert plan(couple, "2026-03-18T09:00") == [
        ("c020", "not_rebooked", "due", "2026-03-17T10:50:00-05:00"),
        ("c010", "not_rebooked", "upcoming", "2026-03-19T14:50:00-05:00"),
    ]
    assert plan(couple, "2026-03-20T09:00") == [
        ("c020", "not_rebooked", "due", "2026-03-17T10:50:00-05:00"),
        ("c010", "not_rebooked", "due", "2026-03-19T14:50:00-05:00"),
    ]


def test_a_member_keeps_their_own_sessions(couple, plan):
    """Sam's individual session is Sam's; the couple's booking ahead does not cover it."""
    couple.add("s", vevent("cp-4", "Sam Lee", SEEN))
    couple.add("c", vevent("cp-5", "Sam Lee & Kim Lee", local("2026-03-24 10:00")))
    assert plan(couple, "2026-03-18T09:00") == [
        ("c010", "not_rebooked", "due", "2026-03-17T10:50:00-05:00"),
    ]


def test_a_couple_no_show_is_one_call(couple, plan):
    """A missed couple session raises one no-show call, for the couple's entry."""
    couple.add("s", vevent("cp-6", "Lees no-show", SEEN))
    couple.add("n", vevent("cp-7", "Lees", local("2026-03-17 10:00")))
    assert plan(couple, "2026-03-12T09:00") == [
        ("c020", "no_show", "due", "2026-03-10T10:50:00-05:00"),
    ]


def test_two_clients_who_are_no_couple_stay_ambiguous(couple, plan):
    """Two unrelated clients in one title: nobody's appointment (the log names the uid only)."""
    couple.add("s", vevent("cp-8", "Avery Quinn / Blake Rowe", SEEN))
    assert plan(couple, "2026-03-18T09:00") == []


def test_a_true_tie_between_two_groups_is_skipped(tmp_path, plan):
    """Two entries for the same two people: neither is more specific, so the event is skipped."""
    twin = ClientSpec("c021", "Lee family", members=("c010", "c011"))
    practice = make_practice(tmp_path / "p", clients=(*DEFAULT_CLIENTS, *LEES, twin))
    practice.add("s", vevent("cp-9", "Sam Lee & Kim Lee", SEEN))
    assert plan(practice, "2026-03-18T09:00") == []


def test_a_family_and_a_couple_the_smaller_group_wins(tmp_path, plan):
    """Naming two people picks the couple over the family of three that also holds them."""
    kid = ClientSpec("c012", "Ash Lee")
    family = ClientSpec("c030", "Lee family", members=("c010", "c011", "c012"), match=("Lee family",))
    practice = make_practice(tmp_path / "p", clients=(*DEFAULT_CLIENTS, *LEES, kid, family))
    practice.add("s", vevent("cp-10", "Sam Lee & Kim Lee", SEEN))
    practice.add("f", vevent("cp-11", "Lee family", ALONE))
    assert plan(practice, "2026-03-20T09:00") == [
        ("c020", "not_rebooked", "due", "2026-03-17T10:50:00-05:00"),
        ("c030", "not_rebooked", "due", "2026-03-19T14:50:00-05:00"),
    ]
