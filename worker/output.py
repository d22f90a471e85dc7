"""What the commands print that scripts depend on: exit codes, `plan --json` lines, reason words.

Shared by `worker/cli.py` (argument parsing, exit codes) and `worker/commands.py` (what each
command does), so neither imports the other (docs/commands.md has the table of both).
"""

from __future__ import annotations

import json

from worker.model import CallNeed, Reason

__all__ = ["EXIT_AUTH", "EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "REASON_TEXT", "need_json"]

# 0 ok; 1 a pass failed (retried next interval); 2 bad config or usage; 3 authorisation needed
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_AUTH = 0, 1, 2, 3


def need_json(need: CallNeed, action: str, tz: object, state: str | None = None) -> str:
    """One line of `plan --json` (`state` overrides the need's own: "handled")."""
    return json.dumps(
        {
            "client": need.client_id,
            "reason": need.reason.value,
            "state": state or need.state,
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
