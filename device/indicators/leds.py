"""Status, error and balance LEDs on the Pi's GPIO header, through gpiozero.

Wiring (BCM numbers; see ``docs/hardware.md`` for the full table)::

    GPIO status_pin ──[330 Ω]──▶|── GND     status LED (anode to the resistor)
    GPIO error_pin  ──[330 Ω]──▶|── GND     error LED
    GPIO bargraph_pins[i] ──[330 Ω]──▶|── GND   one per bar, empty → full
    GPIO rgb_pins = [R, G, B] ──[330 Ω each]──▶ common-cathode RGB LED ── GND

What they show:

* **status** — a short flash once a second while the model loads; steady when ready; slow blink
  (1 Hz) while the relay or the chain is unreachable; fast blink (5 Hz) while generating; on with a
  short dark gap every 2 s while a pay-as-you-go session is open; off once the agent stops.
* **error** — lit for ``error_hold_seconds`` after each new error (a refused
  Request, a failed chat).
* **balance** — on a bar graph, the fraction of the current user's last grant
  that is left (any tokens left light at least one bar); on an RGB LED, green /
  amber / red by the ``rgb_green_above`` / ``rgb_amber_above`` thresholds, off
  while the balance is unknown.

Pins come from a gpiozero pin factory: ``pin_factory`` if given (tests pass a
``MockFactory``), else gpiozero's usual choice (``$GPIOZERO_PIN_FACTORY``, then
lgpio, rpigpio, pigpio, native).  On a Pi 5 set ``GPIOZERO_PIN_FACTORY=lgpio``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from gpiozero import LED, RGBLED, LEDBarGraph

from device.config import LedsConfig
from device.indicators.base import RenderThread
from device.indicators.view import BalanceColour, LedPattern, balance_colour, status_pattern
from device.state import Change, DeviceState, StateHub

__all__ = ["BLINK_TIMES", "RGB_VALUES", "LedIndicator"]

#: (on, off) seconds of each blinking pattern.
BLINK_TIMES: Mapping[LedPattern, tuple[float, float]] = MappingProxyType(
    {
        LedPattern.SLOW_BLINK: (0.5, 0.5),
        LedPattern.FAST_BLINK: (0.1, 0.1),
        LedPattern.FLASH: (0.1, 0.9),
        LedPattern.SESSION: (1.8, 0.2),
    }
)

#: RGB LED values per balance colour (on/off channels, so any GPIO pin works).
RGB_VALUES: Mapping[BalanceColour, tuple[int, int, int]] = MappingProxyType(
    {
        BalanceColour.OFF: (0, 0, 0),
        BalanceColour.GREEN: (0, 1, 0),
        BalanceColour.AMBER: (1, 1, 0),
        BalanceColour.RED: (1, 0, 0),
    }
)


class LedIndicator:
    """Drives the LEDs configured in ``indicators.leds`` from the :class:`StateHub`.

    The gpiozero devices are created here, so a busy or missing pin raises now
    (gpiozero's ``GPIOZeroError`` or ``OSError``) — :func:`device.indicators.build_indicators`
    catches that and carries on without LEDs.
    """

    def __init__(
        self,
        config: LedsConfig,
        hub: StateHub,
        *,
        pin_factory: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._devices: list[Any] = []
        try:
            self._status = self._add(LED, config.status_pin, pin_factory=pin_factory)
            self._error = self._add(LED, config.error_pin, pin_factory=pin_factory)
            self._bar: Any = None
            self._rgb: Any = None
            if config.balance == "bargraph" and config.bargraph_pins:
                self._bar = self._add(LEDBarGraph, *config.bargraph_pins, pwm=False, pin_factory=pin_factory)
            if config.balance == "rgb" and config.rgb_pins is not None:
                self._rgb = self._add(RGBLED, *config.rgb_pins, pwm=False, pin_factory=pin_factory)
        except BaseException:
            self._close_devices()
            raise
        self._thread = RenderThread(hub, self._render, name="leds", clock=clock)
        self._pattern: LedPattern | None = None
        self._error_seen: Change | None = hub.current.last_error
        self._error_until = 0.0
        self._error_lit: bool | None = None
        self._lit_count: int | None = None
        self._colour: BalanceColour | None = None

    def _add(self, cls: Any, *pins: int | None, **kwargs: Any) -> Any:
        if not pins or pins[0] is None:
            return None
        device = cls(*pins, **kwargs)
        self._devices.append(device)
        return device

    def start(self) -> None:
        """Subscribe and start driving the LEDs."""
        self._thread.start()

    def stop(self) -> None:
        """Stop, turn every LED off and release the pins."""
        self._thread.stop()
        self._close_devices()

    def _close_devices(self) -> None:
        for device in self._devices:
            device.close()
        self._devices.clear()

    # ------------------------------------------------------------------ rendering (render thread)

    def _render(self, state: DeviceState) -> float | None:
        now = self._thread.clock()
        self._render_status(status_pattern(state))
        wait = self._render_error(state.last_error, now)
        fraction = state.balance_fraction
        if self._bar is not None:
            count = 0 if fraction is None else math.ceil(fraction * len(self._bar))
            if count != self._lit_count:
                self._bar.lit_count = count
                self._lit_count = count
        if self._rgb is not None:
            colour = balance_colour(fraction, self._config.rgb_green_above, self._config.rgb_amber_above)
            if colour != self._colour:
                self._rgb.value = RGB_VALUES[colour]
                self._colour = colour
        return wait

    def _render_status(self, pattern: LedPattern) -> None:
        if self._status is None or pattern is self._pattern:
            return
        self._pattern = pattern
        if pattern is LedPattern.OFF:
            self._status.off()
        elif pattern is LedPattern.STEADY:
            self._status.on()
        else:
            on_time, off_time = BLINK_TIMES[pattern]
            self._status.blink(on_time=on_time, off_time=off_time)

    def _render_error(self, error: Change | None, now: float) -> float | None:
        if error is not None and error != self._error_seen:
            self._error_until = now + self._config.error_hold_seconds
        self._error_seen = error
        lit = now < self._error_until
        if self._error is not None and lit != self._error_lit:
            self._error.value = lit
            self._error_lit = lit
        return self._error_until - now if lit else None
