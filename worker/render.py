"""CallNeed -> the words of a reminder: title, call script, voicemail script, letter draft.

Written in the spirit of docs/policy.md: care, not blame; a client who is ending is offered a
wrap-up appointment; voicemails never say what kind of practice is calling. Every sentence
states only what callsheet knows (`History`): a letter says a call was made only when one was
suggested and handled, and names the last appointment the client attended, not one missed.
Pure: no I/O, no clock. All reason-specific words live in one table, `TEXTS`.

Longer than ~400 lines on purpose: it is mostly words (the per-reason TEXTS table, the
letter and the withdrawal notes), which a reviewer reads in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, Protocol, assert_never
from zoneinfo import ZoneInfo

from worker.model import (
    Appointment,
    Attendance,
    CallNeed,
    Client,
    ClientId,
    ItemKind,
    Reason,
    Reminder,
    ReminderKey,
    Withdraw,
    reminder_key,
)

# Words a voicemail must never contain: anyone may hear it (policy: "not mentioning counseling").
FORBIDDEN_IN_VOICEMAIL = ("therapy", "counsel", "session", "therapist", "psych", "mental")

RENDER_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Practice:
    """What the texts say about the practice."""

    tz: ZoneInfo
    therapist_name: str
    callback_number: str


CallHistory = Literal["unknown", "none", "suggested", "handled"]


@dataclass(frozen=True, slots=True)
class History:
    """What happened around a need, as far as callsheet knows; the default claims nothing.

    `anchor` is how the appointment the need is anchored on went; `last_attended` the start
    of the last appointment the client came to; `next_booked` the start of their next booked
    one; `call` whether a call about this client's return was suggested before a letter
    ("suggested": a reminder was written; "handled": the therapist completed or deleted it).
    """

    anchor: Attendance | None = None
    last_attended: datetime | None = None
    next_booked: datetime | None = None
    call: CallHistory = "unknown"


_SEEN = (Attendance.ATTENDED, Attendance.ARRIVED)


def calls_before_letter(need: CallNeed) -> tuple[ReminderKey, ...]:
    """The keys of the rebooking calls that precede a termination letter on the same appointment."""
    return tuple(
        reminder_key(need.client_id, reason.value, need.anchor_uid, need.anchor_rid)
        for reason in (Reason.NOT_REBOOKED, Reason.CANCELLED_NOT_REBOOKED)
    )


class _Recorded(Protocol):
    @property
    def status(self) -> str: ...


def history_of(
    need: CallNeed,
    appointments: Sequence[Appointment],
    records: Mapping[tuple[ReminderKey, ItemKind], _Recorded],
) -> History:
    """The History of a need from the judged appointments and the state's records by (key, kind).

    A record's status is "open", "withdrawn" or "tombstone"; a tombstone means the therapist
    handled the call (deleted the event or completed the task).
    """
    if need.reason not in (Reason.NO_SHOW, Reason.TERMINATION_LETTER):
        return History()  # only these two texts depend on what happened around the need
    mine = sorted((a for a in appointments if a.client_id == need.client_id), key=lambda a: a.start)
    anchor = next(
        (a.attendance for a in mine if a.uid == need.anchor_uid and a.recurrence_id == need.anchor_rid), None
    )
    seen = [a.start for a in mine if a.attendance in _SEEN and a.start <= need.due]
    ahead = [a.start for a in mine if not a.is_cancelled and a.attendance is Attendance.SCHEDULED]
    call: CallHistory = "none"
    for key in calls_before_letter(need):
        statuses = [r.status for kind in ("event", "task") if (r := records.get((key, kind))) is not None]
        if "tombstone" in statuses:
            call = "handled"
            break
        if statuses:
            call = "suggested"
    return History(
        anchor=anchor,
        last_attended=seen[-1] if seen else None,
        next_booked=ahead[0] if ahead else None,
        call=call if need.reason is Reason.TERMINATION_LETTER else "unknown",
    )


def when(moment: datetime, tz: ZoneInfo, *, reference: datetime | None = None) -> str:
    """'Tue 10:00' within a week of `reference`, else 'Tue 3 Nov 10:00'."""
    local = moment.astimezone(tz)
    near = reference is not None and abs(reference - moment) < timedelta(days=6)
    if near:
        return local.strftime("%a %H:%M")
    return f"{local.strftime('%a')} {local.day} {local.strftime('%b %H:%M')}"


def _day(moment: datetime, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz)
    return f"{local.strftime('%A')} {local.day} {local.strftime('%B')} at {local.strftime('%H:%M')}"


@dataclass(frozen=True, slots=True)
class Texts:
    """The words of one reason. `{at}` is the appointment; `{hello}` and `{back}` the voicemail's ends."""

    title: str  # after "Call L.M. — " (or "Write to L.M. — ")
    voicemail: str
    script: tuple[str, ...]


TEXTS: Mapping[Reason, Texts] = {
    Reason.LATE: Texts(
        "late for {at}",
        "{hello} You have an appointment with me now, {at}. I wanted to check you are all right. {back}",
        (
            "The session started {at}; they have not arrived.",
            "Check they are all right; if they can still come, say so warmly.",
            "If not, offer another time. No blame: running late happens.",
        ),
    ),
    Reason.NO_SHOW: Texts(
        "missed {at}",
        "{hello} You had an appointment with me on {at} and I missed you. "
        "If you would like another time, just let me know. {back}",
        (
            "Missed the session on {at}.",
            "Say you missed them and wanted to check in; you are not upset.",
            "Offer another appointment.",
        ),
    ),
    Reason.NOT_REBOOKED: Texts(
        "not rebooked since {at}",
        "{hello} I am calling about your next appointment. I have some times open and would be glad "
        "to set one up. {back}",
        (
            "Last session {at}; nothing booked since.",
            "Ask whether they would like to schedule the next session.",
            "If they are not going to continue, offer one wrap-up session to close well.",
            "If they decline both, a termination letter follows: note it in the chart.",
        ),
    ),
    Reason.CANCELLED_NOT_REBOOKED: Texts(
        "cancelled {at}, not rebooked",
        "{hello} I am calling about your next appointment. I have some times open and would be glad "
        "to set one up. {back}",
        (
            "Cancelled the session on {at} and has not rescheduled.",
            "Show you care and do not want them to miss out; offer a new time.",
            "If they are ending, offer one wrap-up session.",
            "Not interested or no answer: note it in the chart and send a termination letter.",
        ),
    ),
    Reason.LAPSED: Texts(
        "not seen since {at}",
        "{hello} I have not seen you for a while and wanted to check in. {back}",
        (
            "Last attended {at}; cancellations or missed sessions since.",
            "Let them know you are concerned about them and glad to see them again.",
            "Picking up the phone can be hard for a depressed or anxious person: keep it easy.",
        ),
    ),
    Reason.ACQUAINTED_CONFLICT: Texts(
        "move {at} (waiting-room overlap)",
        "{hello} I am calling about your appointment on {at}. I need to adjust the time, so could you "
        "give me a call? {back}",
        (
            "Booked {at}, right next to someone they know (they would meet in the waiting room).",
            "Ask to move the appointment a little earlier or later; do not say why in detail.",
        ),
    ),
    Reason.DOUBLE_BOOKED: Texts(
        "double-booked {at}",
        "{hello} I am calling about your appointment on {at}. I need to adjust the time, so could you "
        "give me a call? {back}",
        (
            "Booked {at}, at the same time as another client.",
            "Apologise for the mix-up and offer another time.",
        ),
    ),
    Reason.TERMINATION_LETTER: Texts(
        "no return since {at}",
        "{hello} I am calling about your appointments with me. {back}",
        ("Send the termination letter below and note it in the chart.",),
    ),
}

_MISSING = [r for r in Reason if r not in TEXTS]
assert not _MISSING, f"render.TEXTS lacks {_MISSING}"  # every reason has its words


def title(need: CallNeed, client: Client, tz: ZoneInfo) -> str:
    """The reminder's title: the alias (never the full name), what to do, and which appointment.

    Calendar apps show only the title: without call consent it says "Write to", never "Call".
    """
    # A conflict is due `now`, which moves every pass: measured against it, the short form
    # would flip to the long one as the days pass and rewrite the reminder for nothing.
    moving = need.reason in (Reason.ACQUAINTED_CONFLICT, Reason.DOUBLE_BOOKED)
    at = when(need.appointment_start, tz, reference=None if moving else need.due)
    what = TEXTS[need.reason].title.format(at=at)
    if need.reason is Reason.TERMINATION_LETTER:
        return f"Letter to {client.alias} — {what}"
    verb = "Call" if client.consent_to_call else "Write to"
    return f"{verb} {client.alias} — {what}"


def _names_the_practice(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in FORBIDDEN_IN_VOICEMAIL)


def voicemail(need: CallNeed, client: Client, practice: Practice, history: History = History()) -> str:
    """What to leave on a voicemail: an appointment, a time, a number; nothing more."""
    at = _day(need.appointment_start, practice.tz)
    back = (
        f"You can reach me at {practice.callback_number}."
        if practice.callback_number
        else "Please call me back."
    )
    # The name is said only when it does not give the practice away ("your therapist", the
    # default, or "Dr. Rivera, Psychologist" would): anyone may hear a voicemail.
    name = practice.therapist_name.strip()
    hello = f"Hi, this is {name}." if name and not _names_the_practice(name) else "Hi."
    if need.reason is Reason.NO_SHOW and history.next_booked is not None:
        booked = _day(history.next_booked, practice.tz)
        return (
            f"{hello} You had an appointment with me on {at} and I missed you. "
            f"I see you are booked for {booked}; I look forward to it. {back}"
        )
    return TEXTS[need.reason].voicemail.format(hello=hello, at=at, back=back)


def call_script(
    need: CallNeed,
    client: Client,
    practice: Practice,
    alternatives: Sequence[datetime],
    history: History = History(),
) -> list[str]:
    """Talking points for the call itself."""
    at = _day(need.appointment_start, practice.tz)
    lines = [line.format(at=at) for line in TEXTS[need.reason].script]
    if need.reason is Reason.NO_SHOW and history.next_booked is not None:
        # the client booked again already: confirm that booking, do not offer another
        lines[-1] = f"They have booked again for {_day(history.next_booked, practice.tz)}: confirm it."
    if need.reason is Reason.TERMINATION_LETTER:
        lines = [*_letter_facts(need, client, practice, history), *lines]
    if alternatives:
        lines.append("Free times to offer: " + "; ".join(_day(a, practice.tz) for a in alternatives) + ".")
    if need.reason in (Reason.ACQUAINTED_CONFLICT, Reason.DOUBLE_BOOKED) and not alternatives:
        lines.append("No free time found in the next two weeks: check the calendar.")
    if client.consent_to_call:
        lines.append("If someone else answers, ask for the client; it is about an appointment, nothing more.")
    return lines


def _letter_facts(need: CallNeed, client: Client, practice: Practice, history: History) -> list[str]:
    """What happened before the letter, stated only as far as it is known."""
    at = _day(need.appointment_start, practice.tz)
    out: list[str] = []
    match history.anchor:
        case Attendance.NO_SHOW:
            out.append(f"Missed the appointment on {at}; nothing booked since.")
        case Attendance.CANCELLED | Attendance.LATE_CANCEL:
            out.append(f"Cancelled the appointment on {at}; nothing booked since.")
        case Attendance.ATTENDED | Attendance.ARRIVED:
            out.append(f"No session since {at}; nothing booked since.")
        case _:
            out.append(f"Nothing booked since the appointment on {at}.")
    if history.last_attended is not None and history.anchor not in _SEEN:
        out.append(f"Last attended {_day(history.last_attended, practice.tz)}.")
    if not client.consent_to_call:
        out.append("No call consent on file: no call was suggested; the letter is the contact.")
    elif history.call == "handled":
        out.append("A call was suggested and marked handled; no booking followed.")
    elif history.call == "suggested":
        out.append("A call was suggested but is not marked handled: call first if you have not.")
    elif history.call == "none":
        out.append("No call was suggested before this letter: consider calling first.")
    return out


def letter(need: CallNeed, client: Client, practice: Practice, history: History = History()) -> str:
    """A termination letter draft (policy: "I note that in their chart and send a termination letter").

    It says a call was made only when one was suggested and handled, and "our last appointment"
    only of one the client attended.
    """
    at = _day(need.appointment_start, practice.tz)
    match history.anchor:
        case Attendance.NO_SHOW:
            since = f"since the appointment on {at}, which you were not able to attend"
        case Attendance.CANCELLED | Attendance.LATE_CANCEL:
            since = f"since you cancelled the appointment on {at}"
        case Attendance.ATTENDED | Attendance.ARRIVED:
            since = f"since our last appointment on {at}"
        case _:
            since = f"since the appointment on {at}"
    if history.last_attended is not None and history.anchor not in _SEEN:
        since += f" (we last met on {_day(history.last_attended, practice.tz)})"
    tried = client.consent_to_call and history.call == "handled"
    first = f"I have not heard from you {since}" + (", and I tried to reach you by phone." if tried else ".")
    return "\n".join(
        [
            f"Dear {client.name},",
            "",
            first,
            "I will take it that you do not wish to continue at this time, and I am closing your file.",
            "If I am wrong, or if you would like to come back in the future, or to come in once to wrap up,",
            f"you are welcome to contact me{' at ' + practice.callback_number if practice.callback_number else ''}.",
            "",
            "I wish you well.",
            "",
            practice.therapist_name,
        ]
    )


def description(
    need: CallNeed,
    client: Client,
    practice: Practice,
    alternatives: Sequence[datetime],
    history: History = History(),
) -> str:
    """The reminder body: how to reach the client (or that we may not), scripts, letter."""
    parts: list[str] = []
    if client.consent_to_call and client.phone:
        parts.append(f"Phone: {client.phone}")
        parts.append("Voicemail OK." if client.voicemail_ok else "Do NOT leave a voicemail.")
    elif client.consent_to_call:
        parts.append("No phone number on file: add one to the roster, or write to the client.")
    else:
        parts.append("No call consent on file: do not call. Write or wait for the client to get in touch.")
    parts.append("")
    if need.reason is Reason.TERMINATION_LETTER:
        parts.append("Termination letter draft (note it in the chart when sent):")
        parts.append("")
        parts.append(letter(need, client, practice, history))
        parts.append("")
    parts.append("Call:" if client.consent_to_call else "Notes (do not call):")
    parts += [f"- {line}" for line in call_script(need, client, practice, alternatives, history)]
    if client.consent_to_call and client.phone and client.voicemail_ok:
        parts.append("")
        parts.append("Voicemail (never name the kind of practice):")
        parts.append(voicemail(need, client, practice, history))
    parts.append("")
    parts.append(f"callsheet {need.reason.value} · client {client.id}")
    return "\n".join(parts)


class Withdrawn(StrEnum):
    """Why a reminder was withdrawn: the cause the closing note names."""

    BOOKED = "booked"  # the client booked an appointment
    ARRIVED = "arrived"  # a late client arrived, or the appointment ended
    MOVED = "moved"  # the conflicting appointment moved or was cancelled
    DISCHARGED = "discharged"  # the client is discharged
    LEFT_ROSTER = "left_roster"  # the client is no longer in the roster
    HANDLED = "handled"  # the therapist handled the sibling event or task
    SUPERSEDED = "superseded"  # a later need replaced this one (a letter after a call)
    RESOLVED = "resolved"  # the need went away for another reason


def withdrawal_cause(
    reason: Reason | str, client: Client | None, next_booked: datetime | None, *, handled: bool = False
) -> Withdrawn:
    """The likeliest cause of a withdrawal, from what the runner knows at the pass."""
    if handled:
        return Withdrawn.HANDLED
    if client is None:
        return Withdrawn.LEFT_ROSTER
    if client.discharged:
        return Withdrawn.DISCHARGED
    match reason:
        case Reason.LATE:
            return Withdrawn.ARRIVED
        case Reason.ACQUAINTED_CONFLICT | Reason.DOUBLE_BOOKED:
            return Withdrawn.MOVED
        case Reason.NO_SHOW | Reason.NOT_REBOOKED | Reason.CANCELLED_NOT_REBOOKED | Reason.LAPSED:
            return Withdrawn.BOOKED if next_booked is not None else Withdrawn.RESOLVED
        case Reason.TERMINATION_LETTER:
            return Withdrawn.BOOKED if next_booked is not None else Withdrawn.RESOLVED
    return Withdrawn.RESOLVED  # a reason written by another version


def withdrawal_note(why: Withdrawn, alias: str, tz: ZoneInfo, booked_at: datetime | None = None) -> str:
    """The note a withdrawn task is completed with: why, in words, naming only the alias."""
    match why:
        case Withdrawn.BOOKED:
            if booked_at is None:
                return f"callsheet: closed; {alias} booked an appointment."
            return f"callsheet: closed; {alias} booked {when(booked_at, tz)}."
        case Withdrawn.ARRIVED:
            return f"callsheet: closed; {alias} arrived, or the appointment is over."
        case Withdrawn.MOVED:
            return (
                f"callsheet: closed; the appointment of {alias} moved or was cancelled, the conflict is gone."
            )
        case Withdrawn.DISCHARGED:
            return f"callsheet: closed; {alias} is discharged."
        case Withdrawn.LEFT_ROSTER:
            return "callsheet: closed; the client is no longer in the roster."
        case Withdrawn.HANDLED:
            return f"callsheet: closed; you handled the call to {alias} (event or task)."
        case Withdrawn.SUPERSEDED:
            return f"callsheet: closed; a newer reminder about {alias} replaces this one."
        case Withdrawn.RESOLVED:
            return f"callsheet: closed; the calendar no longer shows a reason to contact {alias}."
        case _:
            assert_never(why)


def note_for(
    withdraw: Withdraw,
    clients: Mapping[ClientId, Client],
    appointments: Sequence[Appointment],
    tz: ZoneInfo,
    now: datetime,
) -> str:
    """The closing note of one Withdraw action, for the runner to pass to `sink.withdraw`.

    reconcile says "handled by the therapist" when the sibling item was handled, "resolved"
    otherwise; this turns that into the cause in words, with the client's next booking.
    """
    item = withdraw.item
    client_id = ClientId(item.client_id) if item is not None else None
    client = clients.get(client_id) if client_id is not None else None
    booked = sorted(
        a.start for a in appointments if a.client_id == client_id and not a.is_cancelled and a.start > now
    )
    why = withdrawal_cause(
        item.reason if item is not None else "",
        client,
        booked[0] if booked else None,
        handled=withdraw.note.startswith("handled"),
    )
    return withdrawal_note(why, client.alias if client else "the client", tz, booked[0] if booked else None)


def payload_hash(title_text: str, body: str) -> str:
    """A short hash of what we wrote, to tell our text from a changed need."""
    return hashlib.sha256(f"{RENDER_VERSION}\n{title_text}\n{body}".encode()).hexdigest()[:16]


def render(
    need: CallNeed,
    client: Client,
    practice: Practice,
    *,
    kind: ItemKind,
    start: datetime,
    length: timedelta,
    alternatives: Sequence[datetime] = (),
    history: History = History(),
) -> Reminder:
    """The desired reminder for a need, of one kind, at `start`."""
    head = title(need, client, practice.tz)
    body = description(need, client, practice, alternatives, history)
    return Reminder(
        key=need.key,
        kind=kind,
        client_id=client.id,
        reason=need.reason,
        start=start,
        end=start + length,
        title=head,
        description=body,
        payload_hash=payload_hash(head, body),
    )
