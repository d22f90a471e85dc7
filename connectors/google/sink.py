"""Google Calendar (reminder events) and Google Tasks (reminder tasks) as the reminder sink.

Events go into the dedicated calls calendar (`[reminders] calendar_id`, made by the setup
script). The event id is `identity.google_event_id(key, generation)`, so a retried insert can
never duplicate, and an item written again after a withdrawal or a deletion (the next
generation) gets an id Google has never seen: Google keeps a deleted event's id reserved
("the operation will only succeed if no existing entry has that ID"). A 409 means the id
exists: it is fetched and adopted when it is ours and live; when it is ours and cancelled (the
therapist deleted it) the receipt says `gone`; anything else (not ours, or no longer
readable: a 409 then 404) is a RefusedError for that one item, never retried blindly. Our
events are listed with one `privateExtendedProperty` filter, deleted ones included;
`managed()` fills the identity (uid, named, owner, generation) from the id and the private
`x-callsheet-owner` property.

Tasks go into a task list (`[reminders] tasklist`, a title or an id, default "Client calls";
created on the first write, never by `plan`). Its id is kept in `<state_dir>/google-tasklist.json`
once found, so renaming the list in Google Tasks changes nothing. A list that was deleted is
reported with a warning and `managed()` raises ItemsUnseenError for that pass: its tasks are
unknown, never "completed by the therapist"; the next task written makes the list anew. Tasks have no client ids and are not idempotent,
so the key line (after a separator at the end of the notes, found anywhere in them) names
them, and the list is re-read before an insert is retried. Only items carrying our key are
ever touched; items already deleted are not deleted again.

Slightly over ~400 lines: events and tasks share the ownership rules and the task-list
bookkeeping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from connectors.base import Capabilities, Receipt
from connectors.google import convert
from connectors.google.api import Account, DuplicateError, GoogleApi
from connectors.google.auth import EVENT_WRITE_SCOPES, TASK_SCOPES, write_private
from worker.errors import (
    ConfigError,
    ConflictError,
    ItemsUnseenError,
    NotFoundError,
    Problem,
    RefusedError,
)
from worker.model import ItemKind, Managed, Reminder

if TYPE_CHECKING:
    from worker.config import ReminderSettings, Settings

log = structlog.get_logger()

DEFAULT_TASKLIST = "Client calls"
EVENT_PAGE = 2500
TASK_PAGE = 100  # the most tasks.list allows
TASKLIST_PAGE = 1000
TASKLIST_FILE = "google-tasklist.json"


class GoogleSink(Capabilities):
    """Writes reminder events to the calls calendar and reminder tasks to a task list."""

    def __init__(self, settings: Settings, reminders: ReminderSettings) -> None:
        self.name = reminders.name
        self.tz = settings.practice.tz
        self.alarm_minutes = reminders.alarm_minutes
        self.calendar_id = reminders.calendar_id
        self.tasklist_name = reminders.tasklist or DEFAULT_TASKLIST
        wanted: set[ItemKind] = set(reminders.write)
        if "event" in wanted and not self.calendar_id:
            raise ConfigError(
                [
                    Problem(
                        f"{settings.path} [reminders]",
                        "kind = 'google' writes events and needs calendar_id = '<the calls calendar "
                        "id that scripts/authorize_google.py printed>' (or write = ['task'])",
                    )
                ]
            )
        self._kinds: frozenset[ItemKind] = frozenset(wanted)
        scopes = []
        if "event" in wanted:
            scopes.append(EVENT_WRITE_SCOPES)
        if "task" in wanted:
            scopes.append(TASK_SCOPES)
        self.api = GoogleApi(
            Account(
                token_file=reminders.token_file,
                api_endpoint=reminders.api_endpoint,
                timeout=reminders.timeout,
                verify_tls=reminders.verify_tls,
                config_path=settings.path,
                every=settings.run.every,
                token_store=settings.token_store(reminders),
            ),
            source=self.name,
            scopes=scopes,
        )
        self._tasklist: str | None = None
        self._tasklist_file = Path(settings.state_dir) / TASKLIST_FILE

    def kinds(self) -> frozenset[ItemKind]:
        return self._kinds

    # -- listing ------------------------------------------------------------------------------

    def managed(self) -> Iterator[Managed]:
        """Every item with our key: events (deleted ones as cancelled) and tasks (any status).

        Raises:
            ItemsUnseenError: the task list was deleted (and is made anew): its tasks are unknown.
        """
        found: list[Managed] = []
        if "event" in self._kinds:
            found += self._managed_events()
        if "task" in self._kinds:
            tasklist = self._find_tasklist(create=False)
            if tasklist is not None:
                found += self._managed_tasks(tasklist)
        yield from found  # only once every listing succeeded

    def _managed_events(self) -> list[Managed]:
        events = self.api.calendar.events()
        found: list[Managed] = []
        try:
            for page in self.api.pages(
                lambda token: events.list(
                    calendarId=self.calendar_id,
                    privateExtendedProperty=convert.MARK_FILTER,
                    showDeleted=True,
                    maxResults=EVENT_PAGE,
                    pageToken=token,
                    fields=convert.MANAGED_EVENT_FIELDS,
                ),
                operation="events.list(ours)",
            ):
                for raw in page.get("items") or ():
                    item = convert.managed_event(raw) if isinstance(raw, dict) else None
                    if item is not None:
                        found.append(item)
        except NotFoundError as exc:
            raise NotFoundError(
                "the calls calendar ([reminders] calendar_id) was not found: re-run the setup script "
                "or fix calendar_id",
                source=self.name,
                operation="events.list(ours)",
            ) from exc
        # a key written again is a higher generation: listed after the earlier ones
        return sorted(found, key=lambda m: (m.key, m.generation))

    def _managed_tasks(self, tasklist: str) -> list[Managed]:
        try:
            return self._list_tasks(tasklist)
        except NotFoundError:
            pass
        # The list we wrote to is gone (deleted in Google Tasks): say that its tasks could not
        # be seen, so that none is read as completed or deleted. The next task written makes
        # the list anew (not here: listing never writes, so `check` and `plan` stay read-only).
        log.warning("sink.tasklist.lost", sink=self.name)
        self._tasklist = None
        self._forget_tasklist()
        raise ItemsUnseenError(
            "the reminder task list was deleted in Google Tasks; the next task callsheet writes "
            "makes it anew. Its earlier tasks are unknown, not completed",
            kind="task",
            source=self.name,
            operation="tasks.list",
        )

    def _list_tasks(self, tasklist: str) -> list[Managed]:
        tasks = self.api.tasks.tasks()
        found: list[Managed] = []
        for page in self.api.pages(
            lambda token: tasks.list(
                tasklist=tasklist,
                showCompleted=True,
                showHidden=True,
                showDeleted=True,
                maxResults=TASK_PAGE,
                pageToken=token,
                fields=convert.MANAGED_TASK_FIELDS,
            ),
            operation="tasks.list",
        ):
            for raw in page.get("items") or ():
                item = convert.managed_task(raw, self.tz) if isinstance(raw, dict) else None
                if item is not None:
                    found.append(item)
        return found

    def _stored_tasklist(self) -> str | None:
        """The list id kept from an earlier pass, for the configured list (else None)."""
        try:
            data = json.loads(self._tasklist_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if isinstance(data, dict) and data.get("configured") == self.tasklist_name and data.get("id"):
            return str(data["id"])
        return None

    def _store_tasklist(self, tasklist_id: str) -> None:
        try:
            write_private(
                self._tasklist_file, json.dumps({"configured": self.tasklist_name, "id": tasklist_id}) + "\n"
            )
        except OSError as exc:  # the next pass looks the list up again: slower, still right
            log.warning("sink.tasklist.unsaved", sink=self.name, error=type(exc).__name__)

    def _forget_tasklist(self) -> None:
        with contextlib.suppress(OSError):
            self._tasklist_file.unlink()

    def _find_tasklist(self, *, create: bool) -> str | None:
        """The task list's id: kept from earlier, else by id or title; made (only when `create`)."""
        if self._tasklist is not None:
            return self._tasklist
        stored = self._stored_tasklist()
        if stored is not None:
            self._tasklist = stored
            return stored
        lists = self.api.tasks.tasklists()
        by_title: str | None = None
        for page in self.api.pages(
            lambda token: lists.list(
                maxResults=TASKLIST_PAGE, pageToken=token, fields="nextPageToken,items(id,title)"
            ),
            operation="tasklists.list",
        ):
            for raw in page.get("items") or ():
                if raw.get("id") == self.tasklist_name:
                    by_title = str(raw["id"])
                    break
                if by_title is None and raw.get("title") == self.tasklist_name:
                    by_title = str(raw["id"])
        if by_title is None and create:
            made = self.api.call(
                lists.insert(body={"title": self.tasklist_name}), operation="tasklists.insert", retry=False
            )
            by_title = str(made["id"])
            log.info("sink.tasklist.created", sink=self.name)
        if by_title is not None:
            self._store_tasklist(by_title)
        self._tasklist = by_title
        return by_title

    # -- writing ------------------------------------------------------------------------------

    def create(self, reminder: Reminder) -> Receipt:
        """Insert the item; an existing live one with the key is adopted as it is.

        An event the therapist deleted keeps its id in Google: the receipt then says `gone`,
        and the runner records a tombstone instead of the item.
        """
        if reminder.kind == "event":
            return self._create_event(reminder)
        return self._create_task(reminder)

    def _create_event(self, reminder: Reminder) -> Receipt:
        events = self.api.calendar.events()
        body = convert.event_body(reminder, tz=self.tz, alarm_minutes=self.alarm_minutes)
        event_id = str(body["id"])
        try:
            made = self.api.call(
                events.insert(calendarId=self.calendar_id, body=body, sendUpdates="none"),
                operation="events.insert",
            )
        except DuplicateError:
            return self._existing_event(reminder, event_id)
        return Receipt(ref=str(made.get("id") or event_id), etag=str(made.get("etag") or ""))

    def _existing_event(self, reminder: Reminder, event_id: str) -> Receipt:
        """After a 409: adopt our live event, report ours deleted as gone, refuse anything else."""
        try:
            existing = self.api.call(
                self.api.calendar.events().get(calendarId=self.calendar_id, eventId=event_id),
                operation="events.get",
            )
        except NotFoundError:
            # reserved but unreadable (a purged tombstone): this id can never be written again
            raise RefusedError(
                f"Google keeps the event id of reminder {reminder.key} reserved but cannot show it "
                "(409, then 404); it needs the next generation",
                source=self.name,
                operation="events.insert",
            ) from None
        item = convert.managed_event(existing)
        ours = (
            item is not None
            and item.key == reminder.key
            and item.generation == reminder.generation
            and item.owner in ("", reminder.owner)
        )
        if not ours:
            raise RefusedError(
                f"an event that callsheet did not write for reminder {reminder.key} holds its id (409)",
                source=self.name,
                operation="events.insert",
            )
        if convert.is_cancelled(existing):
            # the therapist deleted it (Google keeps the id): handled, never recreated
            return Receipt(ref=event_id, gone=True)
        return Receipt(ref=event_id, etag=str(existing.get("etag") or ""))

    def _create_task(self, reminder: Reminder) -> Receipt:
        tasklist = self._find_tasklist(create=True)
        assert tasklist is not None
        tasks = self.api.tasks.tasks()
        body = convert.task_body(reminder, tz=self.tz)
        for attempt in self.api.retrying("tasks.insert"):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    # Tasks are not idempotent: the failed insert may have gone through.
                    for item in self._list_tasks(tasklist):
                        if item.key == reminder.key and item.status == "open":
                            return Receipt(ref=item.ref, etag=item.etag)
                made = self.api.call(
                    tasks.insert(tasklist=tasklist, body=body), operation="tasks.insert", retry=False
                )
                return Receipt(ref=str(made["id"]), etag=str(made.get("etag") or ""))
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def update(self, reminder: Reminder, item: Managed) -> Receipt:
        """New title and text (and hash); the item's time stays where it is."""
        try:
            if item.kind == "event":
                events = self.api.calendar.events()
                request = events.patch(
                    calendarId=self.calendar_id,
                    eventId=item.ref,
                    sendUpdates="none",
                    body={
                        "summary": reminder.title,
                        "description": reminder.description,
                        "extendedProperties": {"private": convert.private_properties(reminder)},
                    },
                )
                if item.etag:
                    request.headers["If-Match"] = item.etag
                made = self.api.call(request, operation="events.patch")
            else:
                tasklist = self._find_tasklist(create=False)
                if tasklist is None:
                    raise NotFoundError("the task list is gone", source=self.name, operation="tasks.patch")
                tasks = self.api.tasks.tasks()
                current = self.api.call(tasks.get(tasklist=tasklist, task=item.ref), operation="tasks.get")
                _, _, typed = convert.split_notes(str(current.get("notes") or ""))
                same = dataclasses.replace(reminder, generation=item.generation)
                made = self.api.call(
                    tasks.patch(
                        tasklist=tasklist,
                        task=item.ref,
                        # the task keeps its identity: the key line names the generation it has
                        body={"title": reminder.title, "notes": convert.task_notes(same, typed)},
                    ),
                    operation="tasks.patch",
                )
        except NotFoundError as exc:
            raise ConflictError("the reminder is gone", source=self.name, operation="update") from exc
        return Receipt(ref=item.ref, etag=str(made.get("etag") or ""))

    def withdraw(self, item: Managed, *, note: str, delete: bool) -> Receipt:
        """Delete the event (delete=True) or complete the task with `note` above its key line."""
        if item.kind == "event":
            if delete:
                self._delete_event(item)
                return Receipt(ref=item.ref, gone=True)
            return Receipt(ref=item.ref, etag=item.etag)
        tasklist = self._find_tasklist(create=False)
        if tasklist is None:
            return Receipt(ref=item.ref, gone=True)
        tasks = self.api.tasks.tasks()
        try:
            current = self.api.call(tasks.get(tasklist=tasklist, task=item.ref), operation="tasks.get")
            made = self.api.call(
                tasks.patch(
                    tasklist=tasklist,
                    task=item.ref,
                    body={
                        "status": "completed",
                        "notes": convert.closed_notes(str(current.get("notes") or ""), note),
                    },
                ),
                operation="tasks.patch",
            )
        except NotFoundError:
            return Receipt(ref=item.ref, gone=True)
        return Receipt(ref=item.ref, etag=str(made.get("etag") or ""))

    def _delete_event(self, item: Managed) -> None:
        if item.status == "cancelled":
            return  # deleted already: a DELETE would only answer 410 again
        with contextlib.suppress(NotFoundError):  # already deleted (404, or 410 for a deleted event)
            self.api.call(
                self.api.calendar.events().delete(
                    calendarId=self.calendar_id, eventId=item.ref, sendUpdates="none"
                ),
                operation="events.delete",
            )

    def delete(self, item: Managed) -> None:
        """Remove one of our items outright (`callsheet purge`)."""
        if item.kind == "event":
            self._delete_event(item)
            return
        tasklist = self._find_tasklist(create=False)
        if tasklist is None or item.status == "cancelled":
            return
        with contextlib.suppress(NotFoundError):
            self.api.call(
                self.api.tasks.tasks().delete(tasklist=tasklist, task=item.ref), operation="tasks.delete"
            )

    def close(self) -> None:
        self.api.close()
