"""Every key the code logs is on the allow-list (else it would be silently dropped), and every key on
the list is logged somewhere (else it is dead weight that a later log call could misuse)."""

from __future__ import annotations

import ast
from pathlib import Path

from worker.log import ALLOWED_KEYS

ROOT = Path(__file__).resolve().parents[2]


def test_logged_keys_are_allowed() -> None:
    """Each keyword of each log call in worker/ and connectors/ is an allowed key."""
    used: set[tuple[str, str]] = set()
    for path in [*ROOT.joinpath("worker").rglob("*.py"), *ROOT.joinpath("connectors").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"debug", "info", "warning", "error"}
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
            ):
                used |= {(path.name, kw.arg) for kw in node.keywords if kw.arg}
    assert len(used) > 20  # the scan found the log calls
    assert {key for _, key in used} - ALLOWED_KEYS == set()


LOG_METHODS = {"debug", "info", "warning", "error", "exception", "bind", "bind_contextvars"}
STRUCTLOG_OWN = {"event", "level", "timestamp"}


def test_every_allowed_key_is_logged_somewhere() -> None:
    """Each allow-listed key (but structlog's own) is a keyword of some log or bind call in the code."""
    used: set[str] = set()
    files = [*ROOT.joinpath("worker").rglob("*.py"), *ROOT.joinpath("connectors").rglob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
            ):
                used |= {kw.arg for kw in node.keywords if kw.arg}
                used |= (
                    {"source", "sink"} if any(kw.arg is None for kw in node.keywords) else set()
                )  # **{role: name}
    assert ALLOWED_KEYS - STRUCTLOG_OWN - used == set()


def test_file_names_and_uids_are_logged_as_a_digest() -> None:
    """A uid or file name that carries an email or a name is logged as a short hash, never as is."""
    import io
    import json

    import structlog

    from worker import log as logsetup

    out = io.StringIO()
    logsetup.configure("info", stream=out, json=True)
    structlog.get_logger().warning(
        "source.item.skipped", item="robin.example@mail.test.ics", uid="robin.example@mail.test"
    )
    line = json.loads(out.getvalue())
    assert "robin" not in out.getvalue()
    assert line["item"] == logsetup.digest("robin.example@mail.test.ics") and len(line["item"]) == 12
    assert line["uid"] == logsetup.digest("robin.example@mail.test")
