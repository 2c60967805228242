"""Log line format: every line carries a stable ``code`` operators can grep for.

Use ``log.warning("relay dropped", extra={"code": "relay_unreachable"})``; lines
without a code show ``-``.  Output goes to stderr, one line per record.  In a terminal
or a file::

    2026-11-27T21:00:00Z WARNING device.relay [relay_unreachable] relay dropped

Identical lines (same logger, level, code and text) are rate-limited by :class:`RepeatLimiter`: the
first one is written, repeats within the next ``window`` seconds are counted, and the next line written
for it says how many were left out (``… [repeated 86686 times in 15 s]``).  This covers asyncio's and
aiohttp's own loggers too (e.g. ``socket.accept() out of system resource … Too many open files``).

Under systemd, when stderr is the journal (``$JOURNAL_STREAM`` names stderr's device and
inode, as ``sd_journal_stream_fd`` documents), journald adds the timestamp itself and
reads a ``<N>`` syslog priority prefix, so ``journalctl -p warning`` filters::

    <4>device.relay [relay_unreachable] relay dropped

The console indicator's live status line shares the terminal: while one is drawn
(:class:`LiveLine`), each record first erases it and then has it redrawn below, so a
log line is never glued onto the status line.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Protocol, TextIO

__all__ = [
    "JOURNAL_FORMAT",
    "LOG_FORMAT",
    "CodeFormatter",
    "JournalFormatter",
    "LiveLine",
    "LogHandler",
    "RepeatLimiter",
    "attach_live_line",
    "configure_logging",
    "detach_live_line",
    "stderr_is_journal",
]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(code)s] %(message)s"
JOURNAL_FORMAT = "<%(priority)d>%(name)s [%(code)s] %(message)s"
#: Loggers besides ``device`` whose lines go to the same handler (and are rate-limited the same way).
_LIBRARY_LOGGERS = ("asyncio", "aiohttp")

#: Python level → syslog priority (sd-daemon(3): ``<3>`` error, ``<4>`` warning, ``<6>`` info …).
_PRIORITY: Mapping[int, int] = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _priority(level: int) -> int:
    return next((p for lvl, p in sorted(_PRIORITY.items(), reverse=True) if level >= lvl), 7)


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


class JournalFormatter(logging.Formatter):
    """``<N>name [code] message``: no timestamp (journald has it), a syslog priority prefix.

    A multi-line message (a traceback) keeps the prefix on every line, so none of it is
    logged at the default priority.
    """

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """Format one record with its priority prefix on every line."""
        if not hasattr(record, "code"):
            record.code = "-"
        priority = _priority(record.levelno)
        record.priority = priority
        text = super().format(record)
        return "\n".join(line if i == 0 else f"<{priority}>{line}" for i, line in enumerate(text.split("\n")))


class LiveLine(Protocol):
    """A line redrawn in place on the terminal (the console indicator on a TTY)."""

    def erase(self) -> None:
        """Clear the line, leaving the cursor at its start; hold it until :meth:`redraw`."""

    def redraw(self) -> None:
        """Draw the line again (below whatever was written since :meth:`erase`) and release it."""


class LogHandler(logging.StreamHandler[TextIO]):
    """Writes to a stream; if a :class:`LiveLine` is attached, around it."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.live_line: LiveLine | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Erase the live line, write the record, redraw the live line."""
        live = self.live_line
        if live is None:
            super().emit(record)
            return
        live.erase()
        try:
            super().emit(record)
        finally:
            live.redraw()


def _handlers() -> list[LogHandler]:
    return [h for h in logging.getLogger("device").handlers if isinstance(h, LogHandler)]


def attach_live_line(line: LiveLine) -> None:
    """Make the ``device`` log handlers write around ``line`` (the console's live status line)."""
    for handler in _handlers():
        handler.live_line = line


def detach_live_line(line: LiveLine) -> None:
    """Undo :func:`attach_live_line`."""
    for handler in _handlers():
        if handler.live_line is line:
            handler.live_line = None


def stderr_is_journal(environ: Mapping[str, str], stream: TextIO = sys.stderr) -> bool:
    """True when ``$JOURNAL_STREAM`` (``DEVICE:INODE``) names ``stream``'s file: systemd's journal."""
    device, sep, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return False
    try:
        info = os.fstat(stream.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        return False


def configure_logging(level: str, environ: Mapping[str, str] | None = None) -> None:
    """Send the ``device`` loggers to stderr at ``level`` (debug|info|warning|error), in the journal's
    format when stderr is the journal."""
    handler = LogHandler(sys.stderr)
    journal = stderr_is_journal(os.environ if environ is None else environ, sys.stderr)
    handler.setFormatter(JournalFormatter() if journal else CodeFormatter())
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
