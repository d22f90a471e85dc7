"""The `callsheet` command (DESIGN.md "Command line").

Exit codes: 0 ok (also: another pass was running, nothing to do); 1 a pass failed (the next
interval retries); 2 bad configuration or usage; 3 authorisation needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import structlog

from worker import __version__
from worker import log as logsetup
from worker.config import Settings, default_config_path, load_settings
from worker.durations import parse_duration
from worker.errors import AuthError, ConfigError, ConnectorError, LockedError, StateError, WorkerError
from worker.model import CallNeed, Reason

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_AUTH = 0, 1, 2, 3

log = structlog.get_logger()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"callsheet: {message}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="callsheet", description="Reminders to call the clients who need a call.")
    p.add_argument("--config", type=Path, help="config file (default: $CALLSHEET_CONFIG, ./callsheet.toml)")
    p.add_argument("--version", action="version", version=f"callsheet {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_now(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--now", help="act as if it were this time (ISO-8601); for tests and audits")

    run = sub.add_parser("run", help="one pass (--once) or a pass every interval (default 5m)")
    run.add_argument("--once", action="store_true", help="one pass, then exit")
    run.add_argument("--every", help="interval between passes, e.g. 90s, 5m, 1h")
    run.add_argument("--include-stale", action="store_true", help="also write needs older than rules.max_age")
    with_now(run)

    plan = sub.add_parser("plan", help="dry run: what a pass would do; writes nothing")
    plan.add_argument("--json", action="store_true", help="one JSON object per line")
    plan.add_argument("--include-stale", action="store_true")
    with_now(plan)

    status = sub.add_parser("status", help="the caseload: last seen, next booked, open calls")
    status.add_argument("--json", action="store_true")
    with_now(status)

    check = sub.add_parser("check", help="validate config and roster, reach every calendar")
    check.add_argument("--health", action="store_true", help="exit 1 when the last good pass is too old")
    check.add_argument(
        "--list", action="store_true", help="list every calendar the accounts can see (CalDAV)"
    )

    purge = sub.add_parser("purge", help="remove every item callsheet wrote (only ours)")
    purge.add_argument("--dry-run", action="store_true", help="list what would be removed")
    purge.add_argument("--yes", action="store_true", help="really remove")

    demo = sub.add_parser("demo", help="a sample practice in a local folder, one pass, the call sheet")
    demo.add_argument(
        "--dir", type=Path, default=Path("demo"), help="folder for the practice (default ./demo)"
    )
    demo.add_argument("--now", help=argparse.SUPPRESS)
    return p


def parse_now(text: str | None, settings: Settings | None) -> datetime:
    """The pass's `now`: --now (naive times are in the practice time zone) or the clock."""
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _usage(f"--now {text!r} is not an ISO-8601 time") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=settings.practice.tz if settings else UTC)
    return value


class _UsageError(WorkerError):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def _load(args: argparse.Namespace) -> Settings:
    return load_settings(args.config or default_config_path())


def _print_config_error(err: ConfigError, out: TextIO) -> None:
    if not err.problems:
        print("callsheet: configuration problem", file=out)
        return
    print(f"callsheet: the configuration has {len(err.problems)} problem(s):", file=out)
    for problem in err.problems:
        print(f"  {problem}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as err:
        _print_config_error(err, sys.stderr)
        return EXIT_CONFIG
    except _UsageError as err:
        print(f"callsheet: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except AuthError as err:
        print(f"callsheet: authorisation needed: {err}", file=sys.stderr)
        return EXIT_AUTH
    except LockedError:
        print("callsheet: another pass is running; nothing to do.", file=sys.stderr)
        return EXIT_OK
    except (ConnectorError, StateError) as err:
        print(f"callsheet: the pass failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    except BrokenPipeError:
        # the reader went away (`callsheet plan | head`): nothing more to say
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - a bug must still end with one line, not a traceback
        # A traceback would show code, not data; one line is kinder to the person reading it.
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        log.error("command.crashed", error=type(exc).__name__, where=where)
        print(f"callsheet: unexpected error ({type(exc).__name__}); please report it", file=sys.stderr)
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    from worker import commands

    if args.command == "demo":
        logsetup.configure("warning")
        return commands.demo(args.dir, parse_now(args.now, None))
    settings = _load(args)
    logsetup.configure(settings.run.log_level)
    if args.command == "run":
        now_text = args.now
        if args.once or now_text:
            if args.every:
                raise _usage("use --once or --every, not both")
            return commands.run_once(
                settings, parse_now(now_text, settings), include_stale=args.include_stale
            )
        every = settings.run.every
        if args.every:
            try:
                every = parse_duration(args.every)
            except ValueError as exc:
                raise _usage(str(exc)) from exc
            if every < timedelta(seconds=1):
                raise _usage("--every must be at least 1s")
        return commands.run_every(settings, every, include_stale=args.include_stale)
    if args.command == "plan":
        return commands.plan(
            settings, parse_now(args.now, settings), as_json=args.json, include_stale=args.include_stale
        )
    if args.command == "status":
        return commands.status(settings, parse_now(args.now, settings), as_json=args.json)
    if args.command == "check":
        if args.list:
            return commands.list_calendars(settings)
        return commands.check(settings, health=args.health)
    if args.command == "purge":
        return commands.purge(settings, dry_run=args.dry_run or not args.yes)
    raise _usage(f"unknown command {args.command!r}")


def need_json(need: CallNeed, action: str, tz: object) -> str:
    """One line of `plan --json`."""
    return json.dumps(
        {
            "client": need.client_id,
            "reason": need.reason.value,
            "state": need.state,
            "due": need.due.astimezone(tz).isoformat(),  # type: ignore[arg-type]
            "anchor": need.anchor,
            "key": need.key,
            "action": action,
        }
    )


REASON_TEXT = {
    Reason.LATE: "late, not arrived",
    Reason.NO_SHOW: "missed appointment",
    Reason.NOT_REBOOKED: "did not rebook",
    Reason.CANCELLED_NOT_REBOOKED: "cancelled, not rebooked",
    Reason.LAPSED: "keeps cancelling",
    Reason.ACQUAINTED_CONFLICT: "meets an acquaintance",
    Reason.DOUBLE_BOOKED: "double-booked",
    Reason.TERMINATION_LETTER: "send termination letter",
}


if __name__ == "__main__":
    raise SystemExit(main())
