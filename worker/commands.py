"""What each `callsheet` command does, once the arguments are parsed and the config loaded.

Human output goes to stdout as plain tables; logs go to stderr. Nothing printed here names a
client beyond the alias the therapist chose for reminder titles.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.base import Sink, open_sink, open_source
from worker import runner
from worker.cli import EXIT_FAILED, EXIT_OK, REASON_TEXT, need_json
from worker.config import Settings, load_settings
from worker.errors import AuthError, ConfigError, ConnectorError, LockedError
from worker.model import (
    Appointment,
    Attendance,
    CallNeed,
    ClientId,
    ItemKind,
    Reminder,
    SystemReason,
    reminder_key,
)
from worker.roster import Roster
from worker.state import secure_dir


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, rule, *body])


def call_sheet(settings: Settings, plan: runner.Plan) -> str:
    """The calls that are due, as a table: who, why, when, how to reach them."""
    roster = Roster.of(settings.clients)
    tz = settings.practice.tz
    rows: list[tuple[datetime, str, str, str, str, str]] = []
    for need in plan.needs:
        if need.state != "due":
            continue
        client = roster.get(need.client_id)
        if client is None:
            continue
        reminder = plan.reminders.get((need.key, "event")) or plan.reminders.get((need.key, "task"))
        item = plan.held.get((need.key, "event")) or plan.held.get((need.key, "task"))
        when = item.start if item is not None and item.start else (reminder.start if reminder else need.due)
        if need.reason.value == "termination_letter":
            how = "letter"
        elif client.consent_to_call and client.phone:
            how = client.phone + ("" if client.voicemail_ok else " (no voicemail)")
        else:
            how = "no consent"
        rows.append(
            (
                when,
                client.alias,
                REASON_TEXT[need.reason],
                when.astimezone(tz).strftime("%a %d %b %H:%M"),
                how,
                plan.need_action(need),
            )
        )
    if not rows:
        return "No calls are due."
    rows.sort(key=lambda r: r[0])
    return _table(("Who", "Why", "When", "Number", "Reminder"), [r[1:] for r in rows])


def run_once(settings: Settings, now: datetime, *, include_stale: bool) -> int:
    try:
        outcome = runner.run_pass(settings, now, include_stale=include_stale)
    except LockedError:
        print("callsheet: another pass is running; skipped.", file=sys.stderr)
        return EXIT_OK
    except ConnectorError as exc:
        runner.record_failure(settings, now, exc)
        raise
    runner.write_health(settings.state_dir, now=now, outcome="ok", counts=dict(outcome.counts))
    c = outcome.counts
    print(
        f"{sum(1 for n in outcome.plan.needs if n.state == 'due')} calls due; "
        f"{c['created']} reminders written, {c['updated']} updated, {c['resolved']} withdrawn, "
        f"{c['tombstoned']} marked handled."
    )
    return EXIT_OK


def run_every(settings: Settings, every: timedelta, *, include_stale: bool) -> int:
    stop = runner.Stop()
    stop.install()
    return runner.loop(settings, every, stop=stop, include_stale=include_stale)


def plan(settings: Settings, now: datetime, *, as_json: bool, include_stale: bool) -> int:
    outcome = runner.run_pass(settings, now, dry_run=True, include_stale=include_stale)
    result = outcome.plan
    tz = settings.practice.tz
    if as_json:
        for need in result.needs:
            print(need_json(need, result.need_action(need), tz))
        for withdraw in result.withdrawals():
            item = withdraw.item
            print(
                json.dumps(
                    {
                        "client": item.client_id if item else "",
                        "reason": item.reason if item else "",
                        "state": "resolved",
                        "due": item.start.astimezone(tz).isoformat() if item and item.start else None,
                        "anchor": "",
                        "key": withdraw.key,
                        "action": "resolve",
                    }
                )
            )
        return EXIT_OK
    print(call_sheet(settings, result))
    upcoming = sum(1 for n in result.needs if n.state == "upcoming")
    stale = sum(1 for n in result.needs if n.state == "stale")
    print(
        f"\n{upcoming} upcoming, {stale} stale (older than {settings.rules.max_age.days} days). Nothing was written."
    )
    return EXIT_OK


def status(settings: Settings, now: datetime, *, as_json: bool) -> int:
    """The caseload, most in need of attention first."""
    outcome = runner.run_pass(settings, now, dry_run=True)
    appointments = outcome.plan.appointments
    open_keys = {key for (key, _kind), item in outcome.plan.held.items() if item.status == "open"}
    by_client: dict[str, list[Appointment]] = {}
    for a in appointments:
        by_client.setdefault(a.client_id, []).append(a)
    needs_by: dict[str, list[CallNeed]] = {}
    for n in outcome.plan.needs:
        if n.state == "due":
            needs_by.setdefault(n.client_id, []).append(n)
    rows = []
    for client in settings.clients:
        appts = sorted(by_client.get(client.id, []), key=lambda a: a.start)
        attended = [a for a in appts if a.attendance in (Attendance.ATTENDED, Attendance.ARRIVED)]
        ahead = [a for a in appts if not a.is_cancelled and a.end > now]
        last = attended[-1].end if attended else None
        nxt = ahead[0].start if ahead else None
        open_calls = len(needs_by.get(client.id, []))
        days = (now - last).days if last else None
        rows.append(
            {
                "client": client.id,
                "alias": client.alias,
                "status": client.status,
                "last_attended": last.astimezone(settings.practice.tz).isoformat() if last else None,
                "next_booked": nxt.astimezone(settings.practice.tz).isoformat() if nxt else None,
                "open_calls": open_calls,
                "reminders_open": sum(1 for n in needs_by.get(client.id, []) if n.key in open_keys),
                "needs": sorted(n.reason.value for n in needs_by.get(client.id, [])),
                "days_since_contact": days,
            }
        )
    rows.sort(
        key=lambda r: (
            r["status"] != "active",
            -int(str(r["open_calls"])),
            r["next_booked"] is not None,
            # never seen (only missed or cancelled) counts as the longest time without contact
            -(r["days_since_contact"] if r["days_since_contact"] is not None else 10**6),  # type: ignore[operator]
            r["client"],
        )
    )
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    tz = settings.practice.tz

    def day(text: object) -> str:
        return datetime.fromisoformat(str(text)).astimezone(tz).strftime("%a %d %b") if text else "-"

    table = [
        (
            str(r["alias"]),
            day(r["last_attended"]),
            day(r["next_booked"]),
            str(r["open_calls"]),
            "-" if r["days_since_contact"] is None else str(r["days_since_contact"]),
            str(r["status"]),
        )
        for r in rows
    ]
    print(_table(("Client", "Last attended", "Next booked", "Open calls", "Days since", "Status"), table))
    return EXIT_OK


def check(settings: Settings, *, health: bool) -> int:
    """A checklist: config, source reachable, sink writable; or the heartbeat's age."""
    if health:
        beat = runner.read_health(settings.state_dir)
        limit = settings.run.every * 3
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
    return _checklist(settings)


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
    """Write and remove one throw-away item: proves write access without leaving anything."""
    probe = Reminder(
        key=reminder_key("callsheet", SystemReason.CHECK.value, "probe", kind),
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
    sink.create(probe)
    for item in sink.managed():
        if item.key == probe.key and item.kind == kind and item.generation in (0, probe.generation):
            sink.delete(item)


def _describe(connector: object) -> None:
    """Print what a connector can tell about its calendars (CalDAV lists every collection)."""
    describe = getattr(connector, "describe", None)
    if describe is not None:
        for line in describe():
            print(f"     {line}")


def _checklist(settings: Settings) -> int:
    """Every check in turn; `check` always tries the servers at once, whatever a pass waits for."""
    import connectors.caldav.transport as caldav_transport

    caldav_transport.AUTH_BACKOFF = False
    try:
        return _checks(settings)
    finally:
        caldav_transport.AUTH_BACKOFF = True


def _checks(settings: Settings) -> int:
    """Every check in turn, each with the fix when it fails; exit 1 when any failed."""
    failures = 0

    def report(ok: bool, text: str, fix: str = "") -> None:
        nonlocal failures
        failures += not ok
        print(f"[{'ok' if ok else '!!'}] {text}")
        if fix and not ok:
            print(f"     fix: {fix}")

    report(
        True, f"config {settings.path} and roster {settings.roster_path} ({len(settings.clients)} clients)"
    )
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
        finally:
            source.close()
    except AuthError as exc:
        report(False, f"source {settings.source.kind}: {exc}", "re-run the authorisation (see the message)")
    except (ConnectorError, ConfigError) as exc:
        report(False, f"source {settings.source.kind}: {exc}", f"check [source] in {settings.path}")
    try:
        sink = open_sink(settings, settings.reminders)
        try:
            _describe(sink)
            count = sum(1 for _ in sink.managed())
            kinds = sorted(sink.kinds())
            report(
                bool(kinds),
                f"reminders {settings.reminders.kind}: holds {count} of our items",
                "set events_path/events_url/calendar_id in [reminders]",
            )
            for kind in kinds:
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
        report(
            False, f"reminders {settings.reminders.kind}: {exc}", "re-run the authorisation (see the message)"
        )
    except (ConnectorError, ConfigError) as exc:
        report(False, f"reminders {settings.reminders.kind}: {exc}", f"check [reminders] in {settings.path}")
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return EXIT_OK if not failures else EXIT_FAILED


def purge(settings: Settings, *, dry_run: bool) -> int:
    """Delete every item that carries our key; nothing else."""
    sink = open_sink(settings, settings.reminders)
    try:
        items = list(sink.managed())
        for item in items:
            if dry_run:
                print(f"would remove {item.kind} {item.key}")
            else:
                sink.delete(item)
        if dry_run:
            print(f"{len(items)} items would be removed; run with --yes to remove them.")
        else:
            print(f"removed {len(items)} items.")
    finally:
        sink.close()
    return EXIT_OK


def demo(folder: Path, now: datetime) -> int:
    """`callsheet demo`: make the sample practice (once), run one pass, print the call sheet."""
    from worker.demo import create_practice

    folder = folder.absolute()
    config = create_practice(folder, now)
    settings = load_settings(config)
    outcome = runner.run_pass(settings, now)
    runner.write_health(settings.state_dir, now=now, outcome="ok", counts=dict(outcome.counts))
    print(
        f"Sample practice in {folder} ({len(settings.clients)} made-up clients), at {now.astimezone(settings.practice.tz):%a %d %b %Y %H:%M %Z}.\n"
    )
    print(call_sheet(settings, outcome.plan))
    c = outcome.counts
    print(
        f"\nThis pass wrote {c['created']} new reminders ({c['kept']} already there, {c['updated']} updated, "
        f"{c['resolved']} withdrawn)."
    )
    print(f"Reminder events: {settings.reminders.events_path}")
    print(f"Reminder tasks:  {settings.reminders.tasks_path}")
    print(f"Try: callsheet --config {config} plan --json")
    return EXIT_OK
