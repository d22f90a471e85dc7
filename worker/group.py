"""The commands over every account of a group practice (docs/design.md "Map": accounts).

A config of several accounts runs `run`, `plan`, `status` and `check` once per account (or for
the one named by `--account`). Each account's output is kept apart and headed by its name; one
summary line per account comes first. One account's error is that account's line and exit code,
never the others': the exit code is the worst of them (2 config > 3 authorisation > 1 failed > 0).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from worker import commands, runner
from worker.config import Settings
from worker.errors import AuthError, ConfigError, LockedError, WorkerError
from worker.output import EXIT_AUTH, EXIT_CONFIG, EXIT_FAILED, EXIT_OK

# which exit code wins when accounts disagree
_SEVERITY = {EXIT_OK: 0, EXIT_FAILED: 1, EXIT_AUTH: 2, EXIT_CONFIG: 3}


def worst(codes: Sequence[int]) -> int:
    """The exit code of several accounts: the worst of theirs."""
    return max(codes, key=lambda c: _SEVERITY.get(c, 1), default=EXIT_OK)


def error_code(exc: BaseException) -> int:
    """The exit code an account's error would give alone (as `callsheet` maps it)."""
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    if isinstance(exc, LockedError):
        return EXIT_OK
    return EXIT_FAILED


def error_words(exc: BaseException) -> str:
    """An account's error in one line (messages of our errors never carry client data)."""
    if isinstance(exc, ConfigError):
        return "configuration problem: " + "; ".join(str(p) for p in exc.problems)
    if isinstance(exc, AuthError):
        return f"authorisation needed: {exc}"
    if isinstance(exc, LockedError):
        return "another pass is running; skipped"
    if isinstance(exc, WorkerError | OSError):
        return f"the pass failed: {exc}"
    return f"unexpected error ({type(exc).__name__})"


def run_once(
    accounts: Sequence[Settings],
    everyone: Sequence[Settings],
    now: datetime,
    *,
    include_stale: bool,
    accept: runner.Accept = runner.NO_ACCEPT,
    simulated: bool = False,
) -> int:
    """One pass of every account, `run.concurrency` at a time; one line per account."""
    results = runner.run_accounts(
        accounts, now, include_stale=include_stale, accept=accept, record=not simulated
    )
    codes = []
    for result in results:
        name = result.settings.account
        if result.error is not None:
            code = error_code(result.error)
            print(f"{name}: {error_words(result.error)}", file=sys.stderr if code else sys.stdout)
            codes.append(code)
            continue
        assert result.outcome is not None
        c = result.outcome.counts
        print(
            f"{name}: {len(result.outcome.plan.open_calls())} calls due; {c['created']} reminders written, "
            f"{c['updated']} updated, {c['resolved']} withdrawn, {c['tombstoned']} marked handled."
        )
        if c["failed"]:
            print(
                f"{name}: {c['failed']} reminders could not be written; tried again next pass.",
                file=sys.stderr,
            )
        codes.append(EXIT_FAILED if c["failed"] or not result.healthy else EXIT_OK)
    return worst(codes)


def run_every(
    accounts: Sequence[Settings],
    everyone: Sequence[Settings],
    every: timedelta | None,
    *,
    include_stale: bool,
    accept: runner.Accept = runner.NO_ACCEPT,
    reload: Callable[[], tuple[Settings, ...] | None] | None = None,
) -> int:
    """Every account on its interval until stopped; `reload` (accounts in the database) gives
    the accounts again when they changed: an added one is passed, a removed one no longer."""
    stop = runner.Stop()
    stop.install()
    return runner.loop_accounts(
        accounts,
        every,
        stop=stop,
        include_stale=include_stale,
        accept=accept,
        everyone=everyone,
        reload=reload,
    )


def _each(
    accounts: Sequence[Settings],
    command: Callable[[Settings], int],
    summary: Callable[[Settings, int, str], str],
) -> int:
    """Run `command` for each account in turn with its output held back; print the summary
    lines first, then each account's output under its name."""
    held: list[tuple[Settings, int, str, str]] = []
    for settings in accounts:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = command(settings)
            except Exception as exc:  # noqa: BLE001 - one account's error is reported, the rest go on
                code = error_code(exc)
                print(error_words(exc), file=err)
        held.append((settings, code, out.getvalue(), err.getvalue()))
    for settings, code, text, trouble in held:
        print(summary(settings, code, text if not trouble.strip() else trouble.strip().splitlines()[-1]))
    for settings, _code, text, trouble in held:
        print(f"\n== {settings.account} ==")
        if text:
            print(text.rstrip("\n"))
        if trouble:
            print(trouble.rstrip("\n"), file=sys.stderr)
    return worst([code for _s, code, _t, _e in held])


def _json_lines(accounts: Sequence[Settings], command: Callable[[Settings], int]) -> int:
    """`--json` over several accounts: each line gains an "account" key; errors go to stderr."""
    codes = []
    for settings in accounts:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                code = command(settings)
        except Exception as exc:  # noqa: BLE001 - one account's error is reported, the rest go on
            code = error_code(exc)
            print(f"{settings.account}: {error_words(exc)}", file=sys.stderr)
        for line in out.getvalue().splitlines():
            print(json.dumps({"account": settings.account, **json.loads(line)}))
        codes.append(code)
    return worst(codes)


def plan(
    accounts: Sequence[Settings],
    everyone: Sequence[Settings],
    now: datetime,
    *,
    as_json: bool,
    include_stale: bool,
) -> int:
    def one(settings: Settings) -> int:
        return commands.plan(settings, now, as_json=as_json, include_stale=include_stale, peers=everyone)

    if len(accounts) == 1:  # --account NAME: that account's output, as a single calendar prints it
        return one(accounts[0])
    if as_json:
        return _json_lines(accounts, one)

    def summary(settings: Settings, code: int, text: str) -> str:
        if code:
            return f"{settings.account}: {text}"
        return f"{settings.account}: {_rows(text)} calls due"

    return _each(accounts, one, summary)


def _rows(text: str) -> int:
    """The rows of the first table of a command's output (up to the first blank line)."""
    lines = text.splitlines()
    if not lines or lines[0].startswith("No calls"):
        return 0
    rows = 0
    for line in lines[2:]:
        if not line.strip():
            break
        rows += 1
    return rows


def status(
    accounts: Sequence[Settings], everyone: Sequence[Settings], now: datetime, *, as_json: bool
) -> int:
    def one(settings: Settings) -> int:
        return commands.status(settings, now, as_json=as_json, peers=everyone)

    if len(accounts) == 1:
        return one(accounts[0])
    if as_json:
        return _json_lines(accounts, one)

    def summary(settings: Settings, code: int, text: str) -> str:
        if code:
            return f"{settings.account}: {text}"
        return f"{settings.account}: {_rows(text)} clients in the caseload"

    return _each(accounts, one, summary)


def check(accounts: Sequence[Settings], *, health: bool, write_probe: bool = False) -> int:
    def one(settings: Settings) -> int:
        return commands.check(settings, health=health, write_probe=write_probe)

    if len(accounts) == 1:
        return one(accounts[0])

    def summary(settings: Settings, code: int, text: str) -> str:
        if health:
            last = text.strip().splitlines()[-1] if text.strip() else ""
            return f"{settings.account}: {last}"
        return f"{settings.account}: " + (
            "all checks passed" if code == EXIT_OK else "needs attention (below)"
        )

    return _each(accounts, one, summary)
