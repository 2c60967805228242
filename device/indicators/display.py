"""A 16×2 or 20×4 serial character display: status, balance and transient notices.

Layout (16×2)::

    Ready                  status (cut to width)
    Bal 1,234,567          balance; for a few seconds after a grant, debit or error
                           this line shows the notice instead (+1,000 tok ab12cd34)

A 20×4 display keeps the balance on line 2, shows notices on line 3 and the model
name on line 4.  Text is transliterated to ASCII (``Zoë`` → ``Zoe``, anything else
``?``); the status and model lines are cut to the width, longer balance and notice
lines scroll.

Wiring a SparkFun SerLCD to the header UART (``port: /dev/serial0``, 9600 baud;
``enable_uart=1`` in ``config.txt``)::

    Pi pin 8  GPIO14 TXD ──── RX   SerLCD
    Pi pin 1  3.3 V      ──── RAW/VIN (3.3–9 V)
    Pi pin 6  GND        ──── GND

A USB display (Adafruit USB + Serial backpack) needs only a cable:
``port: /dev/serial/by-id/…`` or ``/dev/ttyACM0``, ``driver: matrix_orbital``.

The port is a pyserial URL (``serial.serial_for_url``): a device path, or
``loop://``, ``socket://host:port``, ``spy:///dev/…``.  Writes happen on the
display's own thread, at most once per ``min_interval_seconds``, and send only the
characters that changed (displays with cursor positioning).  A missing or
unplugged display is logged once (code ``display_unavailable``) and retried with
exponential backoff; it never stops the agent.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import serial

from device.config import DisplayConfig
from device.indicators.base import RenderThread
from device.indicators.commandsets import COMMAND_SETS, CommandSet
from device.indicators.view import (
    BalanceColour,
    Notice,
    balance_colour,
    balance_line,
    change_line,
    latest_change,
    status_line,
    to_ascii,
)
from device.state import Change, DeviceState, StateHub

__all__ = ["BACKLIGHT", "DisplayIndicator"]

log = logging.getLogger(__name__)

#: SerLCD backlight per balance colour (white while the balance is unknown).
BACKLIGHT: Mapping[BalanceColour, tuple[int, int, int]] = MappingProxyType(
    {
        BalanceColour.OFF: (255, 255, 255),
        BalanceColour.GREEN: (0, 255, 0),
        BalanceColour.AMBER: (255, 128, 0),
        BalanceColour.RED: (255, 0, 0),
    }
)

_SCROLL_GAP = "   "


class DisplayIndicator:
    """Renders the :class:`StateHub` on a serial character display.

    ``notice_seconds``: how long a grant/debit/error notice stays; ``scroll_seconds``:
    one scroll step; ``retry_seconds``/``retry_max_seconds``: reconnect backoff;
    ``green_above``/``amber_above``: balance thresholds for an RGB backlight.
    """

    def __init__(
        self,
        config: DisplayConfig,
        hub: StateHub,
        *,
        notice_seconds: float = 5.0,
        scroll_seconds: float = 0.5,
        retry_seconds: float = 1.0,
        retry_max_seconds: float = 60.0,
        green_above: float = 0.5,
        amber_above: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.commands: CommandSet = COMMAND_SETS[config.driver]()
        self._notice_seconds = notice_seconds
        self._scroll_seconds = scroll_seconds
        self._retry_initial = retry_seconds
        self._retry_max = retry_max_seconds
        self._thresholds = (green_above, amber_above)
        self._thread = RenderThread(hub, self._render, name="display", clock=clock)
        self._lock = threading.Lock()
        self._notice: Notice | None = None
        self._port: Any = None
        self._failed = False
        self._retry_delay = retry_seconds
        self._retry_at = 0.0
        self._last_write = -float("inf")
        self._shown: list[str] | None = None
        self._backlight: tuple[int, int, int] | None = None
        self._change_seen: Change | None = latest_change(hub.current)
        self._change_until = 0.0
        self._since: dict[int, tuple[str, float]] = {}

    # ------------------------------------------------------------------ public API (any thread)

    def start(self) -> None:
        """Subscribe and start drawing (connecting first if :meth:`connect` was not called)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop drawing and close the port."""
        self._thread.stop()
        self._close()

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._port is not None

    def connect(self) -> bool:
        """Try to open the port now (call before :meth:`start`); False, logged once, if it fails."""
        return self._open(self._thread.clock())

    def flash(self, text: str, seconds: float = 3.0) -> None:
        """Show ``text`` on the notice line for ``seconds``."""
        self._push(Notice((text,), self._thread.clock() + seconds))

    def show(self, lines: Sequence[str], seconds: float = 10.0) -> None:
        """Replace the whole screen with ``lines`` for ``seconds`` (long lines scroll)."""
        self._push(Notice(("\0", *lines), self._thread.clock() + seconds))

    def _push(self, notice: Notice) -> None:
        with self._lock:
            self._notice = notice
        self._thread.wake()

    # ------------------------------------------------------------------ layout (pure)

    def layout(self, state: DeviceState, now: float) -> tuple[list[str], float | None]:
        """The rows to show and when they next need redrawing (``None``: on the next change)."""
        cols, rows = self.config.columns, self.config.rows
        deadlines: list[float] = []
        change = latest_change(state)
        if change is not None and change != self._change_seen:
            self._change_until = now + self._notice_seconds
        self._change_seen = change
        transient: str | None = None
        if change is not None and now < self._change_until:
            transient = change_line(change)
            deadlines.append(self._change_until)
        with self._lock:
            notice = self._notice
        screen: list[str] | None = None
        full_screen = False
        if notice is not None and now < notice.until:
            deadlines.append(notice.until)
            if notice.lines[0] == "\0":
                screen, full_screen = list(notice.lines[1:]), True
            else:
                transient = notice.lines[0]
        if screen is None:
            screen = [status_line(state), balance_line(state)]
            if rows == 2:
                if transient is not None:
                    screen[1] = transient
            else:
                screen += [transient or "", state.model]
        screen = (screen + [""] * rows)[:rows]
        out: list[str] = []
        for index, raw in enumerate(screen):
            # Measure, cut and scroll what is sent: transliteration can grow (ß, €, ﷺ) or drop
            # (combining marks) characters, which would push text past the display's width.
            text = to_ascii(raw)
            since = self._since.get(index)
            if since is None or since[0] != text:
                since = self._since[index] = (text, now)
            if len(text) <= cols:
                out.append(text.ljust(cols))
            elif not full_screen and index in (0, 3):  # status and model lines are cut
                out.append(text[:cols])
            else:
                loop = text + _SCROLL_GAP
                steps = (now - since[1]) / self._scroll_seconds
                step = int(steps) % len(loop)
                out.append((loop[step:] + loop[:step])[:cols])
                deadlines.append(now + (int(steps) + 1 - steps) * self._scroll_seconds)
        wait = min(deadlines) - now if deadlines else None
        return out, wait

    # ------------------------------------------------------------------ render thread

    def _render(self, state: DeviceState) -> float | None:
        now = self._thread.clock()
        if self._port is None and (now < self._retry_at or not self._open(now)):
            return max(0.0, self._retry_at - now)
        pause = self._last_write + self.config.min_interval_seconds - now
        if pause > 0:
            return pause
        lines, wait = self.layout(state, now)
        colour = balance_colour(state.balance_fraction, *self._thresholds)
        data = self._diff(lines) + self._backlight_bytes(BACKLIGHT[colour])
        if data:
            try:
                self._port.write(data)
            except (serial.SerialException, OSError) as exc:
                self._lost(now, f"write failed: {exc}")
                return self._retry_at - now
            self._last_write = now
        self._shown = lines
        return wait

    def _diff(self, lines: list[str]) -> bytes:
        cmd = self.commands
        if self._shown is None:
            return cmd.screen(lines)
        if lines == self._shown:
            return b""
        if not cmd.addressable:
            return cmd.screen(lines)
        out = b""
        for row, (old, new) in enumerate(zip(self._shown, lines, strict=True)):
            changed = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
            if changed:
                first, last = changed[0], changed[-1]
                out += cmd.goto(first, row) + cmd.text(new[first : last + 1])
        return out

    def _backlight_bytes(self, rgb: tuple[int, int, int]) -> bytes:
        if rgb == self._backlight:
            return b""
        self._backlight = rgb
        return self.commands.backlight(rgb)

    def _open(self, now: float) -> bool:
        try:
            port = serial.serial_for_url(
                self.config.port, baudrate=self.config.baudrate, timeout=0, write_timeout=1.0
            )
            setup = self.commands.setup()
            if setup:
                port.write(setup)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._lost(now, f"cannot open: {exc}")
            return False
        self._port = port
        self._shown = None
        self._backlight = None
        self._retry_delay = self._retry_initial
        if self._failed:
            log.info("display on %s is back", self.config.port, extra={"code": "display_connected"})
        self._failed = False
        return True

    def _lost(self, now: float, why: str) -> None:
        self._close()
        if not self._failed:
            log.warning(
                "display on %s (%s) unavailable, retrying in the background: %s",
                self.config.port,
                self.config.driver,
                why,
                extra={"code": "display_unavailable"},
            )
        self._failed = True
        self._retry_at = now + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self._retry_max)

    def _close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()
