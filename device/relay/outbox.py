"""The outbox publisher: sends the ledger's pending signed events until a relay acknowledges each.

Rows are taken by priority, then in stored order (:meth:`device.ledger.Ledger.pending_outbox`: grants and
debits before refusals), and sent as the stored JSON: an event is never re-signed, so a retry can only
ever publish the same id.  ``NORMAL`` rows (a grant's ``Status{Working}``, ``Transaction``,
``Status{Available}``; debits; telemetry) go out one at a time, in order, because readers such as the
dApp take a grant's events in the order they arrive.  ``LOW`` rows (refusals, each a single event that
stands alone) go out up to ``window`` at a time, their ``OK`` answers awaited together: a flood of
refusals costs one round trip per ``window`` events, not one each, and never delays a grant stored after
it.  A relay that chains each author's events (the XePHY relay, ``prev_event_id``) and answers a race with
``OK false "error: …"`` gets that event again on the next pass.

Per row:

* a relay answers ``OK true``, or ``OK`` with a ``duplicate:`` message → ``ledger.mark_acked(id, relay)``;
* nobody answered (no relay connected, timeouts) → the attempt is counted, no further row is started and
  the queue waits, with backoff (rows already in flight finish); a row that fails like this
  ``stuck_after`` times in a row is parked;
* a relay refused it (``invalid:``, ``blocked:``, ``pow:``, ``restricted:``, ``auth-required:``,
  ``mute:``) → counted and *parked*: retried on the slower ``refused_backoff`` schedule while the
  rows behind it go out;
* the stored JSON is not a valid signed event with that id → parked for ``refused_backoff.cap`` and
  logged (``relay_outbox_invalid``); it can never succeed, but it stays visible in the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from device.ledger import Ledger, LedgerError, OutboxEvent, OutboxPriority
from device.nostr_events import parse_signed_event
from device.relay.backoff import Backoff

log = logging.getLogger("device.relay")

REFUSED_PREFIXES: Final = frozenset({"invalid", "blocked", "pow", "restricted", "auth-required", "mute"})
"""OK-message prefixes (NIP-01) after which re-sending the same event cannot succeed soon."""
KNOWN_PREFIXES: Final = REFUSED_PREFIXES | {"duplicate", "rate-limited", "error"}
"""Machine-readable OK prefixes: a failure message with one of them came from the relay itself."""
DEFAULT_WINDOW: Final = 8
"""``LOW`` (refusal) publishes in flight at once."""


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What the relays said to one publish."""

    acked_by: str | None  # the relay that accepted it (or already had it), as configured
    refusals: tuple[tuple[str, str], ...] = ()  # (relay, OK-false message) from relays that answered
    failures: tuple[tuple[str, str], ...] = ()  # (relay, error) where no answer came (timeout, socket)

    @classmethod
    def from_results(cls, accepted: list[str], failed: dict[str, str]) -> SendOutcome:
        """Classify nostr-sdk's per-relay results (``SendEventOutput.success`` / ``.failed``)."""
        if accepted:
            return cls(acked_by=accepted[0])
        refusals: list[tuple[str, str]] = []
        failures: list[tuple[str, str]] = []
        for relay, message in failed.items():
            prefix = ok_prefix(message)
            if prefix == "duplicate":  # some relays answer OK false for a duplicate: it is stored
                return cls(acked_by=relay)
            (refusals if prefix in KNOWN_PREFIXES else failures).append((relay, message))
        return cls(acked_by=None, refusals=tuple(refusals), failures=tuple(failures))

    @property
    def refused(self) -> bool:
        """True if a relay refused the event for a reason a quick retry will not fix."""
        return any(ok_prefix(m) in REFUSED_PREFIXES for _r, m in self.refusals)

    def describe(self) -> str:
        return "; ".join(f"{r}: {m}" for r, m in (*self.refusals, *self.failures)) or "no relay answered"


Sender = Callable[[Any], Awaitable[SendOutcome | None]]
"""Publishes one ``nostr_sdk.Event`` to the connected relays; None when no relay is connected."""


@dataclass(slots=True)
class _Parked:
    retry_at: float  # time.monotonic()
    times: int


class OutboxPublisher:
    """Drains ``ledger.pending_outbox()`` through ``send``; run it as a task, cancel it to stop."""

    def __init__(
        self,
        ledger: Ledger,
        send: Sender,
        *,
        backoff: Backoff,
        refused_backoff: Backoff,
        stuck_after: int = 5,
        idle_poll: float = 10.0,
        on_unanswered: Callable[[], None] = lambda: None,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self._ledger = ledger
        self._send = send
        self._backoff = backoff
        self._refused_backoff = refused_backoff
        self._stuck_after = max(1, stuck_after)
        self._idle_poll = idle_poll
        self._on_unanswered = on_unanswered
        self._window = max(1, window)
        self._wake = asyncio.Event()
        self._parked: dict[str, _Parked] = {}
        self._failures: dict[str, int] = {}  # consecutive unanswered attempts of a row

    def wake(self) -> None:
        """Run a pass now (call on the event loop's thread)."""
        self._wake.set()

    async def run(self, ready: asyncio.Event) -> None:
        """Publish forever: a pass whenever woken, when a parked row is due, or every ``idle_poll``."""
        streak = 0  # consecutive passes stopped by a failure
        while True:
            await ready.wait()
            self._wake.clear()
            try:
                blocked, next_due = await self.publish_pending()
            except LedgerError as exc:
                log.warning("outbox read/write failed: %s", exc, extra={"code": exc.code})
                blocked, next_due = True, None
            if blocked:
                delay = self._backoff.delay(streak)
                streak += 1
            else:
                streak = 0
                delay = self._idle_poll  # also picks up rows enqueued without a wake
            if next_due is not None:
                delay = min(delay, max(0.0, next_due - time.monotonic()))
            await wait_event(self._wake, delay)

    async def publish_pending(self) -> tuple[bool, float | None]:
        """One pass over the due rows, in order: ``NORMAL`` ones one at a time, ``LOW`` ones up to
        ``window`` in flight.

        Returns (whether a failure stopped the pass, ``time.monotonic()`` of the next parked retry or None).
        """
        rows = await asyncio.to_thread(self._ledger.pending_outbox, len(self._parked) + 100)
        pending = {r.event_id for r in rows}
        for gone in [k for k in self._parked if k not in pending]:
            del self._parked[gone]  # acked meanwhile
        slots = asyncio.Semaphore(self._window)
        blocked = False
        in_flight: set[asyncio.Task[None]] = set()

        async def publish(row: OutboxEvent) -> None:
            nonlocal blocked
            try:
                if await self._publish(row) == "blocked":
                    blocked = True
            finally:
                slots.release()

        try:
            for row in rows:
                parked = self._parked.get(row.event_id)
                if parked is not None and parked.retry_at > time.monotonic():
                    continue
                if row.priority is OutboxPriority.NORMAL:
                    await asyncio.gather(*in_flight)  # in practice none: NORMAL rows come first
                    if blocked or await self._publish(row) == "blocked":
                        blocked = True
                        break
                    continue
                await slots.acquire()
                if blocked:
                    slots.release()
                    break
                task = asyncio.create_task(publish(row))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            await asyncio.gather(*in_flight)
        finally:
            for task in list(in_flight):
                task.cancel()
        next_due = min((p.retry_at for k, p in self._parked.items() if k in pending), default=None)
        return blocked, next_due

    async def _publish(self, row: OutboxEvent) -> Literal["acked", "parked", "blocked"]:
        try:
            event = parse_signed_event(row.event_json)
            if str(event.id().to_hex()) != row.event_id:
                raise ValueError("the stored JSON carries another event id")
        except ValueError as exc:
            self._park(row.event_id, long=True)
            log.error(
                "outbox row %s cannot be published: %s",
                row.event_id,
                exc,
                extra={"code": "relay_outbox_invalid"},
            )
            return "parked"
        outcome = await self._send(event)
        if outcome is None:
            return "blocked"  # no relay connected: not an attempt; wait for one
        if outcome.acked_by is not None:
            await asyncio.to_thread(self._ledger.mark_acked, row.event_id, outcome.acked_by)
            self._failures.pop(row.event_id, None)
            if self._parked.pop(row.event_id, None) is not None or row.attempts:
                log.info(
                    "published %s after %d failed attempts (acked by %s)",
                    row.event_id,
                    row.attempts,
                    outcome.acked_by,
                    extra={"code": "relay_published"},
                )
            return "acked"
        await asyncio.to_thread(self._ledger.mark_sent_attempt, row.event_id)
        if outcome.refused:
            self._failures.pop(row.event_id, None)
            self._park(row.event_id)
            log.warning(
                "relay refused event %s (%s); retrying it less often, the queue goes on",
                row.event_id,
                outcome.describe(),
                extra={"code": "relay_publish_refused"},
            )
            return "parked"
        count = self._failures.get(row.event_id, 0) + 1
        if count >= self._stuck_after:
            self._failures.pop(row.event_id, None)
            self._park(row.event_id)
            log.warning(
                "event %s failed %d times in a row (%s); retrying it less often, the queue goes on",
                row.event_id,
                count,
                outcome.describe(),
                extra={"code": "relay_publish_refused"},
            )
            return "parked"
        self._failures[row.event_id] = count
        log.warning(
            "could not publish %s (%s); will retry",
            row.event_id,
            outcome.describe(),
            extra={"code": "relay_publish_failed"},
        )
        if not outcome.refusals:
            self._on_unanswered()  # nobody answered: let the link check its connections now
        return "blocked"

    def _park(self, event_id: str, *, long: bool = False) -> None:
        times = self._parked[event_id].times + 1 if event_id in self._parked else 1
        delay = self._refused_backoff.cap if long else self._refused_backoff.delay(times - 1)
        self._parked[event_id] = _Parked(retry_at=time.monotonic() + delay, times=times)


def ok_prefix(message: str) -> str:
    """The machine-readable prefix of an OK/CLOSED message (``"blocked: …"`` → ``"blocked"``), or ''."""
    head, sep, _rest = message.partition(":")
    return head.strip().lower() if sep else ""


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True if it was set."""
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
    except TimeoutError:
        return False
    return True
