"""Log line format: every line carries a stable ``code`` operators can grep for.

Use ``log.warning("relay dropped", extra={"code": "relay_unreachable"})``; lines
without a code show ``-``.  Output goes to stderr (journald captures it under
systemd), one line per record::

    2026-11-27T21:00:00Z WARNING device.relay [relay_unreachable] relay dropped
"""

from __future__ import annotations

import logging
import sys
import time

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(code)s] %(message)s"


class CodeFormatter(logging.Formatter):
    """A formatter that fills in ``code`` and prints UTC timestamps."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        """Format one record, defaulting a missing ``code`` to ``-``."""
        if not hasattr(record, "code"):
            record.code = "-"
        return super().format(record)


def configure_logging(level: str) -> None:
    """Send the ``device`` loggers to stderr at ``level`` (debug|info|warning|error)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CodeFormatter())
    root = logging.getLogger("device")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
