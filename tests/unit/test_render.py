"""Reminder texts: titles, call and voicemail scripts, the letter, consent and privacy."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from worker import render
from worker.model import CallNeed, Client, ClientId, Reason, ReminderKey

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
