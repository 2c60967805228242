"""One relay's catch-up, as a socket-free state machine: pager, cursor hold, delivery order.

A subscription first returns the relay's *stored* events, then EOSE, then live events.  Relays cap how
many events one REQ returns, so the stored events are paged backwards: after each page's EOSE, while the
page brought events older than any before, another REQ asks for the same filter ``until`` the oldest
one.  The pages are collected (deduplicated by id) and, after the last page, handed over oldest first;
after that, live events are handed over in arrival order.

States (:class:`CatchupState`)::

    IDLE ──subscribed()──▶ PAGING ──last page's EOSE / a page CLOSED──▶ DELIVERING ──▶ LIVE
      ▲                      │                                                          │
      └──connection_lost()───┴──────────────────────────────────────────────────────────┘
    any ──stop()──▶ STOPPED

A new :meth:`Catchup.subscribed` from any state but STOPPED starts over (the link re-subscribed).

The cursor (:class:`~device.relay.cursor.CursorKeeper`) is held at the subscription's base while
paging, moved to each backlog event as it is handed over, and released after the backlog -- so neither a
crash nor another relay's event can move it past stored events not yet handled.  A catch-up cut short by
a lost connection is dropped whole: its buffer holds the *newest* stored events, and delivering them
alone could move the cursor past older ones never received; the next subscription asks again.

No sockets, no sleeps: the relay is reached through injected coroutines (``request_page``, ``close``),
events leave through ``deliver``.  The caller drives one machine from one task, one call at a time (the
link's per-relay worker), so a relay's events are handed over one at a time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from device.relay.cursor import CursorKeeper

__all__ = ["MAX_PAGES", "Catchup", "CatchupState", "WireEvent"]

log = logging.getLogger("device.relay")

MAX_PAGES = 10_000
"""Pages one catch-up asks for at most (a relay that keeps inventing older events cannot page forever)."""


@dataclass(frozen=True, slots=True)
class WireEvent:
    """An event as a relay sent it: its id and ``created_at`` (read once), and the SDK object (``raw``)."""

    event_id: str
    created_at: int
    raw: Any = None


class CatchupState(Enum):
    """Where one relay's subscription is."""

    IDLE = "idle"
    """No subscription (not yet subscribed, or the connection was lost): events are ignored."""
    PAGING = "paging"
    """Collecting stored events, page by page, until a page brings nothing older."""
    DELIVERING = "delivering"
    """Handing the collected backlog over, oldest first."""
    LIVE = "live"
    """Backlog done: events of the subscription are handed over as they arrive."""
    STOPPED = "stopped"
    """The link is stopping: nothing more is handed over."""


class Catchup:
    """The catch-up of one relay's subscription (see the module docstring).

    Collaborators, all keyword-only: ``name`` (the relay, for log lines); ``cursor`` (holds);
    ``request_page(page_id, since, until)`` sends a REQ for one older page; ``close(sub_id)`` closes a
    finished page or a replaced subscription; ``deliver(event)`` hands one event to the consumer (it
    checks, deduplicates and advances the cursor itself); ``on_refused(why)`` is told when the relay closes
    the subscription itself (the link drops the relay); ``page_limit`` is the filter's ``limit``.
    """

    def __init__(
        self,
        *,
        name: str,
        cursor: CursorKeeper,
        request_page: Callable[[str, int, int], Awaitable[None]],
        close: Callable[[str], Awaitable[None]],
        deliver: Callable[[WireEvent], Awaitable[None]],
        on_refused: Callable[[str], None],
        page_limit: int,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self._name = name
        self._cursor = cursor
        self._request_page = request_page
        self._close = close
        self._deliver = deliver
        self._on_refused = on_refused
        self._page_limit = max(1, page_limit)
        self._max_pages = max_pages
        self._state = CatchupState.IDLE
        self._sub_id: str | None = None
        self._since = 0
        self._hold: int | None = None
        self._buffer: dict[str, WireEvent] = {}
        self._page_id: str | None = None
        self._page_count = 0
        self._page_oldest: int | None = None
        self._oldest: float = math.inf
        self._pages = 0

    @property
    def state(self) -> CatchupState:
        """The machine's state."""
        return self._state

    @property
    def pages(self) -> int:
        """Pages asked for by the current catch-up (the subscription itself is page 1)."""
        return self._pages

    # ------------------------------------------------------------------------------------ inputs
    async def subscribed(self, sub_id: str, *, since: int, hold: int) -> None:
        """The link sent subscription ``sub_id`` (``since`` as in its filter) and holds the cursor with
        token ``hold``: collect its stored events.  A previous subscription is released and closed."""
        if self._state is CatchupState.STOPPED:
            self._cursor.drop(hold)
            return
        old_sub, old_hold = self._sub_id, self._hold
        self._sub_id, self._since, self._hold = sub_id, since, hold
        self._state = CatchupState.PAGING
        self._buffer = {}
        self._page_id, self._page_count, self._page_oldest = sub_id, 0, None
        self._oldest, self._pages = math.inf, 1
        if old_hold is not None:
            await self._cursor.release(old_hold)
        if old_sub is not None:
            await self._close(old_sub)

    def connection_lost(self) -> None:
        """The connection is gone: drop an unfinished catch-up and its hold; ignore events until the next
        subscription."""
        if self._state is CatchupState.PAGING and self._buffer:
            log.info(
                "relay %s: catch-up interrupted after %d events; it restarts on reconnect",
                self._name,
                len(self._buffer),
                extra={"code": "relay_catchup_incomplete"},
            )
        self._buffer = {}
        self._sub_id = self._page_id = None
        if self._hold is not None:
            token, self._hold = self._hold, None
            self._cursor.drop(token)  # advancing now is safe, and cheap to defer to the next handled event
        if self._state is not CatchupState.STOPPED:
            self._state = CatchupState.IDLE

    async def event(self, sub_id: str, event: WireEvent) -> None:
        """An EVENT for ``sub_id``: buffered while paging, handed over when live."""
        if not self._current(sub_id):
            return
        if self._state is CatchupState.PAGING:
            self._buffer.setdefault(event.event_id, event)
            if sub_id == self._page_id:
                self._page_count += 1
                if self._page_oldest is None or event.created_at < self._page_oldest:
                    self._page_oldest = event.created_at
        else:
            await self._deliver(event)

    async def end_of_stored(self, sub_id: str) -> None:
        """EOSE for ``sub_id``: the end of a page; ask for the next older page or hand the backlog over."""
        if not self._current(sub_id) or self._state is not CatchupState.PAGING or sub_id != self._page_id:
            return
        if self._page_id != self._sub_id:
            await self._close(self._page_id)
        progressed = self._page_oldest is not None and self._page_oldest < self._oldest
        if progressed and self._page_oldest is not None:
            self._oldest = self._page_oldest
        if (
            progressed
            and self._page_count > 0
            and self._oldest > self._since
            and self._pages < self._max_pages
        ):
            self._pages += 1
            self._page_id = f"{self._sub_id}.{self._pages}"
            self._page_count, self._page_oldest = 0, None
            await self._request_page(self._page_id, self._since, int(self._oldest))
            return
        if self._page_count >= self._page_limit and not progressed:
            log.warning(
                "relay %s: more than %d events share second %s; some may be missing",
                self._name,
                self._page_limit,
                self._oldest,
                extra={"code": "relay_catchup_incomplete"},
            )
        self._page_id = None
        await self._hand_over()

    async def closed(self, sub_id: str, reason: str | None) -> None:
        """CLOSED for ``sub_id``: the subscription itself → the relay refused us (``on_refused``); a
        catch-up page → hand over what arrived."""
        if not self._current(sub_id):
            return
        if sub_id == self._sub_id:
            log.warning(
                "relay %s closed our subscription: %s",
                self._name,
                reason or "no reason",
                extra={"code": "relay_subscribe_refused"},
            )
            self._on_refused(f"subscription closed: {reason}")
        elif self._state is CatchupState.PAGING and sub_id == self._page_id:
            log.warning(
                "relay %s closed a catch-up page: %s; delivering what arrived",
                self._name,
                reason,
                extra={"code": "relay_catchup_incomplete"},
            )
            self._page_id = None
            await self._hand_over()

    def stop(self) -> None:
        """Hand nothing more over (a backlog being handed over keeps its hold: the rest was not handled)."""
        self._state = CatchupState.STOPPED

    # ------------------------------------------------------------------------------------ internals
    def _current(self, sub_id: str) -> bool:
        """Whether ``sub_id`` is ours now (not a subscription we replaced or closed, nor a stop)."""
        return self._state is not CatchupState.STOPPED and sub_id in (self._sub_id, self._page_id)

    async def _hand_over(self) -> None:
        events = sorted(self._buffer.values(), key=lambda e: (e.created_at, e.event_id))
        self._buffer = {}
        self._state = CatchupState.DELIVERING
        token = self._hold
        for event in events:
            if self._state is CatchupState.STOPPED:
                return  # keep the hold: the rest was not handed over
            if token is not None:  # everything older than this event is done: hold the cursor at it
                self._cursor.move(token, event.created_at)
            await self._deliver(event)
        if self._state is CatchupState.DELIVERING:
            self._state = CatchupState.LIVE
        if token is not None and self._hold == token:
            self._hold = None
            await self._cursor.release(token)
