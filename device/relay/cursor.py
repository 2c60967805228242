"""The relay cursor's holds: the cursor advances to the newest handled event, never past one still open.

The cursor is the ``since`` of the next subscription (minus the overlap), so moving it past an event that
was received but not yet handled would lose that event at the next restart.  :class:`CursorKeeper` keeps
*holds*: values the cursor may not pass while they are registered.  A catch-up holds the cursor at its
subscription's base until the backlog is handed over (moving the hold to each event as it goes); every
event being handled holds it at its own ``created_at``.

The cursor written is ``min(newest handled, now, every hold)``, and only ever forward.  No sockets, no
ledger: the write is an injected coroutine (``store``), the time an injected ``clock``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable

from device.errors import DeviceError

__all__ = ["CursorKeeper"]

log = logging.getLogger("device.relay")


class CursorKeeper:
    """Holds, the newest handled ``created_at``, and the value last stored.

    ``written`` is the cursor as stored now (None: none yet); ``store(value)`` stores ``value`` and returns
    what is stored after it (a :class:`~device.errors.DeviceError` is logged as ``relay_cursor_failed`` and
    retried at the next advance); ``clock()`` is the Unix time (an event dated in the future must not move
    the cursor past now).
    """

    def __init__(
        self,
        *,
        written: int | None,
        store: Callable[[int], Awaitable[int]],
        clock: Callable[[], float],
    ) -> None:
        self._written = written
        self._store = store
        self._clock = clock
        self._holds: dict[int, int] = {}
        self._tokens = itertools.count(1)
        self._max_handled: int | None = None
        self._lock = asyncio.Lock()

    @property
    def written(self) -> int | None:
        """The cursor value last stored (or found at start)."""
        return self._written

    @property
    def holds(self) -> tuple[int, ...]:
        """The values held now, in no particular order."""
        return tuple(self._holds.values())

    def hold(self, value: int) -> int:
        """Keep the cursor at or below ``value`` until the returned token is dropped or released."""
        token = next(self._tokens)
        self._holds[token] = value
        return token

    def move(self, token: int, value: int) -> None:
        """Move an existing hold to ``value`` (a catch-up handing over its backlog oldest first)."""
        if token in self._holds:
            self._holds[token] = value

    def drop(self, token: int) -> None:
        """Forget a hold without advancing now (the next advance takes it into account)."""
        self._holds.pop(token, None)

    async def release(self, token: int) -> None:
        """Forget a hold and advance the cursor as far as the remaining holds allow."""
        self._holds.pop(token, None)
        await self.advance()

    async def handled(self, token: int, created_at: int) -> None:
        """The event held by ``token`` was handled: forget its hold, count it, advance."""
        self._holds.pop(token, None)
        self._max_handled = max(self._max_handled or 0, created_at)
        await self.advance()

    def clear(self) -> None:
        """Forget every hold (the link stopped)."""
        self._holds.clear()

    async def advance(self) -> None:
        """Store the newest handled ``created_at`` not ahead of any hold, nor of now; never backwards."""
        if self._max_handled is None:
            return
        async with self._lock:
            target = min(self._max_handled, int(self._clock()), *self._holds.values())
            if self._written is not None and target <= self._written:
                return
            try:
                self._written = await self._store(target)
            except DeviceError as exc:
                log.warning(
                    "could not store the relay cursor (%s); will retry",
                    exc,
                    extra={"code": "relay_cursor_failed"},
                )
