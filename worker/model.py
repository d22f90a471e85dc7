"""The domain values that flow between the connectors, the rules and the sinks.

Everything here is plain frozen data: no I/O, no clock, no logging. Datetimes are always
timezone-aware. Connector library types (icalendar components, Google JSON) never appear here.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, NewType

ClientId = NewType("ClientId", str)
ReminderKey = NewType("ReminderKey", str)

EventStatus = Literal["confirmed", "tentative", "cancelled"]
ItemKind = Literal["event", "task"]


@dataclass(frozen=True, slots=True)
class Attendee:
    """One attendee of a source event: the address and the reply (PARTSTAT / responseStatus)."""

    email: str
    partstat: str = "NEEDS-ACTION"

    @property
    def declined(self) -> bool:
        return self.partstat.upper() in {"DECLINED", "DECLINE"}


@dataclass(frozen=True, slots=True)
class Event:
    """One timed occurrence read from a source calendar, recurrences already expanded.

    `uid` plus `recurrence_id` identify the occurrence; a moved instance keeps its recurrence
    id and carries its new start. `item` names the stored object the event came from (a file
    name, a CalDAV href, a Google event id) so that a changed or removed object can replace
    exactly what it held.
    """

    uid: str
    recurrence_id: str
    start: datetime
    end: datetime
    summary: str = ""
    description: str = ""
    categories: tuple[str, ...] = ()
    status: EventStatus = "confirmed"
    attendees: tuple[Attendee, ...] = ()
    color: str = ""
    created: datetime | None = None
    last_modified: datetime | None = None
    transparent: bool = False
    item: str = ""
    source: str = ""

    @property
    def appointment_id(self) -> str:
        return f"{self.uid}|{self.recurrence_id}"


@dataclass(frozen=True, slots=True)
class Client:
    """A client from clients.toml. Only `id` may ever appear in logs or keys."""

    id: ClientId
    name: str
    alias: str
    match: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    phone: str = ""
    consent_to_call: bool = False
    voicemail_ok: bool = False
    acquainted_with: frozenset[ClientId] = frozenset()
    status: Literal["active", "discharged"] = "active"
    # a couple or family seen together: the ids of the clients this entry stands for
    members: tuple[ClientId, ...] = ()
    # this client's own rhythm: the wait before "did not rebook" (None: the [rules] value)
    rebook_within: timedelta | None = None
    # a planned break: no rebooking or lapsed calls before this moment (local midnight)
    pause_until: datetime | None = None
    pause_reason: str = ""
    # the client asked not to be called before this moment / not at all
    call_after: datetime | None = None
    no_calls: bool = False

    @property
    def discharged(self) -> bool:
        return self.status == "discharged"

    @property
    def is_group(self) -> bool:
        return bool(self.members)


class Attendance(StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    ATTENDED = "attended"
    ARRIVED = "arrived"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"
    LATE_CANCEL = "late_cancel"

    @property
    def is_cancelled(self) -> bool:
        return self in (Attendance.CANCELLED, Attendance.LATE_CANCEL)


@dataclass(frozen=True, slots=True)
class Observation:
    """What an event says about an appointment, independent of the clock.

    This is what the state keeps as appointment history: facts, never titles or descriptions.
    `cancelled_at` is when the cancellation happened as far as we can tell (LAST-MODIFIED of
    the cancelled event, the moment we saw it vanish, else its start).
    """

    id: str
    uid: str
    recurrence_id: str
    client_id: ClientId
    start: datetime
    end: datetime
    cancelled: bool = False
    cancelled_at: datetime | None = None
    no_show: bool = False
    arrived: bool = False
    created: datetime | None = None
    item: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class Appointment:
    """An observation judged at `now`: the input of the rules."""

    id: str
    uid: str
    recurrence_id: str
    client_id: ClientId
    start: datetime
    end: datetime
    attendance: Attendance
    cancelled_at: datetime | None = None
    created: datetime | None = None

    @property
    def is_cancelled(self) -> bool:
        return self.attendance.is_cancelled


@dataclass(frozen=True, slots=True)
class Busy:
    """A stretch of time that is taken on the source calendars (any event, client or not)."""

    start: datetime
    end: datetime


class Reason(StrEnum):
    LATE = "late"
    NO_SHOW = "no_show"
    NOT_REBOOKED = "not_rebooked"
    CANCELLED_NOT_REBOOKED = "cancelled_not_rebooked"
    LAPSED = "lapsed"
    ACQUAINTED_CONFLICT = "acquainted_conflict"
    DOUBLE_BOOKED = "double_booked"
    TERMINATION_LETTER = "termination_letter"


class SystemReason(StrEnum):
    """Reasons for reminders about callsheet itself, not about a client."""

    ATTENTION = "attention"
    CHECK = "check"


NeedState = Literal["due", "upcoming", "stale"]


def _key_part(text: str) -> str:
    return text.replace("%", "%25").replace("|", "%7C")


def reminder_key(client_id: str, reason: str, anchor_uid: str, anchor_rid: str) -> ReminderKey:
    """Return the deterministic reminder key (docs/design.md "Reminder keys").

    sha256 of "client|reason|uid|recurrence-id", base32hex, lower case, first 26 characters.
    The alphabet (0-9, a-v) is valid for Google event ids. A '|' or '%' inside the uid or
    recurrence id is escaped (%7C, %25) so that two different anchors can never spell the
    same text; ordinary uids go in unchanged.
    """
    uid, rid = _key_part(anchor_uid), _key_part(anchor_rid)
    digest = hashlib.sha256(f"{client_id}|{reason}|{uid}|{rid}".encode()).digest()
    return ReminderKey(base64.b32hexencode(digest).decode("ascii").lower()[:26])


@dataclass(frozen=True, slots=True)
class CallNeed:
    """One reason to contact one client, anchored on one appointment."""

    key: ReminderKey
    client_id: ClientId
    reason: Reason
    due: datetime
    state: NeedState
    anchor_uid: str
    anchor_rid: str
    appointment_start: datetime
    appointment_end: datetime
    other_client_id: ClientId | None = None
    other_start: datetime | None = None

    @property
    def anchor(self) -> str:
        return f"{self.anchor_uid}|{self.anchor_rid}"


@dataclass(frozen=True, slots=True)
class Reminder:
    """A reminder as we want it to exist in the sink (one per need and kind)."""

    key: ReminderKey
    kind: ItemKind
    client_id: ClientId
    reason: Reason | SystemReason
    start: datetime
    end: datetime
    title: str
    description: str
    payload_hash: str
    # which incarnation of the item this is (worker.identity: UID and resource name carry it);
    # reconcile sets it: the next one after a withdrawal, the held one when adopting
    generation: int = 1
    # this installation's owner mark (X-CALLSHEET-OWNER), set by the runner
    owner: str = ""


@dataclass(frozen=True, slots=True)
class ItemName:
    """What a UID or resource name written by callsheet says: need, kind and generation.

    `kind` is None for the legacy form (`callsheet-<key>`), which events and tasks shared.
    """

    key: ReminderKey
    kind: ItemKind | None
    generation: int


RecordStatus = Literal["open", "withdrawn", "tombstone"]


@dataclass(frozen=True, slots=True)
class Record:
    """What state remembers of one item we wrote."""

    key: ReminderKey
    kind: ItemKind
    status: str  # RecordStatus
    ref: str = ""
    etag: str = ""
    payload_hash: str = ""
    start: datetime | None = None
    generation: int = 0
    client_id: str = ""
    reason: str = ""


ManagedStatus = Literal["open", "completed", "cancelled"]


@dataclass(frozen=True, slots=True)
class Managed:
    """An item found in the sink that carries our key (we wrote it, or a crash left it)."""

    key: ReminderKey
    kind: ItemKind
    ref: str
    etag: str = ""
    start: datetime | None = None
    status: ManagedStatus = "open"
    payload_hash: str = ""
    client_id: str = ""
    reason: str = ""
    # identity as the sink found it (worker.identity.foreign_reason judges ownership from these)
    uid: str = ""  # the item's UID (Google events: the UID form of the event id)
    named: ItemName | None = None  # what its resource name says; None where the server picks names
    owner: str = ""  # its X-CALLSHEET-OWNER mark ("" on items written before marks existed)
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Create:
    reminder: Reminder


@dataclass(frozen=True, slots=True)
class Adopt:
    """Record an item that exists in the sink but not in state (a crash, or a lost state)."""

    reminder: Reminder
    item: Managed


@dataclass(frozen=True, slots=True)
class Update:
    """Rewrite the text of an item we own; its time stays where it is (the therapist may move it)."""

    reminder: Reminder
    item: Managed


@dataclass(frozen=True, slots=True)
class Withdraw:
    """The need resolved: delete a future event, complete a task with `note`, leave past events."""

    key: ReminderKey
    kind: ItemKind
    item: Managed | None
    note: str
    delete: bool


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The therapist deleted or completed our item: never create this key again."""

    key: ReminderKey
    kind: ItemKind
    why: str


@dataclass(frozen=True, slots=True)
class Keep:
    key: ReminderKey
    kind: ItemKind


Action = Create | Adopt | Update | Withdraw | Tombstone | Keep


@dataclass(frozen=True, slots=True)
class Window:
    """The span of time a source expands recurrences over."""

    start: datetime
    end: datetime


@dataclass(slots=True)
class SourceBatch:
    """What one read of a source returned.

    `changed` maps a stored object (file, href, event id) to all the events it now holds
    (inside the window); `removed` lists objects that are gone. When `complete` is true the
    batch lists every object the source holds, and any object not in it is gone too.
    `bad` counts objects skipped because they could not be read.
    """

    changed: dict[str, list[Event]] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    complete: bool = False
    cursor: dict[str, object] = field(default_factory=dict)
    bad: int = 0


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    """True when two half-open intervals share any time."""
    return a_start < b_end and b_start < a_end


def gap_between(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> timedelta:
    """Time between two intervals; negative when they overlap."""
    return max(b_start - a_end, a_start - b_end)
