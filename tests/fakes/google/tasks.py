"""The fake's Google Tasks v1: task lists and tasks."""

from __future__ import annotations

import json
import secrets
import threading
from datetime import datetime
from typing import Any
from urllib.parse import quote

from tests.fakes.google.common import _now, _rfc3339, _TaskList
from tests.fakes.google.errors import ApiError


class TasksMixin:
    """Tasks v1 methods; mixed into FakeGoogle (which holds the state and the paging)."""

    lock: threading.RLock
    tasklists: dict[str, _TaskList]

    def add_tasklist(self, title: str, *, tasklist_id: str | None = None) -> str:
        with self.lock:
            tid = tasklist_id or ("L" + secrets.token_hex(10))
            self.tasklists[tid] = _TaskList(tid, title, order=len(self.tasklists))
            return tid

    def tasks(self, tasklist_title: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            for tasklist in self.tasklists.values():
                if tasklist.title == tasklist_title:
                    return [
                        json.loads(json.dumps(t))
                        for t in tasklist.tasks.values()
                        if include_deleted or not t.get("deleted")
                    ]
            return []

    def tasklist_titles(self) -> list[str]:
        with self.lock:
            return [t.title for t in self.tasklists.values()]

    def complete_task_in_app(self, tasklist_title: str, task_id: str) -> None:
        """Tick a task in Google's own app: completed, and hidden from default listings
        (showCompleted: "showHidden must also be True to show tasks completed in first party
        clients")."""
        with self.lock:
            for tasklist in self.tasklists.values():
                if tasklist.title == tasklist_title:
                    task = tasklist.tasks[task_id]
                    task.update(
                        status="completed", completed=_rfc3339(_now()), hidden=True, updated=_rfc3339(_now())
                    )
                    return
            raise KeyError(tasklist_title)

    def delete_task_in_app(self, tasklist_title: str, task_id: str) -> None:
        with self.lock:
            for tasklist in self.tasklists.values():
                if tasklist.title == tasklist_title:
                    tasklist.tasks[task_id].update(deleted=True, updated=_rfc3339(_now()))
                    return
            raise KeyError(tasklist_title)

    def tasklists_by_title(self, title: str) -> _TaskList:
        """The stored list with this title (tests edit its tasks as the app would)."""
        for tasklist in self.tasklists.values():
            if tasklist.title == title:
                return tasklist
        raise KeyError(title)

    def rename_tasklist_in_app(self, title: str, new_title: str) -> None:
        """Rename a list in Google Tasks: its id stays."""
        with self.lock:
            for tasklist in self.tasklists.values():
                if tasklist.title == title:
                    tasklist.title = new_title
                    return
            raise KeyError(title)

    def delete_tasklist_in_app(self, title: str) -> None:
        """Delete a list (and its tasks) in Google Tasks: its id answers 404 from now on."""
        with self.lock:
            for tasklist_id, tasklist in list(self.tasklists.items()):
                if tasklist.title == title:
                    del self.tasklists[tasklist_id]
                    return
            raise KeyError(title)

    def _tasklist(self, tasklist_id: str) -> _TaskList:
        if tasklist_id == "@default":
            tasklist_id = "MDefaultList0000000000"
        tasklist = self.tasklists.get(tasklist_id)
        if tasklist is None:
            raise ApiError(404, "notFound", "Task list not found.")
        return tasklist

    @staticmethod
    def _tasklist_json(tasklist: _TaskList) -> dict[str, Any]:
        return {
            "kind": "tasks#taskList",
            "id": tasklist.id,
            "etag": f'"{tasklist.id}"',
            "title": tasklist.title,
            "updated": _rfc3339(_now()),
        }

    def _tasks_tasklists_list(self, *, query: dict[str, str], **_: Any) -> dict[str, Any]:
        items = [self._tasklist_json(t) for t in sorted(self.tasklists.values(), key=lambda t: t.order)]
        # tasklists.list maxResults: "Maximum is 1000"; the fake pages sooner to exercise paging
        return self._page(items, query, kind="tasks#taskLists", default=20, cap=1000)

    def _tasks_tasklists_get(self, *, params: dict[str, str], **_: Any) -> dict[str, Any]:
        return self._tasklist_json(self._tasklist(params["tasklist"]))

    def _tasks_tasklists_insert(self, *, body: Any, **_: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("title"):
            raise ApiError(400, "invalid", "Invalid Value")
        return self._tasklist_json(self.tasklists[self.add_tasklist(body["title"])])

    @staticmethod
    def _due(value: Any) -> str:
        """Only the date of `due` is kept: "Only date information is recorded; the time portion
        of the timestamp is discarded when setting this field" (Task.due)."""
        try:
            day = datetime.fromisoformat(str(value)).date()
        except ValueError as exc:
            raise ApiError(400, "invalid", "Invalid value for: due") from exc
        return f"{day.isoformat()}T00:00:00.000Z"

    def _tasks_tasks_list(self, *, params: dict[str, str], query: dict[str, str], **_: Any) -> dict[str, Any]:
        tasklist = self._tasklist(params["tasklist"])
        # tasks.list, tasks v1 discovery document:
        # showCompleted "The default is True. Note that showHidden must also be True to show
        # tasks completed in first party clients, such as the web UI and Google's mobile apps";
        # showHidden "The default is False"; showDeleted "The default is False".
        completed = query.get("showCompleted", "true") == "true"
        hidden = query.get("showHidden") == "true"
        deleted = query.get("showDeleted") == "true"
        items = [
            t
            for t in tasklist.tasks.values()
            if (deleted or not t.get("deleted"))
            and (hidden or not t.get("hidden"))
            and (completed or t.get("status") != "completed")
        ]
        # tasks.list maxResults: "The default is 20 (max allowed: 100)"
        return self._page(items, query, kind="tasks#tasks", default=20, cap=100)

    def _task(self, tasklist: _TaskList, task_id: str) -> dict[str, Any]:
        task = tasklist.tasks.get(task_id)
        if task is None:
            raise ApiError(404, "notFound", "Task not found.")
        return task

    def _tasks_tasks_get(self, *, params: dict[str, str], **_: Any) -> dict[str, Any]:
        return self._task(self._tasklist(params["tasklist"]), params["task"])

    def _tasks_tasks_insert(self, *, params: dict[str, str], body: Any, **_: Any) -> dict[str, Any]:
        tasklist = self._tasklist(params["tasklist"])
        if not isinstance(body, dict):
            raise ApiError(400, "invalid", "Invalid Value")
        # Task.notes "maximum length allowed: 8192 characters"; Task.title "1024 characters"
        if len(str(body.get("notes") or "")) > 8192 or len(str(body.get("title") or "")) > 1024:
            raise ApiError(400, "invalid", "Invalid Value")
        task_id = secrets.token_urlsafe(16).replace("-", "x").replace("_", "y")
        task = {k: v for k, v in body.items() if k in ("title", "notes", "status", "due")}
        if "due" in task:
            task["due"] = self._due(task["due"])
        task.setdefault("status", "needsAction")
        task.update(
            kind="tasks#task",
            id=task_id,
            etag=f'"{secrets.token_hex(6)}"',
            updated=_rfc3339(_now()),
            position=f"{len(tasklist.tasks):020d}",
            selfLink=f"{self.url}tasks/v1/lists/{quote(tasklist.id)}/tasks/{task_id}",
        )
        tasklist.tasks[task_id] = task
        return task

    def _tasks_tasks_patch(self, *, params: dict[str, str], body: Any, **_: Any) -> dict[str, Any]:
        tasklist = self._tasklist(params["tasklist"])
        task = self._task(tasklist, params["task"])
        changes = {k: v for k, v in (body or {}).items() if k in ("title", "notes", "status", "due")}
        if "due" in changes:
            changes["due"] = self._due(changes["due"])
        task.update(changes)
        if changes.get("status") == "completed" and "completed" not in task:
            task["completed"] = _rfc3339(_now())
        if changes.get("status") == "needsAction":
            task.pop("completed", None)
        task.update(etag=f'"{secrets.token_hex(6)}"', updated=_rfc3339(_now()))
        return task

    def _tasks_tasks_delete(self, *, params: dict[str, str], **_: Any) -> None:
        tasklist = self._tasklist(params["tasklist"])
        task = self._task(tasklist, params["task"])
        task.update(deleted=True, updated=_rfc3339(_now()))
