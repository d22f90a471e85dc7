"""Run one `callsheet run --once` and SIGKILL ourselves at a chosen write.

Usage: python -m tests.integration.crash_child CONFIG NOW HOOK N
HOOK is where to count: "sink" (just before a file lands), "landed" (after a file landed, before
state records it), "state" (inside the state write). The process kills itself at the N-th hit.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def main() -> None:
    config, now, hook, target = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    hits = 0

    def hit() -> None:
        nonlocal hits
        hits += 1
        if hits >= target:
            os.kill(os.getpid(), signal.SIGKILL)

    import connectors.vdir as vdir
    import worker.state as state

    if hook == "sink":
        original_replace, original_link = os.replace, os.link

        def replace(src: str, dst: str) -> None:
            if str(dst).endswith(".ics"):
                hit()
            original_replace(src, dst)

        def link(src: str, dst: str) -> None:
            hit()
            original_link(src, dst)

        vdir.os.replace = replace  # type: ignore[attr-defined]
        vdir.os.link = link  # type: ignore[attr-defined]
    elif hook == "landed":
        original = vdir._write_atomic

        def write(path, data, *, exclusive):  # type: ignore[no-untyped-def]
            original(path, data, exclusive=exclusive)
            hit()

        vdir._write_atomic = write  # type: ignore[assignment]
    elif hook == "state":
        original_save = state.State.save_record

        def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            hit()
            return original_save(self, *args, **kwargs)

        state.State.save_record = save  # type: ignore[method-assign]
        if "state_url" in Path(config).read_text(encoding="utf-8"):  # the PostgreSQL backend
            import worker.state_pg as state_pg

            original_pg_save = state_pg.PgState.save_record

            def pg_save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                hit()
                return original_pg_save(self, *args, **kwargs)

            state_pg.PgState.save_record = pg_save  # type: ignore[method-assign]

    from worker.cli import main as cli

    raise SystemExit(cli(["--config", config, "run", "--once", "--now", now]))


if __name__ == "__main__":
    main()
