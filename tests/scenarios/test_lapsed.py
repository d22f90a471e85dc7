"""Seed: "a client who has made excuses and not come to therapy for a while": a call of concern.

lapsed: has attended before; cancellations or no-shows since the last attended appointment;
still has something booked ahead (else the rebooking calls apply); due at the last attended
end + lapse_after (30d); not raised while a booking before that time would settle it, nor
while the client is in an appointment right now.
"""

from __future__ import annotations

from tests.practice import local, vevent
from tests.scenarios.conftest import make_practice

LAST_SEEN = local("2026-02-03 10:00")  # Tuesday, CST: ends 10:50 -06:00; +30d = Thu 5 March 10:50 CST
MISSED = ("c001", "no_show", "due", "2026-02-17T10:50:00-06:00")
LAPSED_DUE = "2026-03-05T10:50:00-06:00"


def _excuses(practice, client: str = "Avery Quinn", prefix: str = "lp") -> None:
    """Attended 3 Feb; cancelled 10 Feb; missed 17 Feb; cancelled 24 Feb."""
    practice.add(f"{prefix}-seen", vevent(f"{prefix}-seen", client, LAST_SEEN))
    practice.add(
        f"{prefix}-c1",
        vevent(
            f"{prefix}-c1",
            client,
            local("2026-02-10 10:00"),
            status="CANCELLED",
            last_modified=local("2026-02-09 10:00"),
        ),
    )
    practice.add(f"{prefix}-ns", vevent(f"{prefix}-ns", f"{client} no show", local("2026-02-17 10:00")))
    practice.add(
        f"{prefix}-c2",
        vevent(
            f"{prefix}-c2",
            client,
            local("2026-02-24 10:00"),
            status="CANCELLED",
            last_modified=local("2026-02-23 10:00"),
        ),
    )


def _booked(practice, when: str, prefix: str = "lp", client: str = "Avery Quinn") -> None:
    practice.add(f"{prefix}-next-{when[:10]}", vevent(f"{prefix}-next-{when[:10]}", client, local(when)))


def test_lapsed_is_due_thirty_days_after_the_last_attended(practice, plan):
    """Cancelling and missing since 3 Feb, still booked for 17 March: a concern call due 5 March."""
    _excuses(practice)
    _booked(practice, "2026-03-17 10:00")
    assert plan(practice, "2026-03-10T12:00") == [MISSED, ("c001", "lapsed", "due", LAPSED_DUE)]


def test_lapsed_is_upcoming_before_its_due_time(practice, plan):
    """Before 5 March, with nothing booked before then, the call shows as upcoming."""
    _excuses(practice)
    _booked(practice, "2026-03-17 10:00")
    assert plan(practice, "2026-02-20T12:00") == [MISSED, ("c001", "lapsed", "upcoming", LAPSED_DUE)]


def test_a_booking_before_the_due_time_settles_it(practice, plan):
    """A session booked for 26 Feb, before the call would fall due, means no lapsed call."""
    _excuses(practice)
    _booked(practice, "2026-02-26 10:00")
    assert plan(practice, "2026-02-20T12:00") == [MISSED]


def test_attending_after_the_due_time_resolves_it(practice, plan):
    """Once the client attends again (12 March) the lapsed call is gone; the rebooking clock restarts."""
    _excuses(practice)
    _booked(practice, "2026-03-12 10:00")
    assert plan(practice, "2026-03-10T12:00") == [MISSED, ("c001", "lapsed", "due", LAPSED_DUE)]
    assert plan(practice, "2026-03-13T12:00") == [
        MISSED,
        ("c001", "not_rebooked", "upcoming", "2026-03-19T10:50:00-05:00"),
    ]


def test_no_lapsed_call_while_the_client_is_in_the_room(practice, plan):
    """During the appointment that will settle it, a lapsed call would be pointless."""
    _excuses(practice)
    _booked(practice, "2026-03-10 10:00")
    assert plan(practice, "2026-03-10T10:20") == [MISSED]


def test_no_excuses_no_lapsed_call(practice, plan):
    """A long gap with nothing cancelled or missed is the client's own rhythm, not a lapse."""
    practice.add("seen", vevent("lp-seen", "Avery Quinn", LAST_SEEN))
    _booked(practice, "2026-03-17 10:00")
    assert plan(practice, "2026-03-10T12:00") == []


def test_nothing_booked_means_the_rebooking_calls_instead(practice, plan):
    """Without a booking ahead the latest cancellation (24 Feb, made 23 Feb) decides: no lapsed call."""
    _excuses(practice)
    assert plan(practice, "2026-03-10T12:00") == [
        MISSED,
        ("c001", "cancelled_not_rebooked", "due", "2026-02-25T10:00:00-06:00"),
    ]


def test_discharged_client_never_lapses(practice, plan):
    """The same history for a discharged client (c004) gives no call of any kind."""
    _excuses(practice, client="Devon Ueda", prefix="dx")
    _booked(practice, "2026-03-17 10:00", prefix="dx", client="Devon Ueda")
    assert plan(practice, "2026-03-10T12:00") == []


def test_custom_lapse_after(tmp_path, plan):
    """rules.lapse_after moves the due time (here 20 days: 23 Feb 10:50 CST)."""
    p = make_practice(tmp_path / "p", rules={"lapse_after": "20d"})
    _excuses(p)
    _booked(p, "2026-03-17 10:00")
    assert plan(p, "2026-03-10T12:00") == [MISSED, ("c001", "lapsed", "due", "2026-02-23T10:50:00-06:00")]
