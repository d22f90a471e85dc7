"""Google Calendar v3 + Google Tasks v1 connector, with OAuth token handling.

`GoogleSource` reads the practice calendar(s); `GoogleSink` writes reminder events into the
calls calendar and reminder tasks into a task list. The registry in connectors.base imports
this package lazily, so the Google libraries load only when a Google calendar is configured.
"""

from __future__ import annotations

from connectors.google.sink import GoogleSink
from connectors.google.source import GoogleSource

__all__ = ["GoogleSink", "GoogleSource"]
