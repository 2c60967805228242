"""Log lines for dropped Requests: one per code and minute at WARNING, the rest counted.

A Request failing the cheap checks is dropped with nothing stored, signed or published -- only this log
line -- so a flood of junk costs a log line at most.  Each code's first drop in a window is logged at
WARNING; the others at DEBUG, and the first drop of the next window reports how many were not shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DropLog"]


@dataclass(slots=True)
class _Window:
    started: float
    hidden: int = 0


class DropLog:
    """``drop(event_id, code, why)`` logs one dropped event (see the module docstring)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._window = window_seconds
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def drop(self, event_id: str, code: str, why: str) -> None:
        """Log that ``event_id`` was dropped for ``code`` (``why`` says what was wrong)."""
        now = self._clock()
        window = self._windows.get(code)
        if window is not None and now - window.started < self._window:
            window.hidden += 1
            self._log.debug("event %s dropped: %s", event_id, why, extra={"code": code})
            return
        hidden = window.hidden if window is not None else 0
        self._windows[code] = _Window(started=now)
        more = f" ({hidden} more dropped for {code} in the last minute)" if hidden else ""
        self._log.warning("event %s dropped: %s%s", event_id, why, more, extra={"code": code})
