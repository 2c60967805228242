"""Connection limits for the chat listeners, like llama-server's timeouts.

:class:`ConnectionGuard` wraps every protocol the HTTP server hands the event loop:

* at most ``chat.max_connections`` open connections (Unix socket and TCP together): one beyond it is
  closed at once (``chat_connection_limit``), so a flood of idle connections cannot exhaust the
  process's file descriptors;
* a request header must be complete within ``chat.header_timeout_seconds`` of the connection opening,
  or of the first byte of a follow-up request on a kept-alive connection (``chat_header_timeout``);
* idle keep-alive connections are closed by aiohttp after ``chat.keepalive_timeout_seconds``.

The server marks a request as started (its header was parsed) and finished with
:meth:`ConnectionGuard.request_started` / :meth:`ConnectionGuard.request_finished`, keyed by transport.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["ConnectionGuard"]

log = logging.getLogger(__name__)


class _Guarded(asyncio.Protocol):
    """Forwards every protocol call to the HTTP handler and tells the guard what the connection does."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.admitted = False
        self.in_request = False
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self._guard.admit(self):
            transport.close()
            return
        self.admitted = True
        self._inner.connection_made(transport)
        self._guard.arm(self)

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        if self.deadline is None and not self.in_request:
            self._guard.arm(self)  # the first byte of a follow-up request starts its header clock
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.forget(self)
        if self.admitted:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self._inner.resume_writing()


class ConnectionGuard:
    """Caps open connections and enforces the request-header deadline (see the module docstring)."""

    def __init__(
        self,
        *,
        max_connections: int,
        header_timeout_s: float,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._max = max_connections
        self._header_timeout_s = header_timeout_s
        self._loop = loop
        self._open: dict[asyncio.BaseTransport, _Guarded] = {}
        self.refused = 0
        self.timed_out = 0

    @property
    def open_connections(self) -> int:
        """Connections currently admitted."""
        return len(self._open)

    def factory(self, make_handler: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` wrapping ``make_handler`` (aiohttp's server)."""
        return lambda: _Guarded(self, make_handler())

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        """The header of a request on ``transport`` was parsed: its deadline no longer applies."""
        conn = self._open.get(transport) if transport is not None else None
        if conn is not None:
            conn.in_request = True
            _cancel(conn)

    def request_finished(self, transport: asyncio.BaseTransport | None) -> None:
        """The response on ``transport`` is done; the next request's first byte starts a new deadline."""
        conn = self._open.get(transport) if transport is not None else None
        if conn is not None:
            conn.in_request = False

    # ---------------------------------------------------------------------------- protocol side
    def admit(self, conn: _Guarded) -> bool:
        assert conn.transport is not None
        if len(self._open) >= self._max:
            self.refused += 1
            log.warning(
                "chat connection refused: %d connections open (chat.max_connections)",
                len(self._open),
                extra={"code": "chat_connection_limit"},
            )
            return False
        self._open[conn.transport] = conn
        return True

    def arm(self, conn: _Guarded) -> None:
        _cancel(conn)
        loop = self._loop or asyncio.get_running_loop()
        conn.deadline = loop.call_later(self._header_timeout_s, self._expire, conn)

    def forget(self, conn: _Guarded) -> None:
        _cancel(conn)
        if conn.transport is not None:
            self._open.pop(conn.transport, None)

    def _expire(self, conn: _Guarded) -> None:
        conn.deadline = None
        if conn.in_request or conn.transport is None:
            return
        self.timed_out += 1
        log.info(
            "chat connection closed: no complete request header within %g s",
            self._header_timeout_s,
            extra={"code": "chat_header_timeout"},
        )
        if isinstance(conn.transport, asyncio.WriteTransport):
            conn.transport.abort()
        else:
            conn.transport.close()


def _cancel(conn: _Guarded) -> None:
    if conn.deadline is not None:
        conn.deadline.cancel()
        conn.deadline = None
