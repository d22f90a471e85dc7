"""What each `callsheet` command does, once the arguments are parsed and the config loaded.

Human output goes to stdout as plain tables; logs go to stderr. Nothing printed here names a
client beyond the alias the therapist chose for reminder titles.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.base import open_sink, owner_of
from worker import health, planning, runner
from worker.config import Settings, load_settings
from worker.errors import ConfigError, LockedError, Problem
from worker.model import (
    Appointment,
    Attendance,
    CallNeed,
    Client,
    ClientId,
)
from worker.output import EXIT_FAILED, EXIT_OK, REASON_TEXT, need_json
from worker.roster import Roster
from worker.state import lock_for, open_state

if TYPE_CHECKING:
    from worker import accounts_db


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, rule, *body])


def call_sheet(settings: Settings, plan: runner.Plan, *, include_stale: bool = False) -> str:
    """The calls a pass acts on, as a table (who, why, when, how to reach them, what the pass
    does), then the reminders it would withdraw and the calls coming up."""
    roster = Roster.of(settings.clients)
    tz = settings.practice.tz
    rows: list[tuple[datetime, str, str, str, str, str]] = []
    acted = [*plan.open_calls()]
    if include_stale:
        acted += [n for n in plan.needs if n.state == "stale" and n.key not in plan.handled]
    for need in acted:
        client = roster.get(need.client_id)
        if client is None:
            continue
        reminder = plan.reminders.get((need.key, "event")) or plan.reminders.get((need.key, "task"))
        item = plan.held.get((need.key, "event")) or plan.held.get((need.key, "task"))
        action = plan.need_action(need)
        # the time the pass really uses: a new reminder's placed start, else the item's own
        if reminder is not None and (action == "create" or item is None or item.start is None):
            when = reminder.start
        else:
            when = item.start if item is not None and item.start else need.due
        if need.reason.value == "termination_letter":
            how = "letter"
        elif client.consent_to_call and client.phone:
            how = client.phone + ("" if client.voicemail_ok else " (no voicemail)")
        else:
            how = "no consent"
        why = REASON_TEXT[need.reason] + (" (stale)" if need.state == "stale" else "")
        rows.append((when, client.alias, why, when.astimezone(tz).strftime("%a %d %b %H:%M"), how, action))
    rows.sort(key=lambda r: r[0])
    parts = [
        _table(("Who", "Why", "When", "Number", "Reminder"), [r[1:] for r in rows])
        if rows
        else "No calls are due."
    ]
    gone = []
    for withdraw in plan.withdrawals():
        item = withdraw.item
        client = roster.get(ClientId(item.client_id)) if item is not None else None
        at = item.start.astimezone(tz).strftime("%a %d %b %H:%M") if item is not None and item.start else "-"
        gone.append(
            (client.alias if client else "-", _reason_text(item.reason if item else ""), at, withdraw.kind)
        )
    if gone:
        parts.append(
            "\nWould withdraw (the reason is gone):\n" + _table(("Who", "Why", "Was at", "Item"), gone)
        )
    coming = sorted((n for n in plan.needs if n.state == "upcoming"), key=lambda n: n.due)
    if coming:
        shown = [
            (
                (c.alias if (c := roster.get(n.client_id)) else "-"),
                REASON_TEXT[n.reason],
                n.due.astimezone(tz).strftime("%a %d %b %H:%M"),
            )
            for n in coming[:UPCOMING_SHOWN]
        ]
        more = f"\n(and {len(coming) - UPCOMING_SHOWN} more)" if len(coming) > UPCOMING_SHOWN else ""
        parts.append(
            "\nComing up (due later if nothing changes):\n" + _table(("Who", "Why", "Due"), shown) + more
        )
    return "\n".join(parts)


UPCOMING_SHOWN = 10


def run_once(
    settings: Settings,
    now: datetime,
    *,
    include_stale: bool,
    accept: runner.Accept = runner.NO_ACCEPT,
    simulated: bool = False,
) -> int:
    """One pass. A simulated `--now` is never recorded in health.json as a pass."""
    try:
        outcome = runner.run_pass(settings, now, include_stale=include_stale, accept=accept)
    except LockedError:
        print("callsheet: another pass is running; skipped.", file=sys.stderr)
        return EXIT_OK
    except Exception as exc:
        if not simulated and not isinstance(exc, ConfigError):
            runner.record_failure(settings, now, exc)
        raise
    ok = True if simulated else health.record_outcome(settings, now, dict(outcome.counts))
    c = outcome.counts
    print(
        f"{len(outcome.plan.open_calls())} calls due; "
        f"{c['created']} reminders written, {c['updated']} updated, {c['resolved']} withdrawn, "
        f"{c['tombstoned']} marked handled."
    )
    if c["failed"]:
        print(
            f"callsheet: {c['failed']} reminders could not be written ({_failure_words(c)}); "
            "the rest was written, and they are tried again next pass.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK if ok else EXIT_FAILED


def _failure_words(counts: dict[str, int]) -> str:
    words = {
        "refused": "refused by the server",
        "temporary": "server busy",
        "unreachable": "server unreachable",
        "changed": "changed meanwhile",
    }
    return ", ".join(f"{counts[f'failed_{k}']} {w}" for k, w in words.items() if counts.get(f"failed_{k}"))


def run_every(
    settings: Settings, every: timedelta, *, include_stale: bool, accept: runner.Accept = runner.NO_ACCEPT
) -> int:
    stop = runner.Stop()
    stop.install()
    return runner.loop(settings, every, stop=stop, include_stale=include_stale, accept=accept)


def plan(
    settings: Settings, now: datetime, *, as_json: bool, include_stale: bool, peers: Sequence[Settings] = ()
) -> int:
    """`peers`: every account of a group practice (the other clinicians' appointments count)."""
    outcome = runner.run_pass(
        settings, now, dry_run=True, include_stale=include_stale, peers=runner.peers_of(settings, peers)
    )
    result = outcome.plan
    tz = settings.practice.tz
    if as_json:
        for need in result.needs:
            print(need_json(need, result.need_action(need), tz, result.need_state(need)))
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
    print(call_sheet(settings, result, include_stale=include_stale))
    stale = sum(1 for n in result.needs if n.state == "stale" and n.key not in result.handled)
    handled = sum(1 for n in result.needs if n.key in result.handled)
    tail = (
        ""
        if include_stale or not stale
        else f"; {stale} stale (older than {settings.rules.max_age.days} days: --include-stale writes them)"
    )
    print(f"\n{handled} handled by you{tail}. Nothing was written.")
    return EXIT_OK


def status(settings: Settings, now: datetime, *, as_json: bool, peers: Sequence[Settings] = ()) -> int:
    """The caseload, most in need of attention first (in a group practice: this clinician's)."""
    from worker.onboarding import commands as onboarding  # only here: a pass never needs it (start-up)

    outcome = runner.run_pass(settings, now, dry_run=True, peers=runner.peers_of(settings, peers))
    appointments = outcome.plan.appointments
    open_keys = {key for (key, _kind), item in outcome.plan.held.items() if item.status == "open"}
    by_client: dict[str, list[Appointment]] = {}
    for a in appointments:
        by_client.setdefault(a.client_id, []).append(a)
    needs_by: dict[str, list[CallNeed]] = {}
    for n in outcome.plan.open_calls():
        needs_by.setdefault(n.client_id, []).append(n)
    coming_by: dict[str, list[CallNeed]] = {}
    for n in sorted(outcome.plan.needs, key=lambda n: n.due):
        if n.state == "upcoming" and n.key not in outcome.plan.handled:
            coming_by.setdefault(n.client_id, []).append(n)
    rows = []
    for client in caseload(settings, by_client, shared=bool(runner.peers_of(settings, peers))):
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
                "upcoming_calls": [
                    {"reason": n.reason.value, "due": n.due.astimezone(settings.practice.tz).isoformat()}
                    for n in coming_by.get(client.id, [])
                ],
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
            _next_call(r["upcoming_calls"], day),
            str(r["status"]),
        )
        for r in rows
    ]
    beats = {c.id: onboarding.rhythm(c, settings.rules.rebook_within.days, now) for c in settings.clients}
    # (the rhythm of every client; the table shows the caseload's)
    wide = [(*row, *beats[ClientId(str(r["client"]))]) for row, r in zip(table, rows, strict=True)]
    headers = (
        "Client",
        "Last attended",
        "Next booked",
        "Open calls",
        "Days since",
        "Next call",
        "Status",
        "Rhythm",
        "Pause",
    )
    print(_table(headers, wide))
    onboarding.status_coverage(settings, now)
    return EXIT_OK


def caseload(settings: Settings, booked: Mapping[str, object], *, shared: bool) -> list[Client]:
    """The clients `status` lists: all of them, or with a roster shared by several clinicians,
    those whose `clinician` is this account and those without one who are booked here."""
    if not shared:
        return list(settings.clients)
    return [
        c
        for c in settings.clients
        if settings.clinicians.get(c.id) == settings.account
        or (c.id not in settings.clinicians and c.id in booked)
    ]


def _next_call(upcoming: object, day: Callable[[object], str]) -> str:
    """The first upcoming call of a client, as "Thu 12 Mar (did not rebook)", or "-"."""
    if not isinstance(upcoming, list) or not upcoming:
        return "-"
    first = upcoming[0]
    return f"{day(first['due'])} ({_reason_text(first['reason'])})"


def check(settings: Settings, *, health: bool, write_probe: bool = False) -> int:
    """`callsheet check` (worker/checks.py)."""
    from worker import checks

    return checks.check(settings, health=health, write_probe=write_probe)


def list_calendars(settings: Settings) -> int:
    """`callsheet check --list` (worker/checks.py)."""
    from worker import checks

    return checks.list_calendars(settings)


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def purge(settings: Settings, *, dry_run: bool, asked_yes: bool = False) -> int:
    """Delete every item that carries our key; nothing else."""
    roster = Roster.of(settings.clients)
    tz = settings.practice.tz
    sink = open_sink(settings, settings.reminders)
    try:
        found, foreign = planning.ours(list(sink.managed()), owner_of(settings))
        items = [i for i in found if i.status != "cancelled"]  # Google lists deleted ones: gone already
        for item in items:
            if dry_run:
                client = roster.get(ClientId(item.client_id))
                who = client.alias if client else (f"client {item.client_id}" if item.client_id else "-")
                why = _reason_text(item.reason)
                at = item.start.astimezone(tz).strftime("%a %d %b %Y %H:%M") if item.start else "no date"
                print(f"would remove {item.kind:5}  {who:8}  {why:24}  {at}  ({item.status})")
            else:
                sink.delete(item)
        if not dry_run and items:
            # what purge removed was removed on purpose: forget it, so no guard mistakes it
            # for an accident and no tombstone keeps a need from being written again
            _forget(settings, [(i.key, i.kind) for i in items])
        if foreign:
            print(f"{sum(foreign.values())} items of another installation or copies were left alone.")
        if dry_run and asked_yes:
            print(f"{_items(len(items))} would be removed (--dry-run: nothing was removed).")
        elif dry_run:
            print(f"{_items(len(items))} would be removed; run with --yes to remove them.")
        else:
            print(f"removed {_items(len(items))}; state forgot them, so a pass writes what is still due.")
    finally:
        sink.close()
    return EXIT_OK


def _forget(settings: Settings, slots: list[tuple[str, str]]) -> None:
    with lock_for(settings):
        state = open_state(settings)
        try:
            state.forget_records(slots)
        finally:
            state.close()


def _reason_text(reason: str) -> str:
    """A reason code as the call sheet words it ('attention' for callsheet's own alert)."""
    for code, text in REASON_TEXT.items():
        if code.value == reason:
            return text
    return {"attention": "callsheet needs attention", "check": "write check"}.get(reason, reason or "-")


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
    calls = sum(1 for n in outcome.plan.needs if n.state == "due")
    # one call is an event and a task: count calls and calendar items apart, and say which is which
    print(
        f"\n{calls} calls due. This pass wrote {c['created']} new calendar items (events and tasks; "
        f"{c['kept']} already there, {c['updated']} updated, {c['resolved']} withdrawn)."
    )
    print(f"Reminder events: {settings.reminders.events_path}")
    print(f"Reminder tasks:  {settings.reminders.tasks_path}")
    print(f"Try: callsheet --config {config} plan --json")
    return EXIT_OK


# -- `callsheet accounts`: account configs and secrets in the state database ---------------------


def _database(config: Path) -> tuple[accounts_db.Database, str]:
    """The state database of the main config, and its accounts_from.

    Raises:
        ConfigError: the config has no PostgreSQL state_url.
    """
    from worker import accounts_db
    from worker.config import state_database

    url, password_env, origin = state_database(config)
    if not url:
        raise ConfigError(
            [
                Problem(
                    str(config),
                    "state_url: `callsheet accounts` keeps accounts and secrets in the PostgreSQL state "
                    'database (state_url = "postgresql://…"); with the SQLite state accounts are files '
                    "([[accounts]] or accounts_dir) and passwords password_file or password_env",
                )
            ]
        )
    return accounts_db.Database(url, password_env), origin


def accounts_list(config: Path) -> int:
    """Every stored account (name, version, when it changed) and its secrets' names, never values."""
    from worker import accounts_db

    db, origin = _database(config)
    _revision, rows = accounts_db.stored_accounts(db)
    secrets: dict[str, list[str]] = {}
    for secret in accounts_db.stored_secrets(db):
        secrets.setdefault(secret.account, []).append(f"{secret.name} (key {secret.key_id})")
    names = sorted({r.name for r in rows} | set(secrets))
    by_name = {r.name: r for r in rows}
    table = []
    for name in names:
        row = by_name.get(name)
        table.append(
            (
                name,
                str(row.version) if row else "-",
                row.updated_at if row else "(no stored config)",
                ", ".join(secrets.get(name, [])) or "-",
            )
        )
    if not table:
        print("No accounts or secrets in the database.")
    else:
        print(_table(("ACCOUNT", "VERSION", "UPDATED (UTC)", "SECRETS"), table))
    if origin != "database" and rows:
        print(
            '\nNote: the config reads its accounts from files; set accounts_from = "database" to use these.'
        )
    return EXIT_OK


def accounts_put(config: Path, name: str, file: Path) -> int:
    """Store one account's TOML (an accounts_dir file's text), checked with every other stored
    account exactly as a pass would load it; nothing is stored when it has a problem."""
    import re

    from worker import accounts_db
    from worker.config import load_accounts

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(
            [
                Problem(
                    name, "the account name may use only letters, digits, '_', '.' and '-' (it names state)"
                )
            ]
        )
    db, origin = _database(config)
    if origin != "database":
        raise ConfigError(
            [
                Problem(
                    str(config),
                    'accounts_from: the config reads its accounts from files; set accounts_from = "database" '
                    "(and remove [[accounts]] / accounts_dir) to keep them in the database",
                )
            ]
        )
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [Problem(str(file), f"cannot read the account file ({type(exc).__name__})")]
        ) from None
    _revision, rows = accounts_db.stored_accounts(db)
    pairs = [(r.name, r.text) for r in rows if r.name != name] + [(name, text)]
    try:
        accounts = load_accounts(config, roster_optional=True, stored=sorted(pairs))
    except ConfigError as err:
        mine = [p for p in err.problems if _about(p, name)]
        if mine or not any(_about(p, r.name) for p in err.problems for r in rows):
            raise ConfigError(mine or err.problems) from None
        # only accounts stored earlier are broken: this one may still go in (it may be their fix)
        print(
            f"callsheet: note: other stored accounts have {len(err.problems)} problem(s); "
            "`callsheet check` lists them",
            file=sys.stderr,
        )
        accounts = ()
    version = accounts_db.put_account(db, name, text)
    print(f"Account {name} stored (version {version}); running workers pick it up at their next tick.")
    stored = {(s.account, s.name) for s in accounts_db.stored_secrets(db)}
    for settings in accounts:
        for section in (settings.source, settings.reminders) if settings.account == name else ():
            for key in ("password_secret", "token_secret"):
                wanted = getattr(section, key)
                if wanted and (name, wanted) not in stored:
                    print(
                        f"callsheet: note: its {key} {wanted!r} is not stored yet: "
                        f"callsheet accounts secret {name} {wanted} < FILE",
                        file=sys.stderr,
                    )
                    stored.add((name, wanted))
    return EXIT_OK


def _about(problem: Problem, name: str) -> bool:
    return (
        problem.where.startswith(f"database:{name}:")
        or problem.where == f"database:{name}"
        or (f"account {name!r}" in problem.message)
    )


def accounts_remove(config: Path, name: str) -> int:
    """Remove a stored account and its secrets (its state stays, as when a file is removed)."""
    from worker import accounts_db

    db, _origin = _database(config)
    found, secrets = accounts_db.remove_account(db, name)
    if not found and not secrets:
        raise ConfigError([Problem(str(config), f"no account named {name!r} in the database")])
    print(
        f"Account {name} removed ({secrets} secret(s) with it); running workers drop it at their next "
        "tick. Its state rows stay (a later account of this name adopts them)."
    )
    return EXIT_OK


def accounts_secret(config: Path, name: str, key: str, *, file: Path | None, delete: bool) -> int:
    """Store (or `delete`) one secret of an account, encrypted with CALLSHEET_SECRET_KEY's first
    key. The value comes from `file` or stdin (a prompt at a terminal), never the command line."""
    import getpass
    import re

    from worker import accounts_db

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
        raise ConfigError([Problem(key, "a secret's name may use only letters, digits, '_', '.' and '-'")])
    db, _origin = _database(config)
    if delete:
        if not accounts_db.delete_secret(db, name, key):
            raise ConfigError([Problem(str(config), f"account {name!r} has no secret {key!r}")])
        print(f"Secret {key} of account {name} deleted.")
        return EXIT_OK
    keys = accounts_db.Keys.from_env()
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                [Problem(str(file), f"cannot read the secret file ({type(exc).__name__})")]
            ) from None
    elif sys.stdin.isatty():
        value = getpass.getpass(f"{key} for account {name} (not shown): ")
    else:
        value = sys.stdin.read()
    value = value.rstrip("\r\n")
    if not value:
        raise ConfigError([Problem(str(file or "stdin"), "the secret is empty")])
    accounts_db.put_secret(db, keys, name, key, value)
    print(f"Secret {key} of account {name} stored (key {keys.primary}).")
    return EXIT_OK


def accounts_rotate(config: Path) -> int:
    """Encrypt every stored secret again under the first key of CALLSHEET_SECRET_KEY."""
    from worker import accounts_db

    db, _origin = _database(config)
    keys = accounts_db.Keys.from_env()
    done, total = accounts_db.rotate_secrets(db, keys)
    print(
        f"{done} of {total} secret(s) encrypted again under key {keys.primary}; the older keys may now "
        "be dropped from CALLSHEET_SECRET_KEY."
    )
    return EXIT_OK


def accounts_new_key() -> int:
    """Print a new key for CALLSHEET_SECRET_KEY (to stdout only; nothing is stored)."""
    from worker import accounts_db

    print(accounts_db.new_key())
    return EXIT_OK
