"""Whole-caseload scenarios: discharged clients, consent, ordering, upcoming and stale needs,
and what the written reminders say."""

from __future__ import annotations

from tests.practice import local, vevent
from tests.scenarios.conftest import make_practice, written


def test_discharged_client_gets_nothing(practice, plan):
    """Devon (c004) is discharged: a no-show, a cancellation and a double booking raise no call."""
    practice.add("a", vevent("dc-1", "Devon Ueda no show", local("2026-03-03 10:00")))
    practice.add("b", vevent("dc-2", "Devon Ueda", local("2026-03-05 10:00"), status="CANCELLED"))
    practice.add("c", vevent("dc-3", "Devon Ueda", local("2026-03-12 10:00")))
    practice.add("d", vevent("dc-4", "Devon Ueda", local("2026-03-12 10:20")))
    assert plan(practice, "2026-03-10T12:00") == []


def test_plan_lists_every_need_sorted_by_due_client_reason(practice, plan):
    """A small week: lines come sorted by due time, then client, then reason."""
    practice.add("a", vevent("wk-1", "Avery Quinn no show", local("2026-03-09 10:00")))
    practice.add("b", vevent("wk-2", "Blake Rowe", local("2026-03-09 10:00")))
    practice.add("c", vevent("wk-3", "Cameron Tate", local("2026-03-02 14:00")))
    practice.add("d", vevent("wk-4", "Cameron Tate", local("2026-03-12 14:00")))
    practice.add("e", vevent("wk-5", "Avery Quinn", local("2026-03-12 14:30")))
    assert plan(practice, "2026-03-10T09:00") == [
        ("c001", "no_show", "due", "2026-03-09T10:50:00-05:00"),
        ("c001", "double_booked", "due", "2026-03-10T09:00:00-05:00"),
        ("c002", "not_rebooked", "upcoming", "2026-03-16T10:50:00-05:00"),
    ]


def test_stale_needs_are_listed_but_not_written(practice, plan_json):
    """A need older than max_age shows as stale with action none; --include-stale would write it."""
    practice.add("a", vevent("st-1", "Avery Quinn DNA", local("2026-01-06 10:00")))
    practice.add("b", vevent("st-2", "Avery Quinn", local("2026-03-17 10:00")))
    [line] = plan_json(practice, "2026-03-10T12:00")
    assert (line["reason"], line["state"], line["due"], line["action"]) == (
        "no_show",
        "stale",
        "2026-01-06T10:50:00-06:00",
        "none",
    )
    [line] = plan_json(practice, "2026-03-10T12:00", "--include-stale")
    assert (line["reason"], line["state"], line["action"]) == ("no_show", "stale", "create")


def test_custom_max_age(tmp_path, plan):
    """rules.max_age decides when a need turns stale."""
    p = make_practice(tmp_path / "p", rules={"max_age": "90d"})
    p.add("a", vevent("st-3", "Avery Quinn DNA", local("2026-01-06 10:00")))
    p.add("b", vevent("st-4", "Avery Quinn", local("2026-03-17 10:00")))
    assert plan(p, "2026-03-10T12:00") == [("c001", "no_show", "due", "2026-01-06T10:50:00-06:00")]


def test_client_without_consent_gets_a_reminder_without_a_number(practice, run_once):
    """Cameron (no consent) still gets the reminder, saying no call consent is on file, with no number and no voicemail."""
    practice.add("a", vevent("cs-1", "Cameron Tate DNA", local("2026-03-10 10:00")))
    practice.add("b", vevent("cs-2", "Cameron Tate", local("2026-03-17 10:00")))
    run_once(practice, "2026-03-10T12:00")
    items = written(practice.events_dir) + written(practice.tasks_dir)
    assert [(i["client"], i["reason"]) for i in items] == [("c003", "no_show"), ("c003", "no_show")]
    for item in items:
        body = str(item["description"])
        assert "No call consent on file" in body
        assert "555" not in body.replace("+1 555 0100", "")  # the practice's own number may appear
        assert "Voicemail (" not in body
        # the title says it too (calendar apps show only the title); the booking of 17 March is confirmed
        assert item["title"] == "Write to C.T. — missed Tue 10:00"
        assert "They have booked again for Tuesday 17 March at 10:00: confirm it." in body


def test_client_with_consent_gets_the_number_and_voicemail(practice, run_once):
    """Avery (consent, voicemail OK) gets the number, "Voicemail OK." and a voicemail script."""
    practice.add("a", vevent("cs-3", "Avery Quinn DNA", local("2026-03-10 10:00")))
    practice.add("b", vevent("cs-4", "Avery Quinn", local("2026-03-17 10:00")))
    run_once(practice, "2026-03-10T12:00")
    [event] = written(practice.events_dir)
    body = str(event["description"])
    assert "Phone: +1 555 0199" in body
    assert "Voicemail OK." in body
    assert "Voicemail (never name the kind of practice):" in body
    assert event["start"] == local("2026-03-10 12:00")


def test_termination_letter_is_a_task_with_a_draft(practice, run_once):
    """The letter goes to the task list only, with the draft and "note it in the chart"."""
    practice.add("a", vevent("tl-1", "Avery Quinn", local("2026-03-10 10:00")))
    run_once(practice, "2026-04-01T09:00")
    assert written(practice.events_dir) == []
    [task] = written(practice.tasks_dir)
    assert (task["client"], task["reason"]) == ("c001", "termination_letter")
    body = str(task["description"])
    assert "Dear Avery Quinn," in body
    assert "note it in the chart" in body
    assert task["title"] == "Letter to A.Q. — no return since Tue 10 Mar 10:00"


def test_first_pass_letter_claims_no_call(practice, run_once):
    """A letter written on the first pass (no call ever suggested) says so and claims no phone attempt."""
    practice.add("a", vevent("tl-1", "Avery Quinn", local("2026-03-10 10:00")))
    run_once(practice, "2026-04-01T09:00")
    [task] = written(practice.tasks_dir)
    body = str(task["description"])
    assert "tried to reach you by phone" not in body and "no reply to the call" not in body
    assert "since our last appointment on Tuesday 10 March at 10:00." in body
    assert "No call was suggested before this letter: consider calling first." in body


def test_reminders_never_stack_and_skip_busy_time(practice, run_once):
    """Two calls due at once go in consecutive free office slots, around the therapist's appointments."""
    practice.add("a", vevent("pl-1", "Avery Quinn DNA", local("2026-03-09 10:00")))
    practice.add("b", vevent("pl-2", "Blake Rowe DNA", local("2026-03-09 11:00")))
    practice.add("c", vevent("pl-3", "Avery Quinn", local("2026-03-16 10:00")))
    practice.add("d", vevent("pl-4", "Blake Rowe", local("2026-03-16 14:00")))
    practice.add("x", vevent("pl-5", "Supervision", local("2026-03-10 09:00"), minutes=60))
    run_once(practice, "2026-03-10T08:00")
    starts = [(e["client"], e["start"]) for e in written(practice.events_dir)]
    assert starts == [("c001", local("2026-03-10 10:00")), ("c002", local("2026-03-10 10:15"))]
