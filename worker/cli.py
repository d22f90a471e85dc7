"""The `callsheet` command (docs/design.md "Command line").

Exit codes: 0 ok (also: another pass was running, nothing to do); 1 a pass failed (the next
interval retries); 2 bad configuration or usage; 3 authorisation needed.
"""

from __future__ import annotations

import argparse
import errno
import sqlite3
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import structlog

from worker import __version__
from worker import log as logsetup
from worker.config import (
    Settings,
    default_config_path,
    load_accounts,
    load_settings,
    pick_account,
    state_database,
)
from worker.durations import parse_duration
from worker.errors import AuthError, ConfigError, ConnectorError, LockedError, StateError, WorkerError
from worker.output import EXIT_AUTH, EXIT_CONFIG, EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from worker.accounts_db import Reloader as AccountReloader
    from worker.runner import Accept


log = structlog.get_logger()


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"callsheet: {message}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)


def _parser() -> _Parser:
    p = _Parser(prog="callsheet", description="Reminders to call the clients who need a call.")
    p.add_argument("--config", type=Path, help="config file (default: $CALLSHEET_CONFIG, ./callsheet.toml)")
    p.add_argument("--version", action="version", version=f"callsheet {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_now(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument(
            "--now",
            help="act as if it were this time (ISO-8601; naive = practice time); for tests and audits",
        )

    def with_account(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument(
            "--account", metavar="NAME", help="only this account of a group practice (default: every account)"
        )

    run = sub.add_parser("run", help="one pass (--once) or a pass every interval (default 5m)")
    with_account(run)
    run.add_argument("--once", action="store_true", help="one pass, then exit")
    run.add_argument("--every", help="interval between passes, e.g. 90s, 5m, 1h")
    run.add_argument("--include-stale", action="store_true", help="also write needs older than rules.max_age")
    run.add_argument(
        "--accept-source-loss",
        action="store_true",
        help="go on although most appointments vanished from the source at once (when that was intended)",
    )
    run.add_argument(
        "--accept-deletions",
        action="store_true",
        help="treat every reminder missing from the reminders calendar as handled (when removed on purpose)",
    )
    run.add_argument("--now", help="act as if it were this time (ISO-8601); runs a single pass, like --once")

    plan = sub.add_parser("plan", help="dry run: what a pass would do; writes nothing")
    plan.add_argument(
        "--json", action="store_true", help="one JSON object per need and per withdrawal, with its action"
    )
    plan.add_argument(
        "--include-stale",
        action="store_true",
        help="plan as `run --include-stale` would: also write needs older than rules.max_age",
    )
    with_now(plan)
    with_account(plan)

    status = sub.add_parser("status", help="the caseload: last seen, next booked, open calls")
    status.add_argument("--json", action="store_true", help="one JSON object per client")
    with_now(status)
    with_account(status)

    check = sub.add_parser("check", help="validate config and roster, reach every calendar")
    with_account(check)
    check.add_argument("--health", action="store_true", help="exit 1 when the last good pass is too old")
    check.add_argument(
        "--write-probe",
        action="store_true",
        help="also write and remove one throw-away reminder of each kind (check writes nothing without it)",
    )
    check.add_argument(
        "--list", action="store_true", help="list every calendar the accounts can see (CalDAV)"
    )

    purge = sub.add_parser("purge", help="remove every item callsheet wrote (only ours)")
    with_account(purge)
    purge.add_argument("--dry-run", action="store_true", help="list what would be removed")
    purge.add_argument("--yes", action="store_true", help="really remove")

    roster = sub.add_parser("roster", help="onboarding: find clients in the calendar, import a client list")
    steps = roster.add_subparsers(dest="roster_command", required=True, parser_class=_Parser)
    suggest = steps.add_parser("suggest", help="list appointments no client matches; draft roster entries")
    suggest.add_argument("--write", type=Path, metavar="FILE", help="write a draft roster (a new file, 0600)")
    with_account(suggest)
    with_now(suggest)
    imp = steps.add_parser("import", help="merge a CSV or vCard client list into the roster")
    imp.add_argument("file", type=Path, help="the export (.csv or .vcf)")
    with_account(imp)
    how = imp.add_mutually_exclusive_group()
    how.add_argument("--dry-run", action="store_true", help="show the change only (the default)")
    how.add_argument("--write", action="store_true", help="apply the change to the roster file")

    demo = sub.add_parser("demo", help="a sample practice in a local folder, one pass, the call sheet")
    demo.add_argument(
        "--dir", type=Path, default=Path("demo"), help="folder for the practice (default ./demo)"
    )
    demo.add_argument("--now", help=argparse.SUPPRESS)

    state = sub.add_parser("state", help="the state database: move it into PostgreSQL")
    state_steps = state.add_subparsers(dest="state_command", required=True, parser_class=_Parser)
    move = state_steps.add_parser("migrate", help="copy a SQLite state folder into PostgreSQL (one account)")
    move.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH", help="the state folder")
    move.add_argument("--to", dest="target", required=True, metavar="postgresql://…", help="the state_url")
    move.add_argument("--account", default="default", help='the account\'s rows (default "default")')
    move.add_argument("--replace", action="store_true", help="overwrite an account that holds other state")
    move.add_argument(
        "--password-env", metavar="NAME", help="environment variable holding the database password"
    )

    state_steps.add_parser(
        "init", help="create or migrate the PostgreSQL state and the work queue (before `callsheet worker`)"
    )

    worker = sub.add_parser("worker", help="serve every account's passes from the PostgreSQL work queue")
    worker.add_argument(
        "--concurrency", type=int, default=4, metavar="N", help="passes at once in this process (default 4)"
    )
    worker.add_argument(
        "--tick", type=int, default=10, metavar="SECONDS", help="how often due passes are queued (default 10)"
    )

    accounts = sub.add_parser(
        "accounts", help="account configs and secrets kept in the PostgreSQL state database"
    )
    acc = accounts.add_subparsers(dest="accounts_command", required=True, parser_class=_Parser)
    acc.add_parser("list", help="stored accounts, their versions and the names of their secrets")
    put = acc.add_parser("put", help="store an account's TOML (as an accounts_dir file holds it)")
    put.add_argument("name", metavar="NAME")
    put.add_argument(
        "--file", type=Path, required=True, metavar="F.toml", help="the account file (- = stdin)"
    )
    remove = acc.add_parser("remove", help="remove a stored account and its secrets")
    remove.add_argument("name", metavar="NAME")
    secret = acc.add_parser(
        "secret", help="store a secret (value from stdin or --file, never the command line)"
    )
    secret.add_argument("name", metavar="NAME", help="the account")
    secret.add_argument("key", metavar="KEY", help="the secret's name, as password_secret names it")
    secret.add_argument("--file", type=Path, metavar="FILE", help="read the value from this file")
    secret.add_argument("--delete", action="store_true", help="delete the secret instead")
    acc.add_parser("rotate-secrets", help="encrypt every secret again under the first CALLSHEET_SECRET_KEY")
    acc.add_parser("new-key", help="print a new key for CALLSHEET_SECRET_KEY")

    sub.add_parser(
        "authorize-google",
        help="one-time Google consent: token file, calls calendar, task list (--help for its options)",
        add_help=False,
    )
    p.commands = dict(sub.choices)
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


def _file_problem(err: OSError) -> tuple[str, int]:
    """A file-system error in words: the path, what is wrong, the fix; and its exit code."""
    path = err.filename or "a file callsheet writes"
    match err.errno:
        case errno.EROFS:
            return (
                f"cannot write {path}: the file system is read-only; fix: put state_dir (and a Google "
                "token file) on a writable volume",
                EXIT_FAILED,
            )
        case errno.EACCES | errno.EPERM:
            return (
                f"cannot write {path}: permission denied; fix: make it writable by the user running "
                "callsheet (chown), or choose another place in the config",
                EXIT_FAILED,
            )
        case errno.EEXIST | errno.ENOTDIR:
            return (f"{path} is a file, not a folder; fix: point state_dir at a folder", EXIT_CONFIG)
        case errno.ENOSPC | errno.EDQUOT:
            return (f"cannot write {path}: the disk is full; fix: free some space", EXIT_FAILED)
    return (f"cannot use {path}: {err.strerror or type(err).__name__}", EXIT_FAILED)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "authorize-google":
        from worker import google_setup

        given = ["--config", str(args.config)] if args.config else []
        return google_setup.main([*given, *extra], prog="callsheet authorize-google")
    if extra and args.command == "accounts":
        # never echoed: a secret's value typed on the command line by mistake
        parser.commands["accounts"].error(
            f"{len(extra)} unexpected argument(s), not shown (a secret's value is read from stdin or "
            "--file, never the command line)"
        )
    if extra:
        # a mistyped flag: show the usage of the subcommand it was given to, not the top level's
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
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
    except OSError as err:
        message, code = _file_problem(err)
        print(f"callsheet: {message}", file=sys.stderr)
        return code
    except sqlite3.Error as err:
        # sqlite says "attempt to write a readonly database", "unable to open database file", …
        print(
            f"callsheet: the state database (state.db in state_dir) cannot be used: {err}; fix: make "
            "state_dir a writable folder of the user running callsheet",
            file=sys.stderr,
        )
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
        from worker.demo import anchor

        return commands.demo(args.dir, parse_now(args.now, None) if args.now else anchor(datetime.now(UTC)))
    if args.command == "roster":
        return _roster(args)
    if args.command == "accounts":
        return _accounts(args)
    if args.command == "state" and args.state_command == "init":
        from worker import fleet

        logsetup.configure("warning")
        path = args.config or default_config_path()
        url, password_env, origin = state_database(path)
        if origin == "database":  # the accounts may not be stored yet: the database alone
            return fleet.init_database(url, password_env, path)
        return fleet.init(load_accounts(path))
    if args.command == "worker":
        from worker import fleet

        if args.concurrency < 1:
            raise _usage("--concurrency must be at least 1")
        if args.tick not in fleet.TICKS:
            raise _usage(f"--tick must divide a minute: one of {', '.join(map(str, fleet.TICKS))}")
        path = args.config or default_config_path()
        reload = _reloader(path)
        everyone = reload.load() if reload is not None else load_accounts(path)
        logsetup.configure(everyone[0].run.log_level if everyone else "info")
        return fleet.serve(everyone, concurrency=args.concurrency, tick=args.tick, reload=reload)
    if args.command == "state":
        from worker.state_migrate import migrate

        return migrate(
            args.source,
            args.target,
            account=args.account,
            replace=args.replace,
            password_env=args.password_env,
        )
    everyone = load_accounts(args.config or default_config_path())
    chosen = getattr(args, "account", None)
    from_db = everyone[0].accounts_from == "database"
    if (len(everyone) > 1 or from_db) and args.command in ("run", "plan", "status", "check"):
        accounts = (pick_account(everyone, chosen),) if chosen else everyone
        return _group(args, accounts, everyone)
    settings = pick_account(everyone, chosen)
    looping = args.command == "run" and not (args.once or args.now)
    level = settings.run.log_level
    if level == "info" and not looping and sys.stderr.isatty():
        level = "warning"  # a person at a terminal reads the table, not the progress lines
    logsetup.configure(level)
    if args.command == "run":
        now_text = args.now
        if args.once or now_text:
            if args.every and now_text and not args.once:
                raise _usage("--now runs a single pass; it cannot be combined with --every")
            if args.every:
                raise _usage("use --once or --every, not both")
            return commands.run_once(
                settings,
                parse_now(now_text, settings),
                include_stale=args.include_stale,
                accept=_accept(args),
                simulated=bool(now_text),
            )
        every = settings.run.every
        if args.every:
            try:
                every = parse_duration(args.every)
            except ValueError as exc:
                raise _usage(str(exc)) from exc
            if every < timedelta(seconds=1):
                raise _usage("--every must be at least 1s")
        return commands.run_every(settings, every, include_stale=args.include_stale, accept=_accept(args))
    if args.command == "plan":
        return commands.plan(
            settings, parse_now(args.now, settings), as_json=args.json, include_stale=args.include_stale
        )
    if args.command == "status":
        return commands.status(settings, parse_now(args.now, settings), as_json=args.json)
    if args.command == "check":
        if args.list:
            return commands.list_calendars(settings)
        return commands.check(settings, health=args.health, write_probe=args.write_probe)
    if args.command == "purge":
        return commands.purge(settings, dry_run=args.dry_run or not args.yes, asked_yes=args.yes)
    raise _usage(f"unknown command {args.command!r}")


def _group(args: argparse.Namespace, accounts: tuple[Settings, ...], everyone: tuple[Settings, ...]) -> int:
    """`run`, `plan`, `status` and `check` over every account of a group practice."""
    from worker import group

    first = accounts[0]
    level = first.run.log_level
    looping = args.command == "run" and not (args.once or args.now)
    if level == "info" and not looping and sys.stderr.isatty():
        level = "warning"
    logsetup.configure(level)
    if args.command == "run":
        if args.every and (args.once or args.now):
            raise _usage("use --once or --every, not both")
        if args.once or args.now:
            return group.run_once(
                accounts,
                everyone,
                parse_now(args.now, first),
                include_stale=args.include_stale,
                accept=_accept(args),
                simulated=bool(args.now),
            )
        every = None
        if args.every:
            try:
                every = parse_duration(args.every)
            except ValueError as exc:
                raise _usage(str(exc)) from exc
            if every < timedelta(seconds=1):
                raise _usage("--every must be at least 1s")
        # accounts in the database, all of them: one that is added, changed or removed is seen
        reload = _reloader(args.config or default_config_path()) if not args.account else None
        return group.run_every(
            accounts, everyone, every, include_stale=args.include_stale, accept=_accept(args), reload=reload
        )
    if args.command == "plan":
        return group.plan(
            accounts,
            everyone,
            parse_now(args.now, first),
            as_json=args.json,
            include_stale=args.include_stale,
        )
    if args.command == "status":
        return group.status(accounts, everyone, parse_now(args.now, first), as_json=args.json)
    if args.list:
        raise _usage("check --list looks at one account's calendars: name it with --account")
    return group.check(accounts, health=args.health, write_probe=args.write_probe)


def _reloader(path: Path) -> AccountReloader | None:
    """For `accounts_from = "database"`: what loads the accounts again when they changed."""
    url, password_env, origin = state_database(path)
    if origin != "database" or not url:
        return None
    from worker.accounts_db import Database, Reloader

    return Reloader(path, Database(url, password_env), lambda: load_accounts(path, allow_empty=True))


def _accounts(args: argparse.Namespace) -> int:
    from worker import commands

    logsetup.configure("warning")
    path = args.config or default_config_path()
    match args.accounts_command:
        case "list":
            return commands.accounts_list(path)
        case "put":
            return commands.accounts_put(path, args.name, args.file)
        case "remove":
            return commands.accounts_remove(path, args.name)
        case "secret":
            return commands.accounts_secret(path, args.name, args.key, file=args.file, delete=args.delete)
        case "rotate-secrets":
            return commands.accounts_rotate(path)
        case _:
            return commands.accounts_new_key()


def _roster(args: argparse.Namespace) -> int:
    from worker.onboarding import commands as onboarding

    settings = load_settings(args.config or default_config_path(), roster_optional=True, account=args.account)
    logsetup.configure(settings.run.log_level)
    if args.roster_command == "suggest":
        return onboarding.suggest_command(settings, parse_now(args.now, settings), args.write)
    return onboarding.import_command(settings.roster_path, args.file, write=args.write)


def _accept(args: argparse.Namespace) -> Accept:
    from worker.runner import Accept

    return Accept(source_loss=args.accept_source_loss, deletions=args.accept_deletions)


if __name__ == "__main__":
    raise SystemExit(main())
