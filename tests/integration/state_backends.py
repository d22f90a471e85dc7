"""Backend-neutral looks into a practice's state, for the tests that run on SQLite and PostgreSQL."""

from __future__ import annotations

from worker.config import Settings
from worker.state import account_of, open_state


def statuses(settings: Settings) -> dict[tuple[str, str], str]:
    """(key, kind) -> status of every reminder record, from whichever backend holds the state."""
    state = open_state(settings)
    try:
        return {(str(k), str(kind)): r.status for (k, kind), r in state.records().items()}
    finally:
        state.close()


def lose_state(settings: Settings) -> None:
    """Throw the whole state away (the SQLite files, or the account's PostgreSQL rows)."""
    if not settings.state_url:
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            (settings.state_dir / name).unlink(missing_ok=True)
        return
    from worker import state_pg

    conn = state_pg.connect(settings.state_url)
    try:
        state_pg.load(conn, account_of(settings), {})
    finally:
        conn.close()
