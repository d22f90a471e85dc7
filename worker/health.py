"""Step 4 of a pass: health.json and the "callsheet needs attention" reminder
(docs/design.md "Operations").

health.json (0600, no client data) holds the last pass's time and outcome, the last good
pass, since when passes fail, the error class, and counts (failed items by class included).
After passes kept failing for `run.alert_after`, one attention reminder is written to the
reminders calendar (a fresh item each incident: Google keeps deleted ids, Nextcloud keeps
deleted names in its trash); the next healthy pass removes it. A simulated `--now` is never
recorded as a pass.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from connectors.base import open_sink, owner_of
from worker import render
from worker.config import Settings
from worker.errors import GuardError
from worker.model import ClientId, Reminder, SystemReason, reminder_key
from worker.state import secure_dir, write_private

log = structlog.get_logger()

ALERT_KEY = reminder_key("callsheet", SystemReason.ATTENTION.value, "health", "")


def read_health(state_dir: Path) -> dict[str, object] | None:
    try:
        value = json.loads((state_dir / "health.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write(state_dir: Path, body: dict[str, object]) -> None:
    secure_dir(state_dir)
    write_private(state_dir / "health.json", json.dumps(body, sort_keys=True).encode())


def write_health(
    state_dir: Path,
    *,
    now: datetime,
    outcome: str,
    counts: dict[str, int],
    error: str = "",
    every: timedelta | None = None,
) -> None:
    """Record one pass: `outcome` is ok, partial (some items failed) or failed.

    `every` is the loop's interval when it runs under `run --every` (check --health follows it).
    """
    previous = read_health(state_dir) or {}
    ok = outcome == "ok"
    body: dict[str, object] = {
        "time": now.isoformat(),
        "outcome": outcome,
        "last_ok": now.isoformat() if ok else previous.get("last_ok"),
        "failing_since": None if ok else (previous.get("failing_since") or now.isoformat()),
        "error": error,
        "counts": counts,
        "pid": os.getpid(),
        "alert_generation": previous.get("alert_generation", 0),
    }
    if every is not None:
        body["every_s"] = int(every.total_seconds())
    elif "every_s" in previous:
        body["every_s"] = previous["every_s"]
    if not ok and previous.get("alerted"):
        body["alerted"] = True
    _write(state_dir, body)


def record_failure(
    settings: Settings, now: datetime, exc: BaseException, *, every: timedelta | None = None
) -> None:
    """Note a failed pass in health.json, and raise the alarm if it has lasted too long."""
    error = type(exc).__name__
    write_health(settings.state_dir, now=now, outcome="failed", counts={}, error=error, every=every)
    alert_if_failing(settings, now, error)


def record_outcome(
    settings: Settings, now: datetime, counts: dict[str, int], *, every: timedelta | None = None
) -> bool:
    """Note a finished pass; returns False (and may alert) when some items failed."""
    if counts.get("failed"):
        write_health(
            settings.state_dir, now=now, outcome="partial", counts=counts, error="ItemsFailed", every=every
        )
        alert_if_failing(settings, now, "ItemsFailed")
        return False
    write_health(settings.state_dir, now=now, outcome="ok", counts=counts, every=every)
    return True


# What went wrong, in words, and what fixes it (by error class; no Python names in the text).
_CAUSES = {
    "AuthError": "it lost its permission to use the calendar (the authorisation expired or was revoked)",
    "ConfigError": "its configuration has a problem",
    "StateError": "it cannot use its state database",
    "SourceLossError": "most or all appointments vanished from the appointment calendar at once",
    "MassDeletionError": "every reminder it wrote vanished from the reminders calendar at once",
    "ClockError": "the computer's clock is behind the time of the last pass",
    "NotFoundError": "the calendar it was given does not exist (any more)",
    "ItemsFailed": "the calendar refused some reminders",
    "TransientError": "the calendar server did not answer or was busy",
}
_FIXES = {
    "AuthError": (
        "On the computer that runs callsheet, run the setup again: callsheet authorize-google --config "
        "{config} (Google), or check the password file or app password (CalDAV)."
    ),
    "ConfigError": "Run: callsheet --config {config} check",
    "StateError": "Run: callsheet --config {config} check (it names the state folder and what is wrong).",
    "SourceLossError": (
        "Check that the appointment calendar or folder is there (a network share mounted, the right "
        "calendar configured). If the appointments really were removed, run once: "
        "callsheet --config {config} run --once --accept-source-loss"
    ),
    "MassDeletionError": (
        "Check that the reminders calendar is the right one and reachable. If the reminders were "
        "removed on purpose, run once: callsheet --config {config} run --once --accept-deletions"
    ),
    "ClockError": "Set the computer's clock right (turn on network time); the next pass then goes on.",
    "NotFoundError": "Check the calendar address in the configuration: callsheet --config {config} check",
    "ItemsFailed": "callsheet --config {config} status shows how many and why; the rest was written.",
}
_DEFAULT_CAUSE = "it could not reach the calendar server"
_DEFAULT_FIX = (
    "Check that the server is up, the address and password are right, and the network works; "
    "callsheet --config {config} check shows what fails."
)


def alert_text(settings: Settings, error: str, last_ok: datetime | None) -> str:
    """The attention reminder's body: the cause in words, the last good pass, the fix."""
    cause = _CAUSES.get(error, _DEFAULT_CAUSE)
    fix = _FIXES.get(error, _DEFAULT_FIX).format(config=settings.path)
    if last_ok is None:
        since = "callsheet has not completed a pass yet"
    else:
        since = (
            f"callsheet's last complete pass was {last_ok.astimezone(settings.practice.tz):%a %d %b %H:%M}"
        )
    return (
        f"{since}: {cause}.\n\n{fix}\n\nUntil this is fixed no new call reminders are written. "
        "This reminder disappears by itself once callsheet works again."
    )


def alert_if_failing(settings: Settings, now: datetime, error: str) -> bool:
    """After passes kept failing for `run.alert_after`, write one "needs attention" reminder.

    Written once per failing stretch (health.json remembers it), as a fresh item each time;
    removed by the next healthy pass. Returns True when it was written now. Never raises: the
    sink may be unreachable too.
    """
    beat = read_health(settings.state_dir) or {}
    since_text = beat.get("failing_since")
    if not since_text or beat.get("alerted"):
        return False
    since = datetime.fromisoformat(str(since_text))
    if now - since < settings.run.alert_after:
        return False
    last_ok_text = beat.get("last_ok")
    last_ok = datetime.fromisoformat(str(last_ok_text)) if last_ok_text else None
    body = alert_text(settings, error, last_ok)
    generation = int(str(beat.get("alert_generation", 0))) + 1
    reminder = Reminder(
        key=ALERT_KEY,
        kind="event",
        client_id=ClientId("callsheet"),
        reason=SystemReason.ATTENTION,
        start=now,
        end=now + timedelta(minutes=15),
        title="callsheet needs attention",
        description=body,
        payload_hash=render.payload_hash("callsheet needs attention", body),
        generation=generation,
        owner=owner_of(settings),
    )
    try:
        sink = open_sink(settings, settings.reminders)
        try:
            if "event" not in sink.kinds():
                reminder = replace(reminder, kind="task")
            # a fresh item each incident, above any attention item the calendar still lists
            # (health.json may be new; Google and Nextcloud never take a used name again)
            seen = [m.generation for m in sink.managed() if m.key == ALERT_KEY]
            generation = max([generation, *(g + 1 for g in seen)])
            receipt = sink.create(replace(reminder, generation=generation))
        finally:
            sink.close()
    except Exception as exc:  # noqa: BLE001 - the alert is best effort; the health file still tells
        log.warning("alert.unwritable", error=type(exc).__name__)
        return False
    if receipt.gone:
        log.warning("alert.unwritable", error="gone")
        return False
    beat["alerted"] = True
    beat["alert_generation"] = generation
    _write(settings.state_dir, beat)
    log.warning("alert.written", error=error, since=since.isoformat())
    return True


def way_out(exc: BaseException) -> str:
    """The named way out of a guard, for messages ("" for other errors)."""
    return exc.way_out if isinstance(exc, GuardError) else ""


GUARDS = ("SourceLossError", "MassDeletionError", "ClockError")


def guard_stop(settings: Settings) -> tuple[str, str] | None:
    """When the last pass was stopped by a guard: its cause in words and the way out (for check)."""
    beat = read_health(settings.state_dir) or {}
    error = str(beat.get("error") or "")
    if beat.get("outcome") != "failed" or error not in GUARDS:
        return None
    return _CAUSES[error], _FIXES[error].format(config=settings.path)
