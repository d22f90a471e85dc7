"""Reminder texts: titles, call and voicemail scripts, the letter, consent and privacy."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from worker import render
from worker.model import (
    Appointment,
    Attendance,
    CallNeed,
    Client,
    ClientId,
    Managed,
    Reason,
    ReminderKey,
    Withdraw,
)

TZ = ZoneInfo("America/Chicago")
PRACTICE = render.Practice(tz=TZ, therapist_name="Dr. Test", callback_number="+1 555 0100")
START = datetime(2026, 3, 10, 10, 0, tzinfo=TZ)  # Tuesday
ALIAS = "J.S."


def client(*, consent: bool = True, phone: str = "+1 555 0142", voicemail: bool = True) -> Client:
    return Client(
        id=ClientId("c014"),
        name="Jordan Smith",
        alias=ALIAS,
        phone=phone,
        consent_to_call=consent,
        voicemail_ok=voicemail,
    )


def need(reason: Reason, due: datetime | None = None, start: datetime = START) -> CallNeed:
    return CallNeed(
        key=ReminderKey("k" * 26),
        client_id=ClientId("c014"),
        reason=reason,
        due=due or start + timedelta(minutes=50),
        state="due",
        anchor_uid="u1",
        anchor_rid="",
        appointment_start=start,
        appointment_end=start + timedelta(minutes=50),
    )


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (Reason.LATE, "Call J.S. — late for Tue 10:00"),
        (Reason.NO_SHOW, "Call J.S. — missed Tue 10:00"),
        (Reason.NOT_REBOOKED, "Call J.S. — not rebooked since Tue 10:00"),
        (Reason.CANCELLED_NOT_REBOOKED, "Call J.S. — cancelled Tue 10:00, not rebooked"),
        (Reason.LAPSED, "Call J.S. — not seen since Tue 10:00"),
        (Reason.TERMINATION_LETTER, "Letter to J.S. — no return since Tue 10:00"),
    ],
)
def test_titles_use_the_alias(reason, expected):
    """Each title names the alias (never the full name), the reason and the appointment."""
    text = render.title(need(reason), client(), TZ)
    assert text == expected
    assert "Jordan" not in text and "Smith" not in text


def test_title_long_form_when_far_from_due():
    """An appointment more than six days from the due time is named with its date."""
    far = need(Reason.TERMINATION_LETTER, due=START + timedelta(days=21))
    assert render.title(far, client(), TZ) == "Letter to J.S. — no return since Tue 10 Mar 10:00"


@pytest.mark.parametrize("reason", [Reason.DOUBLE_BOOKED, Reason.ACQUAINTED_CONFLICT])
def test_conflict_titles_do_not_change_as_now_moves(reason):
    """A conflict is due now, which moves each pass: its title always uses the long form, so it stays the same."""
    titles = {render.title(need(reason, due=START - timedelta(days=d)), client(), TZ) for d in (0, 3, 10)}
    assert len(titles) == 1
    assert "Tue 10 Mar 10:00" in titles.pop()


@pytest.mark.parametrize("reason", list(Reason))
@pytest.mark.parametrize(
    "name", ["Dr. Test", "your therapist", "Dr. Rivera, Psychologist", "Counselling Centre", ""]
)
def test_voicemail_never_names_the_practice(reason, name):
    """No voicemail, for any reason or therapist name, contains therapy, counsel, session, therapist, psych, mental."""
    practice = render.Practice(tz=TZ, therapist_name=name, callback_number="+1 555 0100")
    text = render.voicemail(need(reason), client(), practice).lower()
    assert not [w for w in render.FORBIDDEN_IN_VOICEMAIL if w in text]
    assert "+1 555 0100" in text


def test_voicemail_says_the_name_when_it_is_safe():
    """A plain name is said; one that gives the practice away is left out."""
    assert render.voicemail(need(Reason.NO_SHOW), client(), PRACTICE).startswith("Hi, this is Dr. Test. ")
    shy = render.Practice(tz=TZ, therapist_name="your therapist", callback_number="+1 555 0100")
    assert render.voicemail(need(Reason.NO_SHOW), client(), shy).startswith("Hi. You had an appointment")


def test_voicemail_states_the_appointment_and_time():
    """A no-show voicemail says an appointment, the day and time, and the number, without blame."""
    text = render.voicemail(need(Reason.NO_SHOW), client(), PRACTICE)
    assert text == (
        "Hi, this is Dr. Test. You had an appointment with me on Tuesday 10 March at 10:00 and I missed you. "
        "If you would like another time, just let me know. You can reach me at +1 555 0100."
    )


def test_voicemail_without_a_callback_number():
    """Without a callback number the voicemail asks to be called back."""
    practice = render.Practice(tz=TZ, therapist_name="Dr. Test", callback_number="")
    assert render.voicemail(need(Reason.LAPSED), client(), practice).endswith("Please call me back.")


def test_description_with_consent():
    """With consent: the number, whether a voicemail is OK, the call script and the voicemail script."""
    body = render.description(need(Reason.NO_SHOW), client(), PRACTICE, [])
    assert body.startswith("Phone: +1 555 0142\nVoicemail OK.\n")
    assert "Voicemail (never name the kind of practice):" in body
    no_vm = render.description(need(Reason.NO_SHOW), client(voicemail=False), PRACTICE, [])
    assert "Do NOT leave a voicemail." in no_vm and "Voicemail (" not in no_vm


def test_description_without_consent():
    """Without consent: says so plainly, shows no number and no voicemail script."""
    body = render.description(need(Reason.NO_SHOW), client(consent=False), PRACTICE, [])
    assert body.startswith("No call consent on file")
    assert "0142" not in body and "Voicemail (" not in body


def test_description_with_consent_but_no_number():
    """Consent without a number is not reported as missing consent."""
    body = render.description(need(Reason.NO_SHOW), client(phone=""), PRACTICE, [])
    assert body.startswith("No phone number on file")
    assert "No call consent" not in body and "Voicemail (" not in body


@pytest.mark.parametrize("reason", [Reason.NOT_REBOOKED, Reason.CANCELLED_NOT_REBOOKED])
def test_rebooking_scripts_offer_a_wrap_up(reason):
    """Seed: a client who is ending is offered one wrap-up session; the letter follows otherwise."""
    lines = render.call_script(need(reason), client(), PRACTICE, [])
    assert any("wrap-up" in line for line in lines)
    assert any("termination letter" in line for line in lines)


def test_termination_letter_draft():
    """The termination task carries the letter draft and "note it in the chart"."""
    body = render.description(need(Reason.TERMINATION_LETTER), client(), PRACTICE, [])
    assert "Termination letter draft (note it in the chart when sent):" in body
    assert "Dear Jordan Smith," in body
    assert "on Tuesday 10 March at 10:00" in body
    assert "contact me at +1 555 0100." in body
    assert body.rstrip().endswith("callsheet termination_letter · client c014")


def test_conflict_scripts_list_alternatives_or_say_none():
    """Conflict calls list the free times to offer, or say that none was found."""
    slots = [datetime(2026, 3, 12, 11, 15, tzinfo=TZ), datetime(2026, 3, 12, 11, 30, tzinfo=TZ)]
    lines = render.call_script(need(Reason.DOUBLE_BOOKED), client(), PRACTICE, slots)
    assert "Free times to offer: Thursday 12 March at 11:15; Thursday 12 March at 11:30." in lines
    lines = render.call_script(need(Reason.ACQUAINTED_CONFLICT), client(), PRACTICE, [])
    assert "No free time found in the next two weeks: check the calendar." in lines


def test_render_builds_the_reminder():
    """render() gives a reminder at the placed start, of the asked length, with a hash of its text."""
    start = datetime(2026, 3, 10, 11, 0, tzinfo=TZ)
    reminder = render.render(
        need(Reason.NO_SHOW), client(), PRACTICE, kind="event", start=start, length=timedelta(minutes=15)
    )
    assert (reminder.key, reminder.kind, reminder.client_id, reminder.reason) == (
        "k" * 26,
        "event",
        "c014",
        Reason.NO_SHOW,
    )
    assert (reminder.start, reminder.end) == (start, start + timedelta(minutes=15))
    assert reminder.payload_hash == render.payload_hash(reminder.title, reminder.description)
    again = render.render(
        need(Reason.NO_SHOW), client(), PRACTICE, kind="event", start=start, length=timedelta(minutes=15)
    )
    assert again == reminder
    other = render.render(
        need(Reason.NO_SHOW),
        client(consent=False),
        PRACTICE,
        kind="event",
        start=start,
        length=timedelta(minutes=15),
    )
    assert other.payload_hash != reminder.payload_hash


def test_every_reason_has_its_words():
    """The per-reason text table covers every Reason, so no reason renders without words."""
    assert set(render.TEXTS) == set(Reason)


@pytest.mark.parametrize("reason", [r for r in Reason if r is not Reason.TERMINATION_LETTER])
def test_title_without_consent_does_not_say_call(reason):
    """Calendar apps show only the title: a client without call consent is never titled "Call"."""
    text = render.title(need(reason), client(consent=False), TZ)
    assert text.startswith(f"Write to {ALIAS} — ") and "Call" not in text
    body = render.description(need(reason), client(consent=False), PRACTICE, [])
    assert "If someone else answers" not in body  # nothing in the notes suggests a phone call


def test_letter_without_consent_claims_no_call():
    """For a client who may not be called, neither the letter nor the notes say a call was tried."""
    history = render.History(anchor=Attendance.NO_SHOW, call="none")
    body = render.description(need(Reason.TERMINATION_LETTER), client(consent=False), PRACTICE, [], history)
    assert "tried to reach you by phone" not in body
    assert "reply to the call" not in body
    assert "No call consent on file: no call was suggested" in body


def test_letter_does_not_call_a_missed_appointment_ours():
    """A missed anchor is "the appointment ... you were not able to attend", and the last attended one is named."""
    history = render.History(
        anchor=Attendance.NO_SHOW, last_attended=START - timedelta(days=7), call="handled"
    )
    text = render.letter(need(Reason.TERMINATION_LETTER), client(), PRACTICE, history)
    assert "our last appointment" not in text
    assert "which you were not able to attend (we last met on Tuesday 3 March at 10:00)" in text
    assert "I tried to reach you by phone." in text


def test_letter_before_any_call_says_so():
    """On a first pass that goes straight to the letter, nothing claims a call; the notes suggest calling first."""
    history = render.History(anchor=Attendance.ATTENDED, call="none")
    body = render.description(need(Reason.TERMINATION_LETTER), client(), PRACTICE, [], history)
    assert "tried to reach you" not in body and "reply to the call" not in body
    assert "since our last appointment on Tuesday 10 March at 10:00." in body
    assert "No call was suggested before this letter: consider calling first." in body


def test_history_of_reads_the_rebooking_call_from_state():
    """history_of: a tombstoned rebooking call on the same anchor is "handled", an open one "suggested"."""
    n = need(Reason.TERMINATION_LETTER, due=START + timedelta(days=30))
    appts = [
        Appointment("a0", "u0", "", ClientId("c014"), START - timedelta(days=7), START, Attendance.ATTENDED),
        Appointment(
            "a1", "u1", "", ClientId("c014"), START, START + timedelta(minutes=50), Attendance.NO_SHOW
        ),
    ]
    call_key = render.calls_before_letter(n)[0]

    class Rec:
        def __init__(self, status: str) -> None:
            self.status = status

    assert render.history_of(n, appts, {}).call == "none"
    assert render.history_of(n, appts, {(call_key, "event"): Rec("open")}).call == "suggested"
    handled = render.history_of(n, appts, {(call_key, "task"): Rec("tombstone")})
    assert (handled.call, handled.anchor, handled.last_attended) == (
        "handled",
        Attendance.NO_SHOW,
        START - timedelta(days=7),
    )


def test_no_show_with_a_booking_confirms_it():
    """A no-show whose client has booked again says to confirm that booking, not to offer another."""
    history = render.History(next_booked=START + timedelta(days=2))
    lines = render.call_script(need(Reason.NO_SHOW), client(), PRACTICE, [], history)
    assert "Offer another appointment." not in lines
    assert "They have booked again for Thursday 12 March at 10:00: confirm it." in lines
    vm = render.voicemail(need(Reason.NO_SHOW), client(), PRACTICE, history)
    assert "another time" not in vm and "booked for Thursday 12 March at 10:00" in vm


@pytest.mark.parametrize(
    ("why", "expected"),
    [
        (render.Withdrawn.BOOKED, "callsheet: closed; J.S. booked Tue 8 Dec 10:00."),
        (render.Withdrawn.MOVED, "the appointment of J.S. moved"),
        (render.Withdrawn.DISCHARGED, "callsheet: closed; J.S. is discharged."),
        (render.Withdrawn.HANDLED, "you handled the call to J.S."),
    ],
)
def test_withdrawal_note_says_why(why, expected):
    """A withdrawn task's note names the cause and the alias, never "closed (resolved)" nor the full name."""
    note = render.withdrawal_note(why, ALIAS, TZ, booked_at=datetime(2026, 12, 8, 10, 0, tzinfo=TZ))
    assert expected in note
    assert "(resolved)" not in note and "Jordan" not in note


def test_withdrawal_cause_from_what_the_runner_knows():
    """A booking, a discharge, a conflict or a handled sibling each give their own cause."""
    booked = START + timedelta(days=3)
    assert render.withdrawal_cause(Reason.NO_SHOW, client(), booked) is render.Withdrawn.BOOKED
    assert render.withdrawal_cause("double_booked", client(), None) is render.Withdrawn.MOVED
    gone = Client(id=ClientId("c014"), name="Jordan Smith", alias=ALIAS, status="discharged")
    assert render.withdrawal_cause(Reason.NOT_REBOOKED, gone, None) is render.Withdrawn.DISCHARGED
    assert render.withdrawal_cause(Reason.LAPSED, None, None) is render.Withdrawn.LEFT_ROSTER
    assert render.withdrawal_cause(Reason.LATE, client(), None, handled=True) is render.Withdrawn.HANDLED


def test_note_for_a_withdrawal_names_the_booking():
    """note_for turns reconcile's "resolved" into "J.S. booked <next booking>" from the appointments."""
    item = Managed(key=ReminderKey("k" * 26), kind="task", ref="x", client_id="c014", reason="not_rebooked")
    withdraw = Withdraw(key=item.key, kind="task", item=item, note="resolved", delete=False)
    nxt = Appointment(
        "a2",
        "u2",
        "",
        ClientId("c014"),
        START + timedelta(days=2),
        START + timedelta(days=2, hours=1),
        Attendance.SCHEDULED,
    )
    clients = {ClientId("c014"): client()}
    assert (
        render.note_for(withdraw, clients, [nxt], TZ, START)
        == "callsheet: closed; J.S. booked Thu 12 Mar 10:00."
    )
    handled = Withdraw(key=item.key, kind="task", item=item, note="handled by the therapist", delete=False)
    assert "you handled the call to J.S." in render.note_for(handled, clients, [], TZ, START)
    assert (
        render.note_for(withdraw, {}, [], TZ, START)
        == "callsheet: closed; the client is no longer in the roster."
    )
