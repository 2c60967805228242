"""The :class:`Indicator` interface and the render thread every indicator shares.

The :class:`~device.state.StateHub` calls subscribers synchronously on the thread that
changed the state (the event loop, the inference worker).  So an indicator's callback
only stores the snapshot and wakes its own render thread; all pin writes, serial writes
and terminal output happen there, never on the caller's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from device.state import DeviceState, StateHub

__all__ = ["Indicator", "RenderThread"]


@runtime_checkable
class Indicator(Protocol):
    """Something that shows the device's state: LEDs, a character display, the console."""

    def start(self) -> None:
        """Subscribe to the hub and start rendering (returns at once)."""

    def stop(self) -> None:
        """Unsubscribe, stop rendering and release the hardware (idempotent)."""


class RenderThread:
    """Keeps the latest snapshot and calls ``render`` on a daemon thread.

    ``render(state)`` runs after every change and again whenever the number of
    seconds it returns has passed (``None``: wait for the next change) — that is how
    blinking-out error LEDs, scrolling text and expiring notices get redrawn.
    """

    def __init__(
        self,
        hub: StateHub,
        render: Callable[[DeviceState], float | None],
        *,
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hub = hub
        self._render = render
        self._name = name
        self.clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._state: DeviceState = hub.current
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def state(self) -> DeviceState:
        """The latest snapshot seen."""
        return self._state

    def _on_state(self, state: DeviceState) -> None:
        self._state = state
        self._wake.set()

    def wake(self) -> None:
        """Render again soon (e.g. after a notice was pushed)."""
        self._wake.set()

    def start(self) -> None:
        """Subscribe and start the thread."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._unsubscribe = self._hub.subscribe(self._on_state)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Unsubscribe and join the thread."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless stopping; True if it is time to stop."""
        return self._stopping.wait(max(0.0, seconds))

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            timeout = self._render(self._state)
            if self._stopping.is_set():
                break
            self._wake.wait(timeout)
