"""One-time Google authorisation: the same as `callsheet authorize-google` (worker/google_setup.py).

Kept so that `.venv/bin/python scripts/authorize_google.py --config PATH` keeps working. Run
with a Python that lacks callsheet's packages, it says which command works instead of a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))


def main() -> int:
    try:
        from worker import google_setup
    except ModuleNotFoundError as exc:
        print(
            f"authorize_google.py: this Python lacks callsheet's packages ({exc.name}).\n"
            "Run `callsheet authorize-google --config PATH` (installed callsheet), or from a checkout\n"
            f"`{ROOT / '.venv' / 'bin' / 'python'} {Path(__file__).resolve()} --config PATH` (after `make dev`).",
            file=sys.stderr,
        )
        return 2
    return google_setup.main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
