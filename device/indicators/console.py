"""The laptop default: the device's state on the terminal.

On a TTY, one live line redrawn in place (carriage return + erase to end of line)
every second::

    Ready | led steady | Bal 1,234 (62%, green) | +1,000 tok ab12cd34 | up 0:05:12

Otherwise (a pipe, journald), a plain line each time the picture changes, and one
line per grant, debit or error — the same words the LEDs and the display show.

The live line shares the terminal with the log (stderr): while it is drawn, the ``device``
log handler erases it before each record and redraws it after (:mod:`device.logs`), so a log
line never ends up glued onto the status line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

from device.indicators.base import RenderThread
from device.indicators.view import (
    balance_colour,
    balance_line,
    change_line,
    latest_change,
    status_line,
    status_pattern,
)
from device.logs import attach_live_line, detach_live_line
from device.state import Change, DeviceState, StateHub

__all__ = ["ConsoleIndicator", "describe"]


def describe(state: DeviceState, green_above: float = 0.5, amber_above: float = 0.2) -> str:
    """``Ready | led steady | Bal 1,234 (62%, green)``: status, status LED, balance (and its LED)."""
    balance = balance_line(state)
    fraction = state.balance_fraction
    if fraction is not None:
        colour = balance_colour(fraction, green_above, amber_above)
        balance += f" ({fraction:.0%}, {colour.value})"
    return f"{status_line(state)} | led {status_pattern(state).value} | {balance}"


def _uptime(seconds: float) -> str:
    whole = int(seconds)
    return f"up {whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class ConsoleIndicator:
    """Writes the state to ``stream`` (live line on a TTY, log lines otherwise)."""

    def __init__(
        self,
        hub: StateHub,
        stream: TextIO,
        *,
        refresh_seconds: float = 1.0,
        notice_seconds: float = 5.0,
        green_above: float = 0.5,
        amber_above: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._stream = stream
        self._tty = _isatty(stream)
        self._refresh = refresh_seconds
        self._notice_seconds = notice_seconds
        self._thresholds = (green_above, amber_above)
        self._wall = wall_clock
        self._thread = RenderThread(hub, self._render, name="console", clock=clock)
        self._last_text: str | None = None
        self._change_seen: Change | None = latest_change(hub.current)
        self._change_until = 0.0
        self._drawn = False
        self._line = ""
        self._terminal = threading.RLock()  # held from erase() to redraw() while a log line is written

    @property
    def tty(self) -> bool:
        """True when drawing a live line."""
        return self._tty

    def start(self) -> None:
        """Subscribe and start writing (on a TTY, log records are then written around the live line)."""
        if self._tty:
            attach_live_line(self)
        self._thread.start()

    def stop(self) -> None:
        """Stop; on a TTY, end the live line so the shell prompt starts on a new one."""
        self._thread.stop()
        detach_live_line(self)
        with self._terminal:
            if self._tty and self._drawn:
                self._write("\n")
                self._drawn = False

    def write_above(self, text: str) -> None:
        """Write ``text`` (whole lines) to the stream above the live line, which is redrawn below it."""
        self.erase()
        try:
            self._write(text)
        finally:
            self.redraw()

    def erase(self) -> None:
        """Clear the live line and hold the terminal until :meth:`redraw` (a log record goes between)."""
        self._terminal.acquire()
        if self._drawn:
            self._write("\r\x1b[K")

    def redraw(self) -> None:
        """Draw the live line again, below the log record, and release the terminal."""
        try:
            if self._drawn:
                self._write("\r" + self._line + "\x1b[K")
        finally:
            self._terminal.release()

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # closed or broken stream: nothing sensible to do
            pass

    def _render(self, state: DeviceState) -> float | None:
        now = self._thread.clock()
        text = describe(state, *self._thresholds)
        change = latest_change(state)
        fresh = change is not None and change != self._change_seen
        self._change_seen = change
        if self._tty:
            if fresh:
                self._change_until = now + self._notice_seconds
            parts = [text]
            if change is not None and now < self._change_until:
                parts.append(change_line(change))
            parts.append(_uptime(state.uptime(self._wall())))
            with self._terminal:
                self._line = " | ".join(parts)
                self._write("\r" + self._line + "\x1b[K")
                self._drawn = True
            return self._refresh
        if text != self._last_text:
            self._write(text + "\n")
            self._last_text = text
        if fresh and change is not None:
            self._write(change_line(change) + "\n")
        return None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
