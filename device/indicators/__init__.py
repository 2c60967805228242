"""Indicators: what the device shows about itself — LEDs, a character display, the console.

Each indicator subscribes to the :class:`~device.state.StateHub` and renders on its
own thread (see :mod:`device.indicators.base`).  :func:`build_indicators` creates the
ones ``indicators`` in the config asks for; hardware that is missing or busy costs
one log line, never the agent.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any, TextIO

from device.config import Config
from device.indicators.base import Indicator
from device.indicators.console import ConsoleIndicator
from device.indicators.display import DisplayIndicator
from device.indicators.leds import LedIndicator
from device.state import StateHub

__all__ = ["ConsoleIndicator", "DisplayIndicator", "Indicator", "LedIndicator", "build_indicators"]

log = logging.getLogger(__name__)


def build_indicators(
    config: Config, hub: StateHub, *, pin_factory: Any = None, stream: TextIO = sys.stdout
) -> list[Indicator]:
    """The configured indicators, not yet started.  Never raises.

    * LEDs (``indicators.leds.enabled``): a GPIO error logs ``leds_unavailable``.
    * Display (``indicators.display.enabled``): the port is tried once now; if it
      cannot be opened, ``display_unavailable`` is logged and the indicator keeps
      retrying in the background.
    * Console: ``on`` always, ``off`` never; ``auto`` when ``stream`` is a terminal,
      or when no LED or display indicator is working (so there is always a sign of life).
    """
    cfg = config.indicators
    leds_cfg = cfg.leds
    green, amber = leds_cfg.rgb_green_above, leds_cfg.rgb_amber_above
    built: list[Indicator] = []
    working = False
    if leds_cfg.enabled:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # gpiozero's PinFactoryFallback; the error says it all
                built.append(LedIndicator(leds_cfg, hub, pin_factory=pin_factory))
            working = True
        except Exception as exc:  # gpiozero/lgpio raise many kinds (BadPinFactory, GPIOPinInUse, OSError…)
            log.warning(
                "LEDs unavailable, running without them: %s: %s",
                type(exc).__name__,
                exc,
                extra={"code": "leds_unavailable"},
            )
    if cfg.display.enabled:
        display = DisplayIndicator(cfg.display, hub, green_above=green, amber_above=amber)
        working = display.connect() or working
        built.append(display)
    console = cfg.console == "on" or (cfg.console == "auto" and (_isatty(stream) or not working))
    if console:
        built.append(ConsoleIndicator(hub, stream, green_above=green, amber_above=amber))
    return built


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
