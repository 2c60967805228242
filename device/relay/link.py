"""The relay link: receives this machine's kind-1573 events and publishes the ledger's outbox.

Receiving
---------
One raw NIP-01 subscription per relay: ``{"kinds":[1573], "#s":[session], "#p":[machine],
"since": cursor − overlap, "limit": page}`` — no ``authors`` (users publish with throw-away keys).
It is sent on start and again after every reconnect, from the ledger cursor as it is *then*, so
events published while the device was down or disconnected are still delivered.

* Catch-up: the stored events a subscription returns (paged backwards with ``until`` while a page
  brings older events, because relays cap how many a REQ returns) are collected until EOSE and
  delivered oldest first; after that, live events are delivered in arrival order.  Each relay has its
  own worker, so one relay's events are handed over one at a time; relays run side by side.
* Every event is checked — kind, ``s`` and ``p`` with :func:`device.protocol.read_routing` against our
  session and machine, then the consumer's optional ``screen`` (its cheap checks: junk is dropped
  before the costlier signature check), then id and signature (``Event.verify``) — before ``on_event``.
* Repeats (several relays, re-subscriptions) are dropped by event id with a bounded in-memory set.
  The durable dedupe is the consumer's: this link never calls ``ledger.remember_event``.
* The device's own ``Status``/``Transaction`` events carry the same ``s``/``p`` tags, so they come
  back through the subscription too; the consumer recognises them by author.
* The catch-up (pager, cursor hold, delivery order) is :class:`device.relay.catchup.Catchup`, a
  socket-free state machine per relay that this link drives from the relay's worker; the cursor holds
  are :class:`device.relay.cursor.CursorKeeper`.
* After ``on_event`` returns, the ledger cursor advances (never past ``clock()``, so an event dated in
  the future cannot make the device deaf).  While a catch-up or another relay's event is still being
  handled the cursor is held below it, so a crash never moves it past an event not yet handled.
  If ``on_event`` raises, the error is logged (``relay_handler_failed``), the event is forgotten by
  the in-memory dedupe (a later copy is handed over again) and the cursor does not move for it.

Connection state
----------------
``CONNECTING → READY`` once at least one relay is connected and subscribed; ``READY → BACKING_OFF`` when
none is left; ``BACKING_OFF → CONNECTING`` after a capped exponential delay with jitter; ``STOPPED``
after :meth:`RelayLink.stop`.  Every ``probe_interval`` each connected relay must answer a trivial REQ
(``ids:[0…0]``) with EOSE within ``probe_timeout`` — a half-open socket that still looks connected is
dropped and reconnected.  While READY, relays that are down are retried on their own backoff.  Only a
relay that answered a probe resets the backoff, so one that accepts connections but refuses the
subscription (``CLOSED``) is retried ever more slowly rather than in a tight loop.

Publishing
----------
Only rows of the ledger outbox are published, by :class:`device.relay.outbox.OutboxPublisher`: by
priority (grants and debits before refusals, one at a time, in order), then oldest first (refusals up to
``publish_window`` in flight), the stored JSON (never re-signed), to every connected relay; the first ``OK``
acks the row.  Failures are
retried with backoff; a refused row is parked so it cannot block the rest.

Authentication (NIP-42)
-----------------------
With ``auth_keys`` (the agent passes the machine's Nostr key) the link answers a relay's ``AUTH``
challenge on the subscribing connection itself, at once (kind 22242, tags ``relay`` and ``challenge``),
and when a relay closes a subscription, a catch-up page or a probe with ``auth-required:`` it sends the
REQ again once the relay has accepted the authentication -- nostr-sdk 0.45 authenticates only lazily and
does not resend REQs it did not make itself.  The publishing connection uses nostr-sdk's automatic
authentication (``SignerAuthenticator``), which answers an ``auth-required:`` OK by authenticating and
sending the event again.  Without ``auth_keys`` an ``auth-required:`` CLOSED is a refusal like any other.

Log lines carry stable codes (``extra={"code": ...}``; docs/errors.md, "Relay link").
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from nostr_sdk import (
    ClientBuilder,
    ClientMessage,
    EventBuilder,
    EventId,
    Filter,
    Kind,
    RelayOptions,
    RelayStatus,
    RelayUrl,
    SendEventTarget,
    SignerAuthenticator,
    SingleLetterTag,
    Tag,
    Timestamp,
)

from device.ledger import Ledger
from device.nostr_loop import restore_loop, use_loop
from device.protocol import KIND, ProtocolError, read_routing
from device.relay.backoff import Backoff
from device.relay.catchup import Catchup, WireEvent
from device.relay.cursor import CursorKeeper
from device.relay.outbox import DEFAULT_WINDOW, OutboxPublisher, SendOutcome, ok_prefix, wait_event
from device.state import LinkStatus

__all__ = ["DEFAULT_BACKOFF", "REFUSED_BACKOFF", "IncomingEvent", "RelayLink"]

log = logging.getLogger("device.relay")

_NO_MATCH_ID: Final = "0" * 64  # the probe's filter matches no event: the answer is a bare EOSE
_AUTH_KIND: Final = 22242  # NIP-42 client authentication
_S: Final = SingleLetterTag.from_byte(ord("s"))
_P: Final = SingleLetterTag.from_byte(ord("p"))


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """A verified kind-1573 event addressed to our session and machine, as a relay delivered it."""

    event_id: str
    author: str
    created_at: int
    kind: int
    tags: tuple[tuple[str, ...], ...]
    content: str
    relay_url: str  # as configured


DEFAULT_BACKOFF: Final = Backoff()
"""Reconnect and publish-retry delays: 0.5 s doubling up to 30 s."""
REFUSED_BACKOFF: Final = Backoff(initial=60.0, cap=3600.0)
"""Retry delays for an outbox event a relay refused: 1 min doubling up to 1 h."""


# ------------------------------------------------------------------------------------------ internals
@dataclass(slots=True)
class _Reset:
    """Worker instruction: a new subscription ``sub_id`` was sent; collect its catch-up."""

    sub_id: str
    since: int
    hold: int


@dataclass(slots=True)
class _Down:
    """Worker instruction: the connection is gone; abandon an unfinished catch-up."""


@dataclass(slots=True)
class _Slot:
    """One configured relay: its SDK handle, connection bookkeeping, event worker and catch-up."""

    name: str
    url: Any  # nostr_sdk.RelayUrl
    relay: Any = None  # nostr_sdk.Relay
    live: bool = False
    ever_live: bool = False
    failures: int = 0
    next_attempt: float = 0.0
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    catchup: Catchup | None = None  # driven by the worker only
    # NIP-42, per connection: the AUTH event we sent, and whether the relay accepted it
    auth_event_id: str | None = None
    authenticated: asyncio.Event = field(default_factory=asyncio.Event)
    resubscribing: asyncio.Task[None] | None = None
    heard_at: float = 0.0  # time.monotonic() of the last message from the relay


class RelayLink:
    """The device's connection to its Nostr relays: subscription, delivery, and the outbox publisher."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        ledger: Ledger,
        session: str,
        machine_pubkey: str,
        on_event: Callable[[IncomingEvent], Awaitable[None]],
        on_state: Callable[[LinkStatus], None] = lambda _status: None,
        overlap_seconds: int = 600,
        backoff: Backoff = DEFAULT_BACKOFF,
        probe_interval: float = 10.0,
        clock: Callable[[], float] = time.time,
        # additions to the agreed interface (all optional)
        probe_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        publish_timeout: float = 10.0,
        refused_backoff: Backoff = REFUSED_BACKOFF,
        stuck_after: int = 5,
        page_limit: int = 250,
        seen_capacity: int = 10_000,
        drain_timeout: float = 5.0,
        auth_keys: Any = None,
        publish_window: int = DEFAULT_WINDOW,
        screen: Callable[[IncomingEvent], bool] | None = None,
    ) -> None:
        names = list(dict.fromkeys(u.strip() for u in urls))
        if not names:
            raise ValueError("RelayLink needs at least one relay URL")
        for name in names:
            try:
                RelayUrl.parse(name)
            except Exception as exc:  # nostr_sdk's own error class
                raise ValueError(f"invalid relay URL {name!r}: {exc}") from exc
        self._urls = names
        self._ledger = ledger
        self._session = session
        self._machine = machine_pubkey
        self._on_event = on_event
        self._on_state = on_state
        self._overlap = int(overlap_seconds)
        self._backoff = backoff
        self._probe_interval = probe_interval
        self._clock = clock
        self._probe_timeout = probe_timeout
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._page_limit = max(1, page_limit)
        self._seen_capacity = max(1, seen_capacity)
        self._drain_timeout = drain_timeout
        self._auth_keys = auth_keys  # nostr_sdk.Keys answering NIP-42 challenges, or None
        self._screen = screen  # the consumer's cheap checks, before the signature check (False: drop)
        self._auth_sends: set[asyncio.Task[None]] = set()
        self._previous_loop: Any = None  # nostr-sdk's callback loop before start(), put back by stop()

        self._state = LinkStatus.STOPPED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        # Outbox events go out on a second connection with no subscription: on the subscribed
        # connection the relay first echoes our own event (it matches our #s/#p filter) and its OK
        # then arrives ~40 ms late (delayed ACK), which stalled every reply.
        self._publish_client: Any = None
        self._stream: Any = None
        self._slots: list[_Slot] = []
        self._by_url: dict[str, _Slot] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False
        self._ids = itertools.count(1)
        self._probes: dict[str, asyncio.Future[str | None]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._cursor: CursorKeeper | None = None
        self._ready: asyncio.Event | None = None
        self._supervisor_wake: asyncio.Event | None = None
        self._publisher = OutboxPublisher(
            ledger,
            self._send,
            backoff=backoff,
            refused_backoff=refused_backoff,
            stuck_after=stuck_after,
            idle_poll=probe_interval,
            on_unanswered=self._wake_supervisor,
            window=publish_window,
        )

    # ------------------------------------------------------------------------------------ public API
    @property
    def state(self) -> LinkStatus:
        """The link's connection state."""
        return self._state

    @property
    def relay_urls(self) -> tuple[str, ...]:
        """The configured relay URLs (repeats removed)."""
        return tuple(self._urls)

    @property
    def connected_relays(self) -> tuple[str, ...]:
        """The relays currently connected and subscribed."""
        return tuple(s.name for s in self._slots if s.live)

    async def start(self) -> None:
        """Begin connecting, subscribing and publishing in the background; returns at once."""
        if self._loop is not None:
            raise RuntimeError("RelayLink is already started")
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._ready = asyncio.Event()
        self._supervisor_wake = asyncio.Event()
        cursor = self._cursor = CursorKeeper(
            written=await asyncio.to_thread(self._ledger.cursor),
            store=lambda value: asyncio.to_thread(self._ledger.advance_cursor, value),
            clock=self._clock,
        )

        self._client = ClientBuilder().verify_subscriptions(False).notification_channel_size(131072).build()
        self._stream = self._client.notifications()  # before connecting, so no message is missed
        # Reconnects are ours (own backoff, fresh `since`); the SDK pings so dead sockets surface.
        opts = RelayOptions().reconnect(False).ping(True)
        for name in self._urls:
            url = RelayUrl.parse(name)
            await self._client.add_relay(url, opts=opts)
            slot = _Slot(name=name, url=url)
            slot.catchup = self._catchup_for(slot, cursor)
            self._slots.append(slot)
        relays = await self._client.relays()
        for url, relay in relays.items():
            for slot in self._slots:
                if str(slot.url) == str(url) or slot.url == url:
                    slot.relay = relay
                    self._by_url[str(url)] = slot
        for slot in self._slots:
            if slot.relay is None:  # a URL the SDK normalised differently; look it up directly
                slot.relay = await self._client.relay(slot.url)
                self._by_url[str(slot.relay.url())] = slot
            slot.worker = asyncio.create_task(self._work(slot), name=f"relay-worker {slot.name}")

        publish_builder = ClientBuilder()
        if self._auth_keys is not None:
            # nostr-sdk calls the authenticator back through Python: it needs the running loop.
            self._previous_loop = use_loop(self._loop)
            publish_builder = publish_builder.authenticator(SignerAuthenticator(self._auth_keys))
        self._publish_client = publish_builder.build()
        del publish_builder
        for name in self._urls:  # connected on demand by _publish_connection, on our schedule
            await self._publish_client.add_relay(RelayUrl.parse(name), opts=RelayOptions().reconnect(False))

        self._reader = asyncio.create_task(self._read(), name="relay-reader")
        self._tasks = [
            asyncio.create_task(self._forever(self._supervise), name="relay-supervisor"),
            asyncio.create_task(self._forever(self._publish), name="relay-publisher"),
        ]
        self._set_state(LinkStatus.CONNECTING)

    async def stop(self) -> None:
        """Stop everything and release the SDK objects (shutdown → del → gc, so exit cannot segfault)."""
        if self._loop is None:
            return
        self._stopping = True
        for slot in self._slots:
            if slot.catchup is not None:
                slot.catchup.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        # Let a handler that is running finish (up to drain_timeout), then cancel the workers.
        for slot in self._slots:
            slot.queue.put_nowait(None)
        workers = [s.worker for s in self._slots if s.worker is not None]
        if workers:
            _done, pending = await asyncio.wait(workers, timeout=self._drain_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        for fut in self._probes.values():
            fut.cancel()
        self._probes.clear()
        waits = [s.resubscribing for s in self._slots if s.resubscribing is not None]
        waits += list(self._auth_sends)
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        client = self._client
        if client is not None:
            with suppress(Exception):
                await client.disconnect()
            with suppress(Exception):
                await client.shutdown()
        publish_client, self._publish_client = self._publish_client, None
        if publish_client is not None:
            with suppress(Exception):
                await publish_client.shutdown()
            del publish_client
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, timeout=2.0)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
                await asyncio.gather(self._reader, return_exceptions=True)
            except Exception:  # the reader logs its own failures
                pass
            self._reader = None
        for slot in self._slots:
            slot.relay = None
            slot.url = None
        self._slots.clear()
        self._by_url.clear()
        self._stream = None
        self._client = None
        del client
        gc.collect()
        await asyncio.sleep(0)
        if self._auth_keys is not None:
            restore_loop(self._previous_loop)
            self._previous_loop = None
        if self._cursor is not None:
            self._cursor.clear()
        self._loop = None
        self._set_state(LinkStatus.STOPPED)

    def notify_outbox(self) -> None:
        """Wake the publisher (something was just enqueued).  Safe from any thread; a no-op when stopped."""
        loop = self._loop
        if loop is None:
            return  # start() publishes whatever is pending anyway
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._publisher.wake()
        else:
            with suppress(RuntimeError):  # the loop closed under us: nothing left to wake
                loop.call_soon_threadsafe(self._publisher.wake)

    # ------------------------------------------------------------------------------------- state
    def _set_state(self, new: LinkStatus) -> None:
        if new is self._state:
            return
        self._state = new
        if self._ready is not None:
            if new is LinkStatus.READY:
                self._ready.set()
            else:
                self._ready.clear()
        log.debug("relay link %s", new.value)
        try:
            self._on_state(new)
        except Exception:
            log.exception("on_state callback failed", extra={"code": "relay_callback_failed"})

    # -------------------------------------------------------------------------------- supervisor
    async def _forever(self, body: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop; a bug that escapes it is logged and the loop restarted, never fatal."""
        while True:
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "relay link task failed; restarting it", extra={"code": "relay_callback_failed"}
                )
                await asyncio.sleep(1.0)

    async def _supervise(self) -> None:
        assert self._supervisor_wake is not None
        outage = 0  # backoff attempts since the last time any relay was up
        reported_down = False
        while True:
            now = time.monotonic()
            if self._state is LinkStatus.READY:
                due = [s for s in self._slots if not s.live and s.next_attempt <= now]
            else:
                due = [s for s in self._slots if not s.live]
            if due:
                await asyncio.gather(*(self._connect(s) for s in due))
            if any(s.live for s in self._slots):
                if self._state is not LinkStatus.READY:
                    self._set_state(LinkStatus.READY)
                await wait_event(self._supervisor_wake, self._probe_interval)
                self._supervisor_wake.clear()
                await self._probe()
                if any(s.live for s in self._slots):
                    # Only a relay that answered a probe resets the backoff, so one that accepts the
                    # connection and then closes our subscription is retried ever more slowly.
                    outage, reported_down = 0, False
                    continue
            if not reported_down:
                log.warning(
                    "no relay reachable (%s); retrying with backoff",
                    ", ".join(self._urls),
                    extra={"code": "relay_unreachable"},
                )
                reported_down = True
            self._set_state(LinkStatus.BACKING_OFF)
            await asyncio.sleep(self._backoff.delay(outage))
            outage += 1
            self._set_state(LinkStatus.CONNECTING)

    async def _connect(self, slot: _Slot) -> None:
        slot.auth_event_id = None  # a new connection is authenticated anew
        slot.authenticated = asyncio.Event()
        try:
            await slot.relay.try_connect(timedelta(seconds=self._connect_timeout))
            await self._subscribe(slot)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            with suppress(Exception):
                slot.relay.disconnect()
            slot.queue.put_nowait(_Down())  # drop the catch-up hold a half-done subscribe may have left
            slot.next_attempt = time.monotonic() + self._backoff.delay(slot.failures)
            slot.failures += 1
            log.debug("relay %s: connect failed (attempt %d): %s", slot.name, slot.failures, exc)
            return
        slot.live = True
        if slot.ever_live:
            log.info("relay %s reconnected; resubscribed", slot.name, extra={"code": "relay_reconnected"})
        else:
            log.info("relay %s connected", slot.name, extra={"code": "relay_connected"})
        slot.ever_live = True
        await self._publish_connection(slot)
        self.notify_outbox()

    async def _publish_connection(self, slot: _Slot) -> None:
        """Make sure the publishing connection to ``slot``'s relay is up (failures surface on send)."""
        if self._publish_client is None or slot.url is None:
            return
        with suppress(Exception):
            relay = await self._publish_client.relay(slot.url)
            if relay.status() != RelayStatus.CONNECTED:
                await relay.try_connect(timedelta(seconds=self._connect_timeout))

    async def _subscribe(self, slot: _Slot) -> None:
        """(Re)subscribe ``slot`` from the ledger cursor as it is now, minus the overlap."""
        cursor = await asyncio.to_thread(self._ledger.cursor)
        base = cursor if cursor is not None else int(self._clock())
        since = max(0, base - self._overlap)
        sub_id = f"xephy-{next(self._ids)}"
        # The worker holds the cursor at `base` until this catch-up is delivered: registered here,
        # before the REQ, so no other relay's event can move the cursor past the backlog meanwhile.
        assert self._cursor is not None
        slot.queue.put_nowait(_Reset(sub_id=sub_id, since=since, hold=self._cursor.hold(base)))
        await slot.relay.send_msg(ClientMessage.req(sub_id, self._filter(since)))

    def _filter(self, since: int, until: int | None = None) -> Any:
        f = (
            Filter()
            .kind(Kind(KIND))
            .custom_tag(_S, self._session)
            .custom_tag(_P, self._machine)
            .since(Timestamp.from_secs(since))
            .limit(self._page_limit)
        )
        if until is not None:
            f = f.until(Timestamp.from_secs(until))
        return f

    def _mark_down(self, slot: _Slot, why: str) -> None:
        if not slot.live:
            return
        slot.live = False
        slot.next_attempt = time.monotonic() + self._backoff.delay(slot.failures)
        slot.failures += 1
        with suppress(Exception):
            slot.relay.disconnect()
        slot.queue.put_nowait(_Down())
        log.warning("relay %s dropped: %s", slot.name, why, extra={"code": "relay_unreachable"})
        if self._supervisor_wake is not None:
            self._supervisor_wake.set()

    async def _probe(self) -> None:
        """Drop relays that are not connected, or do not answer a trivial REQ within probe_timeout."""
        live = [s for s in self._slots if s.live]
        for slot in live:
            status = slot.relay.status()
            if status != RelayStatus.CONNECTED:
                self._mark_down(slot, f"status {getattr(status, 'name', status)}")
        checked = [s for s in live if s.live]
        answers = await asyncio.gather(*(self._round_trip(s) for s in checked))
        for slot, why in zip(checked, answers, strict=True):
            if why is not None:
                self._mark_down(slot, why)
            elif slot.live:
                slot.failures = 0  # proven healthy: its next drop retries from the shortest delay

    async def _round_trip(self, slot: _Slot) -> str | None:
        """None if the relay answered a REQ with EOSE in time -- or kept sending us anything meanwhile
        (under a flood the EOSE queues behind the events; a socket that delivers is not half-open) --
        else why not."""
        assert self._loop is not None
        sent_at = time.monotonic()
        probe_id = f"probe-{next(self._ids)}"
        fut: asyncio.Future[str | None] = self._loop.create_future()
        self._probes[probe_id] = fut
        try:
            await slot.relay.send_msg(
                ClientMessage.req(probe_id, Filter().id(EventId.parse(_NO_MATCH_ID)).limit(1))
            )
            answer = await asyncio.wait_for(fut, self._probe_timeout)
        except TimeoutError:
            if slot.heard_at > sent_at:
                return None
            return f"no answer to a probe within {self._probe_timeout:g} s"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return f"probe failed: {exc}"
        finally:
            self._probes.pop(probe_id, None)
        with suppress(Exception):
            await slot.relay.send_msg(ClientMessage.close(probe_id))
        if answer is None or (self._auth_keys is not None and ok_prefix(answer) == "auth-required"):
            return None  # it answered: alive (the subscription is re-sent once authenticated)
        return f"probe closed: {answer}"

    # ------------------------------------------------------------------------------------ reader
    async def _read(self) -> None:
        """Route the SDK's raw relay messages to the per-relay workers (never blocks on a handler)."""
        stream = self._stream
        while True:
            try:
                note = await stream.next()
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._stopping:
                    return
                log.exception("reading relay notifications failed", extra={"code": "relay_unreachable"})
                await asyncio.sleep(0.1)
                continue
            if note is None or note.is_shutdown():
                return
            if not note.is_message():
                continue  # NEW_EVENT duplicates a MESSAGE we also get; the raw one is authoritative
            try:
                self._route(note.relay_url, note.message.as_enum())
            except Exception:
                log.exception("could not route a relay message", extra={"code": "relay_event_invalid"})

    def _route(self, relay_url: Any, msg: Any) -> None:
        slot = self._by_url.get(str(relay_url))
        if slot is None:
            return
        slot.heard_at = time.monotonic()
        if msg.is_event_msg():
            event = msg.event
            # One call across the FFI for every field (each accessor is one, or two): under a flood of
            # junk this is most of the link's cost per event, beside the signature check.
            fields = json.loads(event.as_json())
            wire = WireEvent(str(fields["id"]), int(fields["created_at"]), (event, fields))
            slot.queue.put_nowait(("event", msg.subscription_id, wire))
        elif msg.is_end_of_stored_events():
            fut = self._probes.get(msg.subscription_id)
            if fut is not None:
                if not fut.done():
                    fut.set_result(None)
            else:
                slot.queue.put_nowait(("eose", msg.subscription_id, None))
        elif msg.is_closed():
            fut = self._probes.get(msg.subscription_id)
            if fut is not None:
                if not fut.done():
                    fut.set_result(msg.message or "closed")
            elif self._auth_keys is not None and ok_prefix(msg.message or "") == "auth-required":
                self._resubscribe_when_authenticated(slot)
            else:
                slot.queue.put_nowait(("closed", msg.subscription_id, msg.message))
        elif msg.is_auth():
            if self._auth_keys is not None:
                self._authenticate(slot, str(msg.challenge))
        elif msg.is_ok():
            if slot.auth_event_id is not None and str(msg.event_id.to_hex()) == slot.auth_event_id:
                if msg.status:
                    log.info(
                        "relay %s: authenticated (NIP-42)", slot.name, extra={"code": "relay_authenticated"}
                    )
                    slot.authenticated.set()
                else:
                    log.warning(
                        "relay %s refused our authentication: %s",
                        slot.name,
                        msg.message,
                        extra={"code": "relay_auth_refused"},
                    )
        elif msg.is_notice():
            log.debug("relay %s notice: %s", slot.name, msg.message)

    # ------------------------------------------------------------------------------------ NIP-42
    def _authenticate(self, slot: _Slot, challenge: str) -> None:
        """Answer ``challenge`` on ``slot``'s subscribing connection with the machine key."""
        event = (
            EventBuilder(Kind(_AUTH_KIND), "")
            .tags([Tag.parse(["relay", str(slot.url)]), Tag.parse(["challenge", challenge])])
            .finalize(self._auth_keys)
        )
        slot.auth_event_id = str(event.id().to_hex())

        async def send() -> None:
            with suppress(Exception):  # a dead socket surfaces through the probe
                await slot.relay.send_msg(ClientMessage.auth(event))

        task = asyncio.create_task(send(), name=f"relay-auth {slot.name}")
        self._auth_sends.add(task)
        task.add_done_callback(self._auth_sends.discard)

    def _resubscribe_when_authenticated(self, slot: _Slot) -> None:
        """A REQ was closed ``auth-required:``: send the subscription again once the relay accepted our
        authentication, or drop the relay if it does not within ``connect_timeout``."""
        if slot.resubscribing is not None and not slot.resubscribing.done():
            return

        async def wait_then_subscribe() -> None:
            try:
                await asyncio.wait_for(slot.authenticated.wait(), self._connect_timeout)
            except TimeoutError:
                self._mark_down(slot, "auth-required, and no authentication was accepted")
                return
            if slot.live:
                try:
                    await self._subscribe(slot)
                except Exception as exc:
                    self._mark_down(slot, f"resubscribe after authentication failed: {exc}")

        slot.resubscribing = asyncio.create_task(wait_then_subscribe(), name=f"relay-reauth {slot.name}")

    # ------------------------------------------------------------------------------------ worker
    def _catchup_for(self, slot: _Slot, cursor: CursorKeeper) -> Catchup:
        """The catch-up machine of ``slot``, talking to its relay through the SDK handle."""

        async def request_page(page_id: str, since: int, until: int) -> None:
            await slot.relay.send_msg(ClientMessage.req(page_id, self._filter(since, until=until)))

        async def close(sub_id: str) -> None:
            if slot.live:
                with suppress(Exception):
                    await slot.relay.send_msg(ClientMessage.close(sub_id))

        async def deliver(event: WireEvent) -> None:
            await self._deliver(slot, event)

        return Catchup(
            name=slot.name,
            cursor=cursor,
            request_page=request_page,
            close=close,
            deliver=deliver,
            on_refused=lambda why: self._mark_down(slot, why),
            page_limit=self._page_limit,
        )

    async def _work(self, slot: _Slot) -> None:
        """Drive this relay's catch-up from its queue, one item at a time (so its events are handed over
        one at a time: catch-up oldest first, then live)."""
        catchup = slot.catchup
        assert catchup is not None
        while True:
            item = await slot.queue.get()
            if item is None or self._stopping:
                return
            try:
                if isinstance(item, _Reset):
                    await catchup.subscribed(item.sub_id, since=item.since, hold=item.hold)
                elif isinstance(item, _Down):
                    catchup.connection_lost()
                else:
                    kind, sub_id, payload = item
                    if kind == "event":
                        await catchup.event(sub_id, payload)
                    elif kind == "eose":
                        await catchup.end_of_stored(sub_id)
                    elif kind == "closed":
                        await catchup.closed(sub_id, payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not kill the relay's delivery
                log.exception("relay %s: worker error", slot.name, extra={"code": "relay_handler_failed"})

    async def _deliver(self, slot: _Slot, wire: WireEvent) -> None:
        """Check one event and hand it to the consumer; advance the cursor if it was handled."""
        assert self._cursor is not None
        event, event_id = wire.raw, wire.event_id
        if event_id in self._seen:
            self._seen.move_to_end(event_id)
            return
        incoming = self._check(slot, event, event_id)
        self._seen[event_id] = None  # refused ones too: a relay repeating them is logged once
        while len(self._seen) > self._seen_capacity:
            self._seen.popitem(last=False)
        if incoming is None:
            return
        token = self._cursor.hold(incoming.created_at)
        try:
            await self._on_event(incoming)
        except asyncio.CancelledError:
            self._seen.pop(event_id, None)
            self._cursor.drop(token)
            raise
        except Exception:
            self._seen.pop(event_id, None)  # not handled: a later copy may be handed over again
            self._cursor.drop(token)
            log.exception(
                "handler failed for event %s from %s",
                event_id,
                slot.name,
                extra={"code": "relay_handler_failed"},
            )
            return
        await self._cursor.handled(token, incoming.created_at)

    def _check(self, slot: _Slot, raw: Any, event_id: str) -> IncomingEvent | None:
        event, fields = raw
        kind, tags = fields.get("kind"), fields.get("tags")
        try:
            if not isinstance(kind, int) or not isinstance(tags, list):
                raise TypeError("kind or tags missing")
            tags = tuple(tuple(str(x) for x in tag) for tag in tags)
            routing = read_routing(kind, tags)
        except (ProtocolError, TypeError) as exc:
            why = f"{exc.code}: {exc.message}" if isinstance(exc, ProtocolError) else str(exc)
        else:
            why = ""
            if routing.session != self._session:
                why = f"session {routing.session!r}"
            elif routing.machine != self._machine:
                why = f"machine {routing.machine}"
        if why:  # routing first: it is cheap, and a foreign event is dropped whether it verifies or not
            log.warning(
                "dropped event %s from %s: not for us (%s)",
                event_id,
                slot.name,
                why,
                extra={"code": "relay_event_foreign"},
            )
            return None
        incoming = IncomingEvent(
            event_id=event_id,
            author=str(fields["pubkey"]),
            created_at=int(fields["created_at"]),
            kind=kind,
            tags=tags,
            content=str(fields["content"]),
            relay_url=slot.name,
        )
        if self._screen is not None and not self._screen(incoming):
            return None  # junk: the consumer logged it
        try:
            valid = bool(event.verify())  # id and signature, over the fields read above
        except Exception:
            valid = False
        if not valid:
            log.warning(
                "dropped event %s from %s: id or signature does not verify",
                event_id,
                slot.name,
                extra={"code": "relay_event_invalid"},
            )
            return None
        return incoming

    # --------------------------------------------------------------------------------- publisher
    async def _publish(self) -> None:
        assert self._ready is not None
        await self._publisher.run(self._ready)

    async def _send(self, event: Any) -> SendOutcome | None:
        """Publish ``event`` to every connected relay and classify the answers (None: none connected).

        With ``auth_keys``, an ``auth-required:`` answer is tried once more at once: nostr-sdk has
        authenticated the connection meanwhile (a publish racing the authentication can still get it).
        """
        targets = [s for s in self._slots if s.live]
        if not targets or self._publish_client is None:
            return None
        await asyncio.gather(*(self._publish_connection(s) for s in targets))
        outcome = await self._send_once(event, targets)
        if (
            self._auth_keys is not None
            and outcome.acked_by is None
            and any(ok_prefix(message) == "auth-required" for _relay, message in outcome.refusals)
        ):
            outcome = await self._send_once(event, targets)
        return outcome

    async def _send_once(self, event: Any, targets: list[_Slot]) -> SendOutcome:
        names = {str(s.url): s.name for s in targets}
        try:
            out = await self._publish_client.send_event(
                event,
                target=SendEventTarget.to([s.url for s in targets]),
                ok_timeout=timedelta(seconds=self._publish_timeout),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return SendOutcome(acked_by=None, failures=(("*", str(exc)),))
        return SendOutcome.from_results(
            [names.get(str(u), str(u)) for u in out.success],
            {names.get(str(u), str(u)): str(m) for u, m in out.failed.items()},
        )

    def _wake_supervisor(self) -> None:
        if self._supervisor_wake is not None:
            self._supervisor_wake.set()
