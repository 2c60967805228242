"""The hardware button: a press publishes the device's telemetry, a hold shows its identity.

Wiring (``button.pull_up: true``, the default)::

    GPIO button.pin (BCM 17, header pin 11) ──── push button ──── GND (pin 9)

The Pi's internal pull-up holds the pin high; pressing pulls it low.  No resistor
is needed.  (With ``pull_up: false`` wire the button to 3.3 V and add a 10 kΩ
pull-down to GND.)

* **Press** (released before ``hold_seconds``): a ``Status`` event — ``Working``
  while generating or settling, else ``Available``; reason ``AdminRequest``;
  ``initial_request`` all zeros; payload the telemetry JSON of
  :mod:`device.telemetry` — is signed once, stored in the ledger outbox and
  published by the relay link.  The display flashes ``Status sent``.  At most one
  ``Status`` per ``min_interval_seconds``; presses in between are ignored.
* **Hold** (``hold_seconds``): the display shows the machine pubkey and the chat
  socket path for a while.

gpiozero calls the handlers on its own thread (lgpio's callback thread, or the
hold thread); they only hand the work to the asyncio loop with
``loop.call_soon_threadsafe``, and the ledger write runs in ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from gpiozero import Button

from device.config import ButtonConfig
from device.ledger import OutboxEvent
from device.nostr_events import EventSigner, SignedEvent
from device.protocol import ZERO_EVENT_ID, MachineStatus, Reason, Status
from device.state import Activity, DeviceState, StateHub
from device.telemetry import TelemetrySource, telemetry_payload

__all__ = ["AdminButton", "Flasher", "Outbox", "build_button", "machine_status"]

log = logging.getLogger(__name__)


class Outbox(Protocol):
    """Where signed events wait for the relay link (:class:`device.ledger.Ledger`)."""

    def enqueue(self, event: OutboxEvent) -> bool:
        """Store the event; False if it is already stored."""
        ...


class Flasher(Protocol):
    """Something that can show short notices (:class:`device.indicators.display.DisplayIndicator`)."""

    def flash(self, text: str, seconds: float = ...) -> None:
        """Show ``text`` on the notice line for a while."""

    def show(self, lines: Sequence[str], seconds: float = ...) -> None:
        """Show ``lines`` as the whole screen for a while."""


def machine_status(state: DeviceState) -> MachineStatus:
    """``Working`` while generating or settling, else ``Available``."""
    busy = state.activity in (Activity.GENERATING, Activity.SETTLING)
    return MachineStatus.Working if busy else MachineStatus.Available


class AdminButton:
    """The push button on ``button.pin``; see the module docstring for what it does."""

    def __init__(
        self,
        config: ButtonConfig,
        hub: StateHub,
        *,
        loop: asyncio.AbstractEventLoop,
        signer: EventSigner,
        outbox: Outbox,
        notify_outbox: Callable[[], None],
        telemetry: TelemetrySource,
        chat_socket: Path | str,
        display: Flasher | None = None,
        pin_factory: Any = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._hub = hub
        self._loop = loop
        self._signer = signer
        self._outbox = outbox
        self._notify_outbox = notify_outbox
        self._telemetry = telemetry
        self._chat_socket = str(chat_socket)
        self._display = display
        self._clock = clock
        self._wall = wall_clock
        self._button: Any = Button(
            config.pin,
            pull_up=config.pull_up,
            bounce_time=config.bounce_seconds or None,
            hold_time=config.hold_seconds,
            pin_factory=pin_factory,
        )
        self._held = False
        self._last_status = -float("inf")
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Attach the handlers."""
        self._button.when_pressed = self._on_pressed
        self._button.when_held = self._on_held
        self._button.when_released = self._on_released

    def stop(self) -> None:
        """Release the pin (pending publications still finish; see :meth:`drain`)."""
        self._button.close()

    async def drain(self) -> None:
        """Wait for publications in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ gpiozero thread

    def _on_pressed(self) -> None:
        self._held = False

    def _on_held(self) -> None:
        self._held = True
        self._call(self._show_identity)

    def _on_released(self) -> None:
        if not self._held:
            self._call(self.press)

    def _call(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the agent is shutting down
            self._loop.call_soon_threadsafe(callback)

    # ------------------------------------------------------------------ event loop

    def press(self) -> None:
        """A short press (on the event loop): publish a ``Status``, unless one went out recently."""
        now = self._clock()
        if now - self._last_status < self._config.min_interval_seconds:
            log.debug("button pressed again within min_interval_seconds; ignored")
            return
        self._last_status = now
        task = self._loop.create_task(self._publish(self._hub.current))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, state: DeviceState) -> None:
        try:
            signed = await asyncio.to_thread(self._sign_and_store, state)
        except Exception as exc:
            log.warning("button Status not published: %s", exc, extra={"code": "button_status_failed"})
            self._flash("Status failed")
            return
        log.info("button: Status %s queued", signed.event_id, extra={"code": "button_status"})
        self._notify_outbox()
        self._flash("Status sent")

    def _sign_and_store(self, state: DeviceState) -> SignedEvent:
        payload = telemetry_payload(state, self._telemetry(), now=self._wall())
        status = Status(
            status=machine_status(state),
            reason=Reason.AdminRequest,
            initial_request=ZERO_EVENT_ID,
            payload=payload,
        )
        signed = self._signer.sign(status)
        self._outbox.enqueue(signed.outbox())
        return signed

    def _show_identity(self) -> None:
        if self._display is not None:
            self._display.show([f"Key {self._hub.current.machine_pubkey}", f"Chat {self._chat_socket}"])

    def _flash(self, text: str) -> None:
        if self._display is not None:
            self._display.flash(text)


def build_button(config: ButtonConfig, hub: StateHub, **kwargs: Any) -> AdminButton | None:
    """An :class:`AdminButton` if ``button.enabled``; ``None`` (one log line) if the pin is unusable.

    ``kwargs`` are :class:`AdminButton`'s keyword arguments.  Never raises for GPIO problems.
    """
    if not config.enabled:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gpiozero's PinFactoryFallback; the error says it all
            return AdminButton(config, hub, **kwargs)
    except Exception as exc:  # gpiozero/lgpio raise many kinds (BadPinFactory, GPIOPinInUse, OSError…)
        log.warning(
            "button on BCM %d unavailable, running without it: %s: %s",
            config.pin,
            type(exc).__name__,
            exc,
            extra={"code": "button_unavailable"},
        )
        return None
