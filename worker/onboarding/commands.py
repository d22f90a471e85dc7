"""The `roster` subcommands and the coverage lines of `check` and `status`.

Names and titles are printed to the terminal (stdout) and written to the file she named;
the log gets counts only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import structlog
from tomlkit.exceptions import TOMLKitError

from connectors.base import open_source
from worker.config import Settings, load_roster
from worker.errors import ConfigError, Problem
from worker.model import Client, Event
from worker.onboarding import coverage, files
from worker.onboarding.merge import merge
from worker.onboarding.people import PeopleError, read_people
from worker.onboarding.suggest import Group, draft, suggest
from worker.roster import Roster

log = structlog.get_logger()

NEW_ROSTER = (
    "# callsheet client roster. Client data: keep this file 0600 and out of version control.\n"
    "# The id is the only client reference that appears in logs, state and reminder keys.\n"
)


def read_window(settings: Settings, now: datetime) -> list[Event]:
    """Every event the configured source holds in the window a pass reads."""
    from worker.runner import window_for

    source = open_source(settings, settings.source)
    try:
        batch = source.read(window_for(settings, now), None)
    finally:
        source.close()
    return [e for events in batch.changed.values() for e in events]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _proposal(group: Group, roster: Roster) -> str:
    if group.why_not:
        return f"not proposed: {group.why_not}"
    if group.add_to is not None:
        client = roster.get(group.add_to)
        return f"add match phrase to {group.add_to} ({client.alias if client else ''})"
    return "new entry"


def suggest_command(settings: Settings, now: datetime, write: Path | None) -> int:
    """Print the unmatched client-like appointments; `write`: also a draft roster (0600, new file)."""
    if write is not None and (write.exists() or write.is_symlink()):
        raise ConfigError([Problem(str(write), "already exists; roster suggest never overwrites a file")])
    events = read_window(settings, now)
    groups = suggest(events, settings.clients, settings)
    roster = Roster.of(settings.clients)
    tz = settings.practice.tz
    if not groups:
        print("Every appointment-like event in the window matches a roster entry.")
    else:
        rows = [
            (
                g.label,
                str(g.count),
                g.first.astimezone(tz).strftime("%Y-%m-%d"),
                g.last.astimezone(tz).strftime("%Y-%m-%d"),
                ", ".join(g.emails) or "-",
                ", ".join(f"{i} ({c.alias})" for i in g.near if (c := roster.get(i))) or "-",
                _proposal(g, roster),
            )
            for g in groups
        ]
        headers = ("Title", "Appts", "First", "Last", "Emails", "Nearly matches", "Proposal")
        print(_table(headers, rows))
    proposed = sum(1 for g in groups if g.proposed)
    log.info("roster.suggest", count=len(groups), appointments=sum(g.count for g in groups))
    if write is None:
        if proposed:
            print(
                f"\n{proposed} proposal(s). `callsheet roster suggest --write FILE` drafts them as roster entries."
            )
        return 0
    text = draft(groups, settings.clients, roster, now.astimezone(tz).strftime("%Y-%m-%d"))
    try:
        files.write_new(write, text)
    except FileExistsError as exc:
        raise ConfigError(
            [Problem(str(write), "already exists; roster suggest never overwrites a file")]
        ) from exc
    print(f"\nDraft roster written to {write} (mode 0600): {proposed} proposal(s), no consent on file.")
    return 0


def import_command(roster_path: Path, source: Path, *, write: bool) -> int:
    """Merge a CSV or vCard export into the roster; print the change; `write`: apply it atomically."""
    try:
        reading = read_people(source)
    except PeopleError as exc:
        raise ConfigError([Problem(str(source), str(exc).removeprefix(f"{source}: "))]) from exc
    existing = roster_path.read_text(encoding="utf-8") if roster_path.exists() else NEW_ROSTER
    try:
        merged = merge(existing, reading)
    except TOMLKitError as exc:  # the message may quote the file: only the line is kept
        line = getattr(exc, "line", None)
        where = f"{roster_path}:{line}" if line else str(roster_path)
        raise ConfigError([Problem(where, "roster is not valid TOML")]) from None
    for line in merged.lines:
        print(line)
    print(
        f"{merged.added} new, {merged.updated} updated, {merged.unchanged} unchanged; "
        f"{len(reading.bad)} unreadable line(s), {reading.skipped} personal contact(s) left out."
    )
    log.info(
        "roster.import",
        created=merged.added,
        updated=merged.updated,
        kept=merged.unchanged,
        bad=len(reading.bad),
        dry_run=not write,
    )
    if merged.text == existing:
        print("The roster already holds everything in this file; nothing to change.")
        return 0
    if not write:
        print("Nothing was written; run with --write to apply.")
        return 0
    _validated_replace(roster_path, merged.text)
    print(f"Wrote {roster_path}.")
    return 0


def _validated_replace(path: Path, text: str) -> None:
    """Replace the roster only with a text that loads as a roster."""
    probe = path.with_name(f".{path.name}.check")
    probe.unlink(missing_ok=True)
    files.write_new(probe, text)
    try:
        load_roster(probe)
    finally:
        probe.unlink(missing_ok=True)
    files.replace(path, text)


def check_coverage(settings: Settings, events: Iterable[Event]) -> int:
    """Print the coverage lines of `check`; 1 when the roster matches none of the appointments."""
    ok, text = coverage.check_lines(settings, events)
    print(f"[{'ok' if ok else '!!'}] {text[0]}")
    for line in text[1:]:
        print(f"     {line}")
    return 0 if ok else 1


def status_coverage(settings: Settings, now: datetime) -> None:
    """Print the coverage lines under `status` (reads the source once more)."""
    found = coverage.measure(read_window(settings, now), settings.clients, settings)
    print()
    for line in coverage.lines(found, settings.clients):
        print(line)


def rhythm(client: Client, default_days: int, now: datetime) -> tuple[str, str]:
    """(rhythm, pause) columns of `status` for one client."""
    days = client.rebook_within.days if client.rebook_within is not None else default_days
    beat = f"{days}d" + ("" if client.rebook_within is not None else " (default)")
    if client.no_calls:
        pause = "no calls"
    elif client.pause_until is not None and now < client.pause_until:
        pause = f"paused until {client.pause_until:%Y-%m-%d}" + (
            f" ({client.pause_reason})" if client.pause_reason else ""
        )
    elif client.call_after is not None and now < client.call_after:
        pause = f"calls from {client.call_after:%Y-%m-%d}"
    else:
        pause = "-"
    return beat, pause
