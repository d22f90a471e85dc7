"""`callsheet check`: the checklist (config, roster, time zone, files, state folder, every
calendar reachable, reminders writable, the guard that stopped the last pass), `check --health`
and `check --list`. Each failed item prints its fix; nothing is written unless `--write-probe`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.base import Sink, open_sink, open_source, owner_of
from worker import health, planning, runner
from worker.config import Settings
from worker.errors import AuthError, ConfigError, ConnectorError, StateError
from worker.model import (
    ClientId,
    ItemKind,
    Reminder,
    SystemReason,
    reminder_key,
)
from worker.onboarding import commands as onboarding
from worker.output import EXIT_AUTH, EXIT_FAILED, EXIT_OK
from worker.state import secure_dir


def check(settings: Settings, *, health: bool, write_probe: bool = False) -> int:
    """A checklist: config, source reachable, sink writable; or the heartbeat's age."""
    if health:
        beat = runner.read_health(settings.state_dir)
        every_s = beat.get("every_s") if beat else None
        every = timedelta(seconds=int(str(every_s))) if every_s else settings.run.every
        limit = every * 3
        if beat is None or not beat.get("last_ok"):
            print("unhealthy: no successful pass recorded yet")
            return EXIT_FAILED
        age = datetime.now(UTC) - datetime.fromisoformat(str(beat["last_ok"]))
        if age > limit:
            print(
                f"unhealthy: last good pass {int(age.total_seconds())}s ago (limit {int(limit.total_seconds())}s)"
            )
            return EXIT_FAILED
        print(f"healthy: last good pass {int(age.total_seconds())}s ago")
        return EXIT_OK
    return _checklist(settings, write_probe=write_probe)


def list_calendars(settings: Settings) -> int:
    """`check --list`: every calendar the source and reminders accounts can see (CalDAV discovery)."""
    failed = False

    def show(label: str, kind: str, opener: Callable[[], object]) -> None:
        nonlocal failed
        try:
            connector = opener()
        except (ConnectorError, ConfigError) as exc:
            print(f"[{label}] {exc}")
            failed = True
            return
        try:
            lister = getattr(connector, "calendars", None)
            if lister is None:
                print(f"[{label}] {kind}: nothing to list")
                return
            found = lister()
            print(f"[{label}] {len(found)} calendars:")
            for info in found:
                print(f"    {info.line()}")
        except ConnectorError as exc:
            print(f"[{label}] {exc}")
            failed = True
        finally:
            getattr(connector, "close", lambda: None)()

    show("source", settings.source.kind, lambda: open_source(settings, settings.source))
    show("reminders", settings.reminders.kind, lambda: open_sink(settings, settings.reminders))
    return EXIT_FAILED if failed else EXIT_OK


def _private(path: Path | None) -> str | None:
    """A complaint when a secret or client-data file can be read by others."""
    if path is None or not path.exists():
        return None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return f"{path} is readable by others (mode {mode:o}); fix: chmod 600 {path}"
    return None


def _probe(sink: Sink, kind: ItemKind, now: datetime) -> None:
    """Write and remove one throw-away item: proves write access without leaving anything.

    Each run probes with a key of its own (Google keeps a deleted event's id reserved, so a
    fixed one would prove nothing the second time), and a write that did not happen fails.
    """
    nonce = secrets.token_hex(8)
    probe = Reminder(
        key=reminder_key("callsheet", SystemReason.CHECK.value, "probe", f"{kind}-{nonce}"),
        kind=kind,
        client_id=ClientId("callsheet"),
        reason=SystemReason.CHECK,
        start=now + timedelta(days=1),
        end=now + timedelta(days=1, minutes=15),
        title="callsheet write check (removed at once)",
        description="Written and deleted by `callsheet check`.",
        payload_hash="check",
        # a fresh name on every run: Nextcloud's trash bin refuses the third DELETE of one name
        generation=max(1, int(now.timestamp() * 1000) % 1_000_000_000),
    )
    receipt = sink.create(probe)
    if receipt.gone:
        raise ConnectorError("the probe was not written (the calendar reports it deleted)", operation="check")
    for item in sink.managed():
        if item.key == probe.key and item.kind == kind and item.generation in (0, probe.generation):
            sink.delete(item)


def _describe(connector: object) -> None:
    """Print what a connector can tell about its calendars (CalDAV lists every collection)."""
    describe = getattr(connector, "describe", None)
    if describe is not None:
        for line in describe():
            print(f"     {line}")


def _checklist(settings: Settings, *, write_probe: bool = False) -> int:
    """Every check in turn; `check` always tries the servers at once, whatever a pass waits for.

    Read-only unless `write_probe`: then one throw-away item of each kind is written and removed.
    """
    import connectors.caldav.transport as caldav_transport

    caldav_transport.AUTH_BACKOFF = False
    try:
        return _checks(settings, write_probe=write_probe)
    finally:
        caldav_transport.AUTH_BACKOFF = True


def _checks(settings: Settings, *, write_probe: bool = False) -> int:
    """Every check in turn, each with the fix when it fails; exit 1 when any failed."""
    failures = 0
    auth_failures = 0

    def report(ok: bool, text: str, fix: str = "") -> None:
        nonlocal failures
        failures += not ok
        print(f"[{'ok' if ok else '!!'}] {text}")
        if fix and not ok:
            print(f"     fix: {fix}")

    def refused(role: str, kind: str, exc: AuthError) -> None:
        # the same words as `run` (the message carries the fix for its kind), and exit 3 like `run`
        nonlocal auth_failures
        auth_failures += 1
        report(False, f"{role} {kind}: authorisation needed: {exc}")

    report(
        True, f"config {settings.path} and roster {settings.roster_path} ({len(settings.clients)} clients)"
    )
    report(True, f"time zone {settings.practice.timezone} (office hours, reminder times and texts use it)")
    files: list[Path | None] = [settings.roster_path]
    for section in (settings.source, settings.reminders):
        files += [section.password_file, section.token_file]
    for path in dict.fromkeys(files):
        complaint = _private(path)
        if complaint:
            report(False, complaint.split("; fix: ")[0], complaint.split("; fix: ")[1])
    try:
        secure_dir(settings.state_dir)
        probe = settings.state_dir / ".write-check"
        probe.write_text("ok")
        probe.unlink()
        report(True, f"state folder {settings.state_dir} is writable")
    except OSError as exc:
        report(
            False,
            f"state folder {settings.state_dir}: {exc.strerror}",
            "create it, owned by the user running callsheet",
        )
    if settings.state_url:
        try:
            from worker.state import snapshot_state

            snapshot_state(settings).close()  # reads the account's rows, writes nothing
            report(True, "state database (state_url) reachable")
        except StateError as exc:
            report(False, str(exc), "start PostgreSQL or fix state_url / state_password_env")
    now = datetime.now(UTC)
    try:
        source = open_source(settings, settings.source)
        try:
            _describe(source)
            batch = source.read(runner.window_for(settings, now), None)
            events = sum(len(v) for v in batch.changed.values())
            report(
                batch.bad == 0,
                f"source {settings.source.kind}: {len(batch.changed)} objects, {events} events in the window, "
                f"{batch.bad} unreadable",
                "the log (source.item.skipped) names each unreadable object",
            )
            report(
                bool(batch.changed),
                f"source {settings.source.kind}: holds appointments",
                "the source holds no calendar objects at all: is the folder mounted, the calendar the right one?",
            )
            failures += onboarding.check_coverage(settings, [e for v in batch.changed.values() for e in v])
        finally:
            source.close()
    except AuthError as exc:
        refused("source", settings.source.kind, exc)
    except (ConnectorError, ConfigError) as exc:
        report(False, f"source {settings.source.kind}: {exc}", f"check [source] in {settings.path}")
    try:
        sink = open_sink(settings, settings.reminders)
        try:
            _describe(sink)
            mine, foreign = planning.ours(list(sink.managed()), owner_of(settings))
            count = len(mine)
            kinds = sorted(sink.kinds())
            report(
                bool(kinds),
                f"reminders {settings.reminders.kind}: holds {count} of our items",
                "set events_path/events_url/calendar_id in [reminders]",
            )
            if foreign:
                # a warning, not a failure: they are left alone, byte for byte
                print(
                    f"[warn] reminders: {sum(foreign.values())} items carry callsheet's key but are not this "
                    "installation's (another worker's, or copies); they are never touched"
                )
            for kind in kinds if write_probe else ():
                try:
                    _probe(sink, kind, now)
                    report(True, f"reminders: can write {kind}s")
                except ConnectorError as exc:
                    where = (
                        "tasks_url must be a collection that accepts tasks (VTODO)"
                        if kind == "task"
                        else ("the account needs write access to the reminders calendar")
                    )
                    report(False, f"reminders: cannot write {kind}s ({exc})", where)
            missing = [k for k in settings.reminders.write if k not in kinds]
            report(
                not missing,
                f"reminders: writes {', '.join(settings.reminders.write)}",
                f"configure a place for {', '.join(missing)} in [reminders], or drop it from `write`",
            )
        finally:
            sink.close()
    except AuthError as exc:
        refused("reminders", settings.reminders.kind, exc)
    except (ConnectorError, ConfigError) as exc:
        report(False, f"reminders {settings.reminders.kind}: {exc}", f"check [reminders] in {settings.path}")
    stopped = health.guard_stop(settings)
    if stopped is not None:
        report(False, f"the last pass was stopped by a guard: {stopped[0]}", stopped[1])
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    if auth_failures:
        return EXIT_AUTH
    return EXIT_OK if not failures else EXIT_FAILED
