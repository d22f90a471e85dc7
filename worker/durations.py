"""Parse durations such as "90s", "15m", "1h30m", "7d", "2w"."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)\s*([smhdw])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[smhdw]\s*)+$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Return the duration `text` names.

    Raises:
        ValueError: not of the form NUMBER+UNIT (s, m, h, d, w), possibly repeated.
    """
    if not _WHOLE.match(text):
        raise ValueError(f"{text!r} is not a duration such as '15m', '7d' or '1h30m'")
    return timedelta(seconds=sum(int(n) * _UNIT[u] for n, u in _PART.findall(text)))
