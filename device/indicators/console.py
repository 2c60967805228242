"""The laptop default: the device's state on the terminal.

On a TTY, one live line redrawn in place (carriage return + erase to end of line)
every second::

    Ready | led steady | Bal 1,234 (62%, green) | +1,000 tok ab12cd34 | up 0:05:12

Otherwise (a pipe, journald), a plain line each time the picture changes, and one
line per grant, debit or error — the same words the LEDs and the display show.
"""

from __future__ import annotations

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

    @property
    def tty(self) -> bool:
        """True when drawing a live line."""
        return self._tty

    def start(self) -> None:
        """Subscribe and start writing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop; on a TTY, end the live line so the shell prompt starts on a new one."""
        self._thread.stop()
        if self._tty and self._drawn:
            self._write("\n")

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
            self._write("\r" + " | ".join(parts) + "\x1b[K")
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
