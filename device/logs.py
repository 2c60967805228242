"""Log line format: every line carries a stable ``code`` operators can grep for.

Use ``log.warning("relay dropped", extra={"code": "relay_unreachable"})``; lines
without a code show ``-``.  Output goes to stderr (journald captures it under
systemd), one line per record::

    2026-11-27T21:00:00Z WARNING device.relay [relay_unreachable] relay dropped

Identical lines (same logger, level, code and text) are rate-limited by :class:`RepeatLimiter`: the
first one is written, repeats within the next ``window`` seconds are counted, and the next line written
for it says how many were left out (``… [repeated 86686 times in 15 s]``).  This covers asyncio's and
aiohttp's own loggers too (e.g. ``socket.accept() out of system resource … Too many open files``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(code)s] %(message)s"
#: Loggers besides ``device`` whose lines go to the same handler (and are rate-limited the same way).
_LIBRARY_LOGGERS = ("asyncio", "aiohttp")


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


class RepeatLimiter(logging.Filter):
    """Writes an identical line at most once per ``window`` seconds and counts the ones left out."""

    def __init__(
        self, window: float = 10.0, *, max_keys: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._window = window
        self._max_keys = max_keys
        self._clock = clock
        self._seen: OrderedDict[tuple[str, int, str, str], list[float]] = OrderedDict()  # [since, left out]

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat inside the window; otherwise True, noting how many repeats were left out."""
        key = (record.name, record.levelno, str(getattr(record, "code", "-")), record.getMessage())
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self._window:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.getMessage()} [repeated {int(seen[1])} times in {now - seen[0]:.0f} s]"
            record.args = None
        self._seen[key] = [now, 0]
        self._seen.move_to_end(key)
        while len(self._seen) > self._max_keys:
            self._seen.popitem(last=False)
        return True


def configure_logging(level: str) -> None:
    """Send the ``device``, asyncio and aiohttp loggers to stderr at ``level`` (debug|info|warning|error)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CodeFormatter())
    handler.addFilter(RepeatLimiter())
    root = logging.getLogger("device")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in _LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers[:] = [handler]
        library.setLevel(max(logging.WARNING, root.level))
        library.propagate = False
