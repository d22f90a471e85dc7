"""callsheet: works out which clients need a phone call and writes reminders for them."""

from __future__ import annotations

__version__ = "0.1.0"
