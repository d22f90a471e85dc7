"""structlog set-up: JSON lines when stderr is not a terminal, readable text when it is.

Logs go to stderr (stdout carries `plan --json` and tables). The processor chain ends with an
allow-list of keys: anything else is dropped, so a careless call cannot leak a client's name,
phone, email, an event's title or description. Values are ids, counts and durations. A file
name, href or UID can carry a name or an email address: the values of `uid` and `item` are
replaced by `digest()` (12 hex digits of their SHA-256), here, for every caller at once.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

# The keys the code logs (tests/unit/test_log_keys.py keeps this list and the log calls in step),
# plus structlog's own: event, level, timestamp.
ALLOWED_KEYS = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "run_id",
        "account",
        "source",
        "sink",
        "item",
        "uid",
        "key",
        "kind",
        "client",
        "reason",
        "count",
        "changed",
        "removed",
        "bad",
        "ambiguous",
        "needs",
        "due",
        "upcoming",
        "stale",
        "created",
        "updated",
        "resolved",
        "tombstoned",
        "adopted",
        "failed",
        "failure",
        "kept",
        "dry_run",
        "appointments",
        "left",
        "lost",
        "held",
        "foreign_uid",
        "foreign_name",
        "foreign_owner",
        "duration_ms",
        "error",
        "status",
        "operation",
        "attempt",
        "problem",
        "retry_after",
        "next_in_s",
        "moved_to",
        "calendar",
        "collection",
        "requests",
        "mode",
        "signal",
        "since",
        "where",
        "slot",
        "pid",
        "at",
    }
)

# keys whose values may name a person (file names, hrefs, UIDs): logged as a digest
HASHED_KEYS = frozenset({"uid", "item"})


def digest(text: str) -> str:
    """A short, stable stand-in for a file name, href or UID in logs and stored cursors."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _allow_list(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in [k for k in event_dict if k not in ALLOWED_KEYS]:
        del event_dict[name]
    for name in HASHED_KEYS & event_dict.keys():
        value = event_dict[name]
        if isinstance(value, str) and value:
            event_dict[name] = digest(value)
    return event_dict


def configure(level: str = "info", *, stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog once for the process."""
    out = stream or sys.stderr
    as_json = (not out.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _allow_list,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
