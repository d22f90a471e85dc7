"""CallNeed -> the words of a reminder: title, call script, voicemail script, letter draft.

Written in the seed's spirit: care, not blame; a client who is ending is offered a wrap-up
appointment; voicemails never say what kind of practice is calling. Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from worker.model import CallNeed, Client, ItemKind, Reason, Reminder

# Words a voicemail must never contain: anyone may hear it (seeds: "not mentioning counseling").
FORBIDDEN_IN_VOICEMAIL = ("therapy", "counsel", "session", "therapist", "psych", "mental")

RENDER_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Practice:
    """What the texts say about the practice."""

    tz: ZoneInfo
    therapist_name: str
    callback_number: str


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


def title(need: CallNeed, client: Client, tz: ZoneInfo) -> str:
    """The reminder's title: the alias (never the full name), why, and which appointment."""
    # A conflict is due `now`, which moves every pass: measured against it, the short form
    # would flip to the long one as the days pass and rewrite the reminder for nothing.
    moving = need.reason in (Reason.ACQUAINTED_CONFLICT, Reason.DOUBLE_BOOKED)
    at = when(need.appointment_start, tz, reference=None if moving else need.due)
    who = client.alias
    match need.reason:
        case Reason.LATE:
            return f"Call {who} — late for {at}"
        case Reason.NO_SHOW:
            return f"Call {who} — missed {at}"
        case Reason.NOT_REBOOKED:
            return f"Call {who} — not rebooked since {at}"
        case Reason.CANCELLED_NOT_REBOOKED:
            return f"Call {who} — cancelled {at}, not rebooked"
        case Reason.LAPSED:
            return f"Call {who} — not seen since {at}"
        case Reason.ACQUAINTED_CONFLICT:
            return f"Call {who} — move {at} (waiting-room overlap)"
        case Reason.DOUBLE_BOOKED:
            return f"Call {who} — double-booked {at}"
        case Reason.TERMINATION_LETTER:
            return f"Letter to {who} — no return since {at}"


def _names_the_practice(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in FORBIDDEN_IN_VOICEMAIL)


def voicemail(need: CallNeed, client: Client, practice: Practice) -> str:
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
    match need.reason:
        case Reason.LATE:
            text = f"{hello} You have an appointment with me now, {at}. I wanted to check you are all right. {back}"
        case Reason.NO_SHOW:
            text = f"{hello} You had an appointment with me on {at} and I missed you. If you would like another time, just let me know. {back}"
        case Reason.NOT_REBOOKED | Reason.CANCELLED_NOT_REBOOKED:
            text = f"{hello} I am calling about your next appointment. I have some times open and would be glad to set one up. {back}"
        case Reason.LAPSED:
            text = f"{hello} I have not seen you for a while and wanted to check in. {back}"
        case Reason.ACQUAINTED_CONFLICT | Reason.DOUBLE_BOOKED:
            text = f"{hello} I am calling about your appointment on {at}. I need to adjust the time, so could you give me a call? {back}"
        case Reason.TERMINATION_LETTER:
            text = f"{hello} I am calling about your appointments with me. {back}"
    return text


def call_script(
    need: CallNeed, client: Client, practice: Practice, alternatives: Sequence[datetime]
) -> list[str]:
    """Talking points for the call itself."""
    at = _day(need.appointment_start, practice.tz)
    lines: list[str] = []
    match need.reason:
        case Reason.LATE:
            lines += [
                f"The session started {at}; they have not arrived.",
                "Check they are all right; if they can still come, say so warmly.",
                "If not, offer another time. No blame: running late happens.",
            ]
        case Reason.NO_SHOW:
            lines += [
                f"Missed the session on {at}.",
                "Say you missed them and wanted to check in; you are not upset.",
                "Offer another appointment.",
            ]
        case Reason.NOT_REBOOKED:
            lines += [
                f"Last session {at}; nothing booked since.",
                "Ask whether they would like to schedule the next session.",
                "If they are not going to continue, offer one wrap-up session to close well.",
                "If they decline both, a termination letter follows: note it in the chart.",
            ]
        case Reason.CANCELLED_NOT_REBOOKED:
            lines += [
                f"Cancelled the session on {at} and has not rescheduled.",
                "Show you care and do not want them to miss out; offer a new time.",
                "If they are ending, offer one wrap-up session.",
                "Not interested or no answer: note it in the chart and send a termination letter.",
            ]
        case Reason.LAPSED:
            lines += [
                f"Last attended {at}; cancellations or missed sessions since.",
                "Let them know you are concerned about them and glad to see them again.",
                "Picking up the phone can be hard for a depressed or anxious person: keep it easy.",
            ]
        case Reason.ACQUAINTED_CONFLICT:
            lines += [
                f"Booked {at}, right next to someone they know (they would meet in the waiting room).",
                "Ask to move the appointment a little earlier or later; do not say why in detail.",
            ]
        case Reason.DOUBLE_BOOKED:
            lines += [
                f"Booked {at}, at the same time as another client.",
                "Apologise for the mix-up and offer another time.",
            ]
        case Reason.TERMINATION_LETTER:
            lines += [
                f"No session since {at} and no reply to the call.",
                "Send the termination letter below and note it in the chart.",
            ]
    if alternatives:
        lines.append("Free times to offer: " + "; ".join(_day(a, practice.tz) for a in alternatives) + ".")
    if need.reason in (Reason.ACQUAINTED_CONFLICT, Reason.DOUBLE_BOOKED) and not alternatives:
        lines.append("No free time found in the next two weeks: check the calendar.")
    lines.append("If someone else answers, ask for the client; it is about an appointment, nothing more.")
    return lines


def letter(need: CallNeed, client: Client, practice: Practice) -> str:
    """A termination letter draft (seed: "I note that in their chart and send a termination letter")."""
    at = _day(need.appointment_start, practice.tz)
    return "\n".join(
        [
            f"Dear {client.name},",
            "",
            f"I have not heard from you since our last appointment on {at}, and I tried to reach you by phone.",
            "I will take it that you do not wish to continue at this time, and I am closing your file.",
            "If I am wrong, or if you would like to come back in the future, or to come in once to wrap up,",
            f"you are welcome to contact me{' at ' + practice.callback_number if practice.callback_number else ''}.",
            "",
            "I wish you well.",
            "",
            practice.therapist_name,
        ]
    )


def description(need: CallNeed, client: Client, practice: Practice, alternatives: Sequence[datetime]) -> str:
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
        parts.append(letter(need, client, practice))
        parts.append("")
    parts.append("Call:")
    parts += [f"- {line}" for line in call_script(need, client, practice, alternatives)]
    if client.consent_to_call and client.phone and client.voicemail_ok:
        parts.append("")
        parts.append("Voicemail (never name the kind of practice):")
        parts.append(voicemail(need, client, practice))
    parts.append("")
    parts.append(f"callsheet {need.reason.value} · client {client.id}")
    return "\n".join(parts)


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
) -> Reminder:
    """The desired reminder for a need, of one kind, at `start`."""
    head = title(need, client, practice.tz)
    body = description(need, client, practice, alternatives)
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
