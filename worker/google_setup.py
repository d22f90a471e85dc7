"""One-time Google authorisation for callsheet: consent, token file, calls calendar, task list.

`callsheet authorize-google` (and `scripts/authorize_google.py`, which serves the same code).
Run it once on the machine that runs callsheet (or on a laptop, then copy the token file).
It reads config.toml with the same loader as every other command (the roster need not exist
yet) and never edits it: it prints the ids to put there and also keeps them in a small side
file, `google-ids.json`, next to the config.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors.google import auth
from worker.config import ReminderSettings, SourceSettings, default_config_path, load_settings
from worker.errors import ConfigError, WorkerError

DEFAULT_PORT = 8765
SIDE_FILE = "google-ids.json"
CALENDAR_DESCRIPTION = (
    "Reminders to call clients, written by callsheet. Safe to hide; deleting one means 'handled'."
)

EPILOG = f"""\
Before the first run (details in docs/google.md):
  1. In Google Cloud, create a project, enable the Google Calendar API and the Google Tasks API.
  2. OAuth consent screen: user type External (or Internal in a Workspace), add yourself,
     then PUBLISH IT ("In production"). A consent screen left in "Testing" makes the token
     die after 7 days: callsheet then stops with exit code 3 every week.
  3. Create an OAuth client of type "Desktop app" and download its JSON as client_secrets_file.
  4. In config.toml set [source] kind = "google", token_file and client_secrets_file.

Headless server, recipe A (SSH tunnel; the port must match --port, default {DEFAULT_PORT}):
  on your laptop:   ssh -L {DEFAULT_PORT}:127.0.0.1:{DEFAULT_PORT} you@server
  on the server:    callsheet authorize-google --config /path/to/config.toml
  then open the printed URL in the laptop's browser; Google redirects to
  http://localhost:{DEFAULT_PORT}/, which the tunnel carries back to this script.

Headless server, recipe B (authorise on a laptop, copy the token):
  on the laptop, with a copy of config.toml and the client secrets file:
                    callsheet authorize-google --config config.toml
  then copy the token file to the server (scp token.json server:/path/from/config), keep it
  mode 0600 (chmod 600), and copy the printed calendar_id / tasklist into the server's config.

What it asks for (least privilege): read events of your calendars (calendar.events.readonly;
--read-scope calendars asks calendar.readonly instead), create and manage only the calendars
callsheet makes (calendar.app.created), and Google Tasks (tasks).
"""


DESCRIPTION = (
    "Authorise callsheet to read your practice calendar and write call reminders\n"
    "(one time). Writes the token file (0600), creates the 'Client calls' calendar and task\n"
    "list when missing, and prints the ids to put in config.toml (it never edits config.toml)."
)


def _parser(prog: str = "authorize_google.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="config file (default: $CALLSHEET_CONFIG, ./callsheet.toml)")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `callsheet authorize-google` (the script's own parser adds --config)."""
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"fixed loopback port for Google's redirect (default {DEFAULT_PORT})",
    )
    p.add_argument("--host", default="localhost", help="host name in the redirect URI (default localhost)")
    p.add_argument(
        "--bind", default="127.0.0.1", help="address the redirect listener binds (default 127.0.0.1)"
    )
    p.add_argument("--open-browser", action="store_true", help="open the URL in a browser on this machine")
    p.add_argument("--timeout", type=int, default=300, help="seconds to wait for the consent (default 300)")
    p.add_argument(
        "--read-scope",
        choices=("events", "calendars"),
        default="events",
        help="events: calendar.events.readonly (default); calendars: calendar.readonly",
    )
    p.add_argument(
        "--token-only",
        action="store_true",
        help="only write the token file; do not look for or create the calendar and task list",
    )


class SetupError(Exception):
    """Something the person running the script must fix; the message says what."""


def read_config(path: Path) -> dict[str, Any]:
    """What this command needs, from the config loader every command uses (the roster may not exist yet).

    Raises:
        ConfigError: the config has problems (each with file:line and key).
        SetupError: neither section is Google, or the token or secrets file is not set.
    """
    settings = load_settings(path, roster=False)
    source, reminders = settings.source, settings.reminders
    google: list[SourceSettings | ReminderSettings] = [s for s in (reminders, source) if s.kind == "google"]
    if not google:
        raise SetupError(f'{path}: neither [source] nor [reminders] has kind = "google"')
    token_file = next((s.token_file for s in google if s.token_file), None)
    secrets_file = next((s.client_secrets_file for s in google if s.client_secrets_file), None)
    if token_file is None:
        raise SetupError(f"{path}: set token_file (where the token is written) in [source] or [reminders]")
    if secrets_file is None:
        raise SetupError(
            f"{path}: set client_secrets_file (the Desktop client JSON) in [source] or [reminders]"
        )
    writes_google = reminders.kind == "google"
    return {
        "path": settings.path,
        "token_file": token_file,
        "client_secrets_file": secrets_file,
        "api_endpoint": next((s.api_endpoint for s in google if s.api_endpoint), None),
        "timezone": settings.practice.timezone,
        "calendar_id": reminders.calendar_id if writes_google else None,
        "calendar_name": reminders.calendar_name,
        "tasklist": reminders.tasklist,
        "write": tuple(reminders.write) if writes_google else (),
        "reads_google": source.kind == "google",
    }


def scopes_for(config: dict[str, Any], read_scope: str) -> list[str]:
    """Least privilege: read only if the source is Google, write only what is written."""
    scopes = []
    if config["reads_google"]:
        scopes.append(auth.SCOPE_READ_CALENDARS if read_scope == "calendars" else auth.SCOPE_READ_EVENTS)
    if "event" in config["write"]:
        scopes.append(auth.SCOPE_CALLS_CALENDAR)
    if "task" in config["write"]:
        scopes.append(auth.SCOPE_TASKS)
    return scopes


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def obtain_token(config: dict[str, Any], scopes: list[str], args: argparse.Namespace) -> Any:
    """Run the consent in the browser; returns the credentials (not yet saved)."""
    from google_auth_oauthlib.flow import InstalledAppFlow, WSGITimeoutError

    secrets_file: Path = config["client_secrets_file"]
    try:
        client_config = json.loads(secrets_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SetupError(
            f"client secrets file {secrets_file} not found: download the Desktop client JSON "
            "(docs/google.md step 3)"
        ) from None
    except (OSError, ValueError) as exc:
        raise SetupError(f"cannot read client secrets file {secrets_file}: {exc}") from None
    kind = "installed" if "installed" in client_config else "web" if "web" in client_config else None
    if kind is None:
        raise SetupError(f"{secrets_file} is not an OAuth client secrets file (no 'installed' section)")
    if _is_loopback(client_config[kind].get("token_uri", "")):
        # a local test double of Google's endpoints: oauthlib insists on https otherwise
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    # Google lets the user untick scopes; we check what was granted ourselves, clearly.
    os.environ["OAUTHLIB_RELAX_TOKEN_SCOPE"] = "1"
    flow = InstalledAppFlow.from_client_config(client_config, scopes=scopes)
    print(
        f"Waiting for Google's redirect on http://{args.host}:{args.port}/ for {args.timeout} s.\n"
        "On a machine without a browser, use an SSH tunnel from your laptop:\n"
        f"  ssh -L {args.port}:127.0.0.1:{args.port} you@this-server\n"
        "then open the URL below in the laptop's browser (see --help for the other recipe).",
        flush=True,
    )
    try:
        credentials = flow.run_local_server(
            host=args.host,
            bind_addr=args.bind,
            port=args.port,
            open_browser=args.open_browser,
            timeout_seconds=args.timeout,
            authorization_prompt_message="Open this URL in a browser and allow access:\n{url}\n",
            success_message="callsheet is authorised. You can close this tab and return to the terminal.",
            prompt="consent",
            access_type="offline",
        )
    except WSGITimeoutError:
        raise SetupError(
            f"no answer from the browser within {args.timeout} s; run the script again"
        ) from None
    except OSError as exc:
        raise SetupError(f"cannot listen on {args.bind}:{args.port} ({exc.strerror}); try --port") from None
    if not credentials.refresh_token:
        raise SetupError("Google returned no refresh token; run the script again (it asks for consent anew)")
    granted = set(credentials.granted_scopes or credentials.scopes or ())
    missing = [s for s in scopes if s not in granted]
    if missing:
        names = ", ".join(s.rsplit("/", 1)[-1] for s in missing)
        raise SetupError(f"Google did not grant {names}: run again and tick every box on the consent screen")
    return credentials


def _api(config: dict[str, Any], scopes: list[str]) -> Any:
    from datetime import timedelta

    from connectors.google.api import Account, GoogleApi

    account = Account(
        token_file=config["token_file"],
        api_endpoint=config["api_endpoint"],
        timeout=timedelta(seconds=30),
        verify_tls=True,
        config_path=config["path"],
        every=timedelta(minutes=5),
    )
    return GoogleApi(account, source="setup", scopes=[])


def ensure_calendar(api: Any, config: dict[str, Any], known: dict[str, Any], scopes: list[str]) -> str:
    """The calls calendar's id: the configured or remembered one if it exists, else a new one."""
    from worker.errors import NotFoundError

    calendars = api.calendar.calendars()
    for candidate in (config["calendar_id"], known.get("calendar_id")):
        if not candidate:
            continue
        try:
            found = api.call(calendars.get(calendarId=candidate), operation="calendars.get")
        except NotFoundError:
            continue
        return str(found["id"])
    if auth.SCOPE_READ_CALENDARS in scopes:
        entries = api.calendar.calendarList()
        for page in api.pages(lambda token: entries.list(pageToken=token), operation="calendarList.list"):
            for entry in page.get("items") or ():
                if entry.get("summary") == config["calendar_name"] and entry.get("accessRole") == "owner":
                    return str(entry["id"])
    made = api.call(
        calendars.insert(
            body={
                "summary": config["calendar_name"],
                "timeZone": config["timezone"],
                "description": CALENDAR_DESCRIPTION,
            }
        ),
        operation="calendars.insert",
        retry=False,
    )
    print(f"Created the calendar {config['calendar_name']!r}.")
    return str(made["id"])


def ensure_tasklist(api: Any, config: dict[str, Any]) -> str:
    """The task list's id, found by id or title, created when missing."""
    lists = api.tasks.tasklists()
    wanted = config["tasklist"]
    for page in api.pages(
        lambda token: lists.list(maxResults=1000, pageToken=token), operation="tasklists.list"
    ):
        for entry in page.get("items") or ():
            if entry.get("id") == wanted or entry.get("title") == wanted:
                return str(entry["id"])
    made = api.call(lists.insert(body={"title": wanted}), operation="tasklists.insert", retry=False)
    print(f"Created the task list {wanted!r}.")
    return str(made["id"])


def main(argv: Sequence[str] | None = None, *, prog: str = "authorize_google.py") -> int:
    """`callsheet authorize-google` and scripts/authorize_google.py."""
    return run(_parser(prog).parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Consent, token file, calendar and task list; exit 0, 1 (Google refused) or 2 (config)."""
    config_path = (args.config or default_config_path()).expanduser().absolute()
    print(
        "Reminder: the Google Cloud project's OAuth consent screen must be 'In production' (or Internal).\n"
        "In 'Testing' the token dies after 7 days and callsheet stops with exit code 3 every week.\n",
        flush=True,
    )
    try:
        config = read_config(config_path)
        scopes = scopes_for(config, args.read_scope)
        credentials = obtain_token(config, scopes, args)
        auth.save_credentials(config["token_file"], credentials)
        print(
            f"Token written to {config['token_file']} (mode 0600). Keep it private: it opens your calendar."
        )
        if args.token_only or not config["write"]:
            return 0
        side = config_path.parent / SIDE_FILE
        try:
            known = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        api = _api(config, scopes)
        ids: dict[str, str] = {}
        if "event" in config["write"]:
            ids["calendar_id"] = ensure_calendar(api, config, known, scopes)
        if "task" in config["write"]:
            ids["tasklist"] = ensure_tasklist(api, config)
        auth.write_private(side, json.dumps(ids, indent=2) + "\n")
    except ConfigError as err:
        print(f"authorize-google: the configuration has {len(err.problems)} problem(s):", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except SetupError as err:
        print(f"authorize-google: {err}", file=sys.stderr)
        return 1
    except WorkerError as err:  # Google refused or failed: one readable line, not a traceback
        print(f"authorize-google: {err}", file=sys.stderr)
        return 1
    print("\nPut these in the [reminders] section of", config_path)
    for key, value in ids.items():
        print(f'  {key} = "{value}"')
    print(f"(also kept in {side}). Then run: callsheet --config {config_path} check")
    return 0
