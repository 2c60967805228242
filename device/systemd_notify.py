"""Talking to systemd: readiness, status and the service watchdog (``sd_notify``), without a dependency.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract
socket); the agent sends newline-separated ``KEY=value`` assignments to it as one datagram.
Outside systemd the variable is unset and every call is a silent no-op, so the same code runs
in a terminal and in tests.

* :class:`Notifier` sends ``READY=1`` (only once the ledger is open, the model loaded and the
  chat socket listening), ``STATUS=…``, ``STOPPING=1``, ``EXTEND_TIMEOUT_USEC=…`` and
  ``WATCHDOG=1``.
* :class:`Watchdog` decides *whether* to send ``WATCHDOG=1``: only while every registered
  heartbeat source (the event loop, and the inference worker once it runs) beat recently.
  Network health is deliberately not a source: a dead relay must not make systemd restart a
  device that would only find the relay dead again.

Sending never raises: a notification that cannot be delivered is logged (``systemd_notify_failed``)
and reported as ``False``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

log = logging.getLogger(__name__)

#: The heartbeat sources the agent has.  ``loop``: the asyncio event loop.  ``inference``: the
#: thread that owns the ``Llama`` (it beats between tokens and while waiting for work).
SOURCES: Final = ("loop", "inference")


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """How often to send ``WATCHDOG=1``, in seconds: half of ``WATCHDOG_USEC``, as sd_watchdog_enabled.

    ``None`` when the service has no watchdog, when ``WATCHDOG_PID`` names another process, or when
    the values are malformed.
    """
    usec_text = environ.get("WATCHDOG_USEC", "")
    pid_text = environ.get("WATCHDOG_PID", "")
    try:
        usec = int(usec_text)
        if pid_text and int(pid_text) != pid:
            return None
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000


class Notifier:
    """Sends state changes to systemd's notification socket; a no-op when there is none."""

    def __init__(self, address: str | None) -> None:
        """``address`` is the value of ``NOTIFY_SOCKET`` (``/path`` or ``@abstract``), or ``None``."""
        self._address: str | None = None
        if address:
            self._address = "\0" + address[1:] if address.startswith("@") else address

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        """The notifier for this process's environment (``NOTIFY_SOCKET``)."""
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notification socket."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments as one datagram; ``True`` if systemd got it."""
        if self._address is None:
            return False
        for item in assignments:
            if "=" not in item or "\n" in item:
                raise ValueError(f"not a single KEY=value assignment: {item!r}")
        payload = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self._address)
        except OSError as exc:
            log.warning(
                "cannot notify systemd (%s): %s", " ".join(assignments), exc,
                extra={"code": "systemd_notify_failed"},
            )  # fmt: skip
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up finished (ledger open, model loaded, chat socket listening)."""
        return self.notify("READY=1", *([_status(status)] if status is not None else []))

    def status(self, text: str) -> bool:
        """``STATUS=…``: one line shown by ``systemctl status``."""
        return self.notify(_status(text))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: a clean shutdown has begun."""
        return self.notify("STOPPING=1", *([_status(status)] if status is not None else []))

    def extend_timeout(self, usec: int) -> bool:
        """``EXTEND_TIMEOUT_USEC=…``: the current start/stop step needs ``usec`` more microseconds."""
        if usec <= 0:
            raise ValueError(f"EXTEND_TIMEOUT_USEC must be positive, got {usec}")
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(usec)}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the service is alive.  Use :class:`Watchdog` to decide when."""
        return self.notify("WATCHDOG=1")


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())


class Watchdog:
    """Pings systemd's watchdog only while every registered heartbeat source is fresh.

    ``interval`` is the ping period (:func:`watchdog_interval`, i.e. ``WatchdogSec/2``).  A source
    is fresh when it beat within ``max_age`` seconds (default: ``interval``).  Sources named in
    ``required`` (default: ``loop``) are stale until their first beat; any other source from
    :data:`SOURCES` becomes required with its first beat (the inference worker registers itself
    once the model is loaded) until :meth:`forget` is called for it.  Thread-safe: the inference
    worker beats from its own thread.
    """

    def __init__(
        self,
        notifier: Notifier,
        interval: float,
        *,
        max_age: float | None = None,
        required: Iterable[str] = ("loop",),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"watchdog interval must be positive, got {interval}")
        self._notifier = notifier
        self.interval = interval
        self.max_age = interval if max_age is None else max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float | None] = {}
        for source in required:
            self._last[_known(source)] = None

    @property
    def beat_every(self) -> float:
        """How often a source should beat to stay fresh with margin (half of ``max_age``)."""
        return self.max_age / 2

    def heartbeat(self, source: str) -> None:
        """Record that ``source`` (``loop`` or ``inference``) is alive now."""
        now = self._clock()
        with self._lock:
            self._last[_known(source)] = now

    def forget(self, source: str) -> None:
        """Stop requiring ``source`` (e.g. the inference worker exits cleanly)."""
        with self._lock:
            self._last.pop(_known(source), None)

    def stale_sources(self) -> tuple[str, ...]:
        """The registered sources that have not beaten within ``max_age`` (never-beaten ones included)."""
        now = self._clock()
        with self._lock:
            return tuple(
                name for name, last in self._last.items() if last is None or now - last > self.max_age
            )

    def tick(self) -> bool:
        """Send ``WATCHDOG=1`` if every registered source is fresh; ``True`` if a ping was sent."""
        stale = self.stale_sources()
        if stale:
            log.warning(
                "watchdog withheld: no heartbeat from %s", ", ".join(stale),
                extra={"code": "watchdog_stale"},
            )  # fmt: skip
            return False
        return self._notifier.watchdog()

    async def run(self, stop: asyncio.Event) -> None:
        """Beat for ``loop`` and tick every ``beat_every`` seconds until ``stop`` is set.

        Runs as a task on the agent's event loop, so a blocked loop stops the pings.
        """
        while not stop.is_set():
            self.heartbeat("loop")
            self.tick()
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(self.beat_every, self.interval))
            except TimeoutError:
                continue


def _known(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"unknown heartbeat source {source!r} (expected one of {', '.join(SOURCES)})")
    return source
