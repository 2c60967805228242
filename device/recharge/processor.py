"""Recharge: a ``Request`` event in, one ``pay`` on chain, one grant in the ledger, replies in the outbox.

Exactly once, across duplicates, concurrency and crashes (``shared/design.md``, "The money path"):

1. Cheap checks first, which cost no fsync and no signature: routing (session, machine), the content,
   payload and ``recover_info`` must decode, the reason must be one this device acts on (a user's
   ``Request{Working, UserRequest}``, or an admin reason from ``nostr.admin_pubkeys``), and the payload must
   be addressed here (namespace; the device binding in ``extra_data`` names this machine).  A Request that
   fails them is *dropped*: logged with its code (:class:`~device.recharge.drops.DropLog`), nothing stored,
   nothing signed, no reply -- as the reference controller does on any failure.
   Then verification: the device's limits (the bound amount, :func:`charge_amount`; a deadline at most
   ``Config.max_authorization_seconds`` ahead) and the chain's view of the authorization
   (:meth:`SettlementClient.prepare_pay`: nonce, signature, deadline, funds).  A refusal is recorded
   ``failed`` together with a ``Status{Available, LockFailed}`` reply naming the Request and carrying only
   ``"error": {"code", "message"}`` -- in one ledger transaction; nothing is charged.  Replies are limited
   per author and overall (:class:`~device.recharge.refusal_limit.RefusalLimiter`; a refusal beyond the
   limits is recorded unanswered) and queued at low priority, behind grants and debits.
2. The ledger row, keyed by the Request's event id, is the only dedupe: a finished request delivered again
   does nothing; an unfinished one is resumed, never started over.
3. ``pending`` is written before anything is signed, the transaction's signature (and bytes) before it is
   sent.  A landed ``pay`` is granted in ONE ledger transaction with its three announcing events
   (``Status{Working}``, ``Transaction{+tokens}``, ``Status{Available, UserBehaviour}``); a ``pay`` the chain
   proves did not land (refused, failed, blockhash expired) is refused like in 1.  When the outcome is
   unknown (RPC down or slow) the row stays ``submitted`` and a background loop resumes it with backoff.
4. One user at a time (a per-user lock): two authorizations of one user share the on-chain nonce, so only
   one of them can land; different users settle concurrently.

Trust: recharges are accepted from any author.  ``AdminRequest``/``Reset`` are accepted only from
``nostr.admin_pubkeys`` (others are dropped ``unauthorized``).  This device has no occupancy to reset --
every recharge is its own transaction -- so an admin request is only acknowledged with
``Status{Available, <its reason>}`` echoing its payload: it never charges and never grants.
``Status``/``Transaction`` events cause no action; from authors other than this device and
``nostr.trusted_authors`` they are logged ``event_untrusted``.

:meth:`RechargeProcessor.handle` never raises: every problem is a refusal reply or a log line with a code.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Final, Literal

from solders.pubkey import Pubkey

from device.config import Config
from device.errors import DeviceError
from device.ledger import Ledger, OutboxEvent, OutboxPriority, RechargeRow, RechargeState
from device.nostr_events import EventSigner
from device.protocol import (
    MachineStatus,
    Message,
    ProtocolError,
    Reason,
    RecoverInfo,
    Request,
    Status,
    Transaction,
    decode_message,
    decode_payload,
    decode_recover_info,
    read_routing,
)
from device.recharge.drops import DropLog
from device.recharge.faults import FaultPoints
from device.recharge.refusal_limit import RefusalLimiter
from device.recharge.replies import acknowledgement, grant_messages, refusal
from device.relay import IncomingEvent
from device.solana.authorization import charge_amount
from device.solana.client import SettlementClient, SignedPay, TxOutcome
from device.solana.errors import ChainUnavailable, SettlementError
from device.state import Activity, ChainStatus, Change, ChangeKind, StateHub

log = logging.getLogger(__name__)

_EVENT_ID: Final = re.compile(r"[0-9a-f]{64}")
_ADMIN_REASONS: Final = frozenset({Reason.AdminRequest, Reason.Reset})
_LEDGER_UNWRITABLE: Final = frozenset({"ledger_disk_full", "ledger_busy", "ledger_read_only"})
# Failures of the cheap checks on a payload that are nevertheless answered: a legitimate user can cause
# them (asking for more than the device's limit); everything else there means "not for us" or "unreadable".
_ANSWERED_CHECKS: Final = frozenset({"binding_amount_invalid"})


class RechargeRefusal(DeviceError):
    """A Request this device will not act on; ``code`` is ``unauthorized``, ``request_unsupported``,
    ``namespace_mismatch`` or ``deadline_too_far`` (others keep the protocol's and the authorization's
    codes)."""

    code = "request_unsupported"


@dataclass(frozen=True, slots=True)
class _Order:
    """A Request that passed the checks that need no chain: what to charge, and what to grant."""

    user: str
    nonce: int
    amount_lamports: int
    tokens: int
    deadline: int


class _UserLocks:
    """One asyncio lock per user, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, user: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(user, asyncio.Lock())
        self._users[user] = self._users.get(user, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[user] -= 1
            if not self._users[user]:
                del self._users[user], self._locks[user]


class RechargeProcessor:
    """Turns recharge Requests into exactly one ``pay`` and one grant each (see the module docstring)."""

    def __init__(
        self,
        ledger: Ledger,
        settlement: SettlementClient,
        signer: EventSigner,
        config: Config,
        hub: StateHub,
        *,
        notify_outbox: Callable[[], None],
        clock: Callable[[], float] = time.time,
        faults: FaultPoints | None = None,
        retry_initial_seconds: float = 1.0,
        retry_max_seconds: float = 60.0,
        background_settlement: bool = False,
        refusal_limiter: RefusalLimiter | None = None,
        drops: DropLog | None = None,
    ) -> None:
        self._ledger = ledger
        self._settlement = settlement
        self._signer = signer
        self._hub = hub
        self._notify_outbox = notify_outbox
        self._clock = clock
        self._faults = faults if faults is not None else FaultPoints()
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._machine = signer.machine_pubkey
        self._session = signer.session
        self._self = signer.author
        self._admins = frozenset(config.nostr.admin_pubkeys)
        self._trusted = frozenset(config.nostr.trusted_authors) | {self._self}
        self._namespace_id = config.solana.namespace_id
        self._pricing = config.pricing
        self._max_ahead = config.max_authorization_seconds
        self._limiter = refusal_limiter or RefusalLimiter(
            per_author_per_minute=config.nostr.refusals_per_author_per_minute,
            per_minute=config.nostr.refusals_per_minute,
        )
        self._drops = drops or DropLog(log)
        self._locks = _UserLocks()
        self._settling = 0
        self._retry_task: asyncio.Task[None] | None = None
        self._closed = False
        # With background settlement, ``handle`` returns once the request is durably recorded
        # (pending row) and settles in a task, so one user's slow settlement never holds up the
        # relay link's delivery of other users' requests; a crash leaves the row for resume.
        self._background = background_settlement
        self._settling_tasks: dict[str, asyncio.Task[None]] = {}
        # Events whose handling failed because the ledger could not be written (disk full, locked):
        # handled again by the retry loop (a crash loses this list; the restart's catch-up redelivers).
        self._deferred: dict[str, IncomingEvent] = {}

    # ------------------------------------------------------------------------------------------ public
    async def handle(self, event: IncomingEvent) -> None:
        """Act on one event from the relay link (any number of times, concurrently or not).  Never raises."""
        try:
            await self._handle(event)
        except Exception as exc:  # an unexpected failure must not stop the relay link
            code = exc.code if isinstance(exc, DeviceError) else "recharge_internal_error"
            log.exception("event %s: handling failed", getattr(event, "event_id", "?"), extra={"code": code})
            self._note_error(None, code, str(exc))
            if code in _LEDGER_UNWRITABLE and isinstance(getattr(event, "event_id", None), str):
                # The link has moved on (its cursor too): keep the event and handle it again from the
                # retry loop once the ledger can be written, or the Request would be lost until a restart.
                self._deferred[event.event_id] = event
                self._schedule_retry()

    def screen(self, event: IncomingEvent) -> bool:
        """The cheap checks alone, for the relay link to run before it checks the event's signature:
        False (the drop logged here) when :meth:`handle` would drop the event anyway, so junk costs
        neither a signature check nor a trip through the link's delivery.  Never raises."""
        try:
            message = decode_message(event.content)
        except ProtocolError as exc:
            if event.author == self._self:
                return True  # handle() logs our own unreadable event
            self._drops.drop(event.event_id, exc.code, exc.message)
            return False
        except Exception:
            return True  # handle() reports it
        if not isinstance(message, Request):
            return True
        return self._cheap_checks(event.event_id, event.author, message) is not None

    async def resume_unfinished(self) -> None:
        """Resume every ``pending``/``submitted`` recharge (call at start, before the relay link runs).

        Rows whose outcome stays unknown (chain unreachable) are left to the background retry loop.
        """
        if await self._resume_all():
            self._schedule_retry()

    async def aclose(self) -> None:
        """Stop the background retry loop (unfinished rows are resumed at the next start)."""
        self._closed = True
        task, self._retry_task = self._retry_task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        settling = list(self._settling_tasks.values())
        for pending in settling:  # unfinished rows stay pending/submitted and resume at the next start
            pending.cancel()
        await asyncio.gather(*settling, return_exceptions=True)

    @property
    def retrying(self) -> bool:
        """True while the background retry loop is waiting to resume unfinished recharges."""
        return self._retry_task is not None and not self._retry_task.done()

    # ------------------------------------------------------------------------------------- dispatching
    async def _handle(self, event: IncomingEvent) -> None:
        event_id, author = event.event_id, event.author
        if not (isinstance(event_id, str) and _EVENT_ID.fullmatch(event_id)) or not isinstance(author, str):
            log.warning("event with an invalid id or author ignored", extra={"code": "event_invalid"})
            return
        try:
            routing = read_routing(event.kind, list(event.tags))
        except (ProtocolError, TypeError) as exc:
            log.warning(
                "event %s ignored: %s", event_id, exc, extra={"code": getattr(exc, "code", "invalid_tag")}
            )
            return
        if routing.machine != self._machine or routing.session != self._session:
            log.warning(
                "event %s is for machine %s session %r, not this device: ignored",
                event_id,
                routing.machine,
                routing.session,
                extra={"code": "event_misrouted"},
            )
            return
        try:
            message: Message = decode_message(event.content)
        except ProtocolError as exc:
            if author == self._self:
                log.warning("own event %s unreadable: %s", event_id, exc, extra={"code": exc.code})
                return
            self._drops.drop(event_id, exc.code, exc.message)
            return
        if isinstance(message, Status | Transaction):
            self._observe(event_id, author, message)
            return
        await self._on_request(event_id, author, message)

    def _observe(self, event_id: str, author: str, message: Status | Transaction) -> None:
        kind = type(message).__name__
        if author in self._trusted:
            log.debug("%s %s from trusted author %s: nothing to do", kind, event_id, author)
            return
        log.warning(
            "%s %s from untrusted author %s ignored",
            kind,
            event_id,
            author,
            extra={"code": "event_untrusted"},
        )

    async def _on_request(self, event_id: str, author: str, request: Request) -> None:
        order = self._cheap_checks(event_id, author, request)
        if order is None:
            return
        if order == "admin":
            await self._on_admin(event_id, author, request)
            return
        known = await asyncio.to_thread(self._ledger.recharge, event_id)
        if known is not None:
            if self._background:
                self._settle_in_background(known)
            else:
                await self._on_known(known)
            return
        if isinstance(order, DeviceError):
            await self._refuse_new(event_id, author, order.code, order.message)
            return
        if order.deadline > int(self._clock()) + self._max_ahead:
            await self._refuse_new(
                event_id,
                author,
                "deadline_too_far",
                f"the authorization's deadline {order.deadline} is more than {self._max_ahead} s ahead; "
                "sign one that expires sooner",
            )
            return
        if self._background:
            row = await self._begin(event_id, author, order, request.payload)
            if not row.state.finished:
                self._settle_in_background(row)
            return
        async with self._locks.hold(order.user):
            row = await self._begin(event_id, author, order, request.payload)
            if not row.state.finished:
                await self._settle(row)

    def _cheap_checks(
        self, event_id: str, author: str, request: Request
    ) -> _Order | DeviceError | Literal["admin"] | None:
        """The order a user's Request asks for; a :class:`DeviceError` to answer with a refusal; ``"admin"``
        for an admin's request; None when the Request was dropped (logged here)."""
        if request.reason in _ADMIN_REASONS:
            if author not in self._admins:
                self._drops.drop(
                    event_id, "unauthorized", f"{request.reason} from {author}, which is not an admin key"
                )
                return None
            return "admin"
        if (request.to_status, request.reason) != (MachineStatus.Working, Reason.UserRequest):
            self._drops.drop(
                event_id,
                "request_unsupported",
                f"only Request{{Working, UserRequest}} is acted on, not {request.to_status}/{request.reason}",
            )
            return None
        try:
            return self._read(request)
        except DeviceError as exc:
            if exc.code in _ANSWERED_CHECKS:
                return exc
            self._drops.drop(event_id, exc.code, exc.message)
            return None

    async def _begin(self, event_id: str, author: str, order: _Order, payload: str) -> RechargeRow:
        """Record the request as ``pending`` (idempotent: a known request id returns its row)."""
        return await asyncio.to_thread(
            self._ledger.begin_recharge,
            event_id,
            author=author,
            user=order.user,
            nonce=order.nonce,
            amount_lamports=order.amount_lamports,
            tokens=order.tokens,
            payload=payload,
        )

    def _settle_in_background(self, row: RechargeRow) -> None:
        """Settle ``row`` in a task (at most one per request); errors are logged, the row resumes later."""
        if row.request_id in self._settling_tasks or self._closed:
            return

        async def run() -> None:
            try:
                await self._on_known(row)
            except Exception as exc:
                code = exc.code if isinstance(exc, DeviceError) else "recharge_internal_error"
                log.exception("request %s: settlement failed", row.request_id, extra={"code": code})
                self._schedule_retry()
            finally:
                self._settling_tasks.pop(row.request_id, None)

        self._settling_tasks[row.request_id] = asyncio.create_task(run())

    async def _on_known(self, row: RechargeRow) -> None:
        if row.state.finished or row.user is None:
            log.debug("request %s already %s: nothing to do", row.request_id, row.state)
            return
        async with self._locks.hold(row.user):
            current = await asyncio.to_thread(self._ledger.recharge, row.request_id)
            if current is not None and not current.state.finished:
                await self._settle(current)

    async def _on_admin(self, event_id: str, author: str, request: Request) -> None:
        reply = self._signer.sign(acknowledgement(event_id, request.reason, request.payload))
        if await asyncio.to_thread(
            self._ledger.answer_request,
            event_id,
            author=author,
            payload=request.payload,
            outbox=[reply.outbox(OutboxPriority.LOW)],
        ):
            log.info("admin %s %s acknowledged; nothing charged", request.reason, event_id)
            self._notify_outbox()

    # ------------------------------------------------------------------------------------- validation
    def _read(self, request: Request) -> _Order:
        """The order in a Request's payload, if it is readable and addressed here (raises a
        :class:`DeviceError`; see ``_ANSWERED_CHECKS`` for the one that is answered, not dropped)."""
        payload = decode_payload(request.payload)
        info = decode_recover_info(payload.recover_info, path="payload.recover_info")
        if payload.namespace_id is not None and payload.namespace_id != self._namespace_id:
            raise RechargeRefusal(
                f"payload is for namespace {payload.namespace_id}, this device serves {self._namespace_id}",
                code="namespace_mismatch",
            )
        amount = charge_amount(
            info.extra_data,
            machine_pubkey_hex=self._machine,
            recharge_lamports=self._pricing.recharge_lamports,
            max_recharge_lamports=self._pricing.max_recharge_lamports,
        )
        return _Order(
            payload.user, payload.nonce, amount, amount * self._pricing.tokens_per_lamport, info.deadline
        )

    # --------------------------------------------------------------------------------------- settling
    async def _settle(self, row: RechargeRow) -> None:
        """Drive one unfinished row to granted or failed (caller holds the user's lock).

        Whatever stops it half-way (chain unreachable, a storage error) leaves the row unfinished and
        schedules the retry loop, which resumes it from the state on disk.
        """
        try:
            await self._settle_once(row)
        except Exception:
            self._schedule_retry()
            raise

    async def _settle_once(self, row: RechargeRow) -> None:
        self._settling_changed(+1)
        try:
            outcome = await self._pay(row)
        except SettlementError as exc:  # ChainUnavailable, or an answer that decides nothing
            if isinstance(exc, ChainUnavailable):
                self._hub.update(chain=ChainStatus.UNREACHABLE)
            log.warning(
                "request %s: outcome unknown, will resume: %s",
                row.request_id,
                exc.message,
                extra={"code": exc.code},
            )
            self._schedule_retry()
            return
        finally:
            self._settling_changed(-1)
        if outcome is None:
            return
        self._hub.update(chain=ChainStatus.REACHABLE)
        current = await asyncio.to_thread(self._ledger.recharge, row.request_id)
        assert current is not None
        if outcome.ok:
            self._faults.reached("after_landed")
            await self._grant(current)
        else:
            error = outcome.error
            code = error.code if error is not None else "settlement_failed"
            message = error.message if error is not None else f"transaction {outcome.signature} failed"
            await self._fail(current, code, message)

    async def _pay(self, row: RechargeRow) -> TxOutcome | None:
        """Submit (pending) or look up (submitted) the row's ``pay``; None when refused before sending."""
        if row.state is RechargeState.SUBMITTED:
            assert row.signature is not None and row.last_valid_block_height is not None
            return await self._settlement.resume(
                row.signature, row.last_valid_block_height, tx_bytes=row.tx_bytes
            )
        self._faults.reached("before_pay")
        signed = await self._prepare(row)
        if signed is None:
            return None
        await asyncio.to_thread(
            self._ledger.record_submission,
            row.request_id,
            signed.signature,
            signed.last_valid_block_height,
            signed.tx_bytes,
        )
        self._faults.reached("after_submit")
        try:
            return await self._settlement.submit(signed)
        except SettlementError as exc:  # sent or not, the outcome is open: resume by signature
            if exc.signature is None:
                exc.signature = signed.signature
            raise

    async def _prepare(self, row: RechargeRow) -> SignedPay | None:
        assert row.payload is not None and row.user is not None
        assert row.nonce is not None and row.amount_lamports is not None
        try:
            info: RecoverInfo = decode_recover_info(
                decode_payload(row.payload).recover_info, path="payload.recover_info"
            )
            return await self._settlement.prepare_pay(
                Pubkey.from_string(row.user),
                info,
                payload_nonce=row.nonce,
                amount=row.amount_lamports,
                now=int(self._clock()),
            )
        except ChainUnavailable:
            raise
        except DeviceError as exc:
            self._hub.update(chain=ChainStatus.REACHABLE)
            await self._fail(row, exc.code, exc.message)
            return None

    # ---------------------------------------------------------------------------------------- results
    async def _grant(self, row: RechargeRow) -> None:
        assert row.payload is not None and row.user is not None and row.tokens is not None
        events = [
            self._signer.sign(m) for m in grant_messages(row.request_id, row.payload, row.user, row.tokens)
        ]
        granted = await asyncio.to_thread(
            self._ledger.complete_recharge,
            row.request_id,
            grant_key=row.request_id,
            user=row.user,
            tokens=row.tokens,
            event_id=events[1].event_id,
            outbox=[e.outbox() for e in events],
        )
        if not granted:
            return
        self._faults.reached("after_grant")
        self._notify_outbox()
        balance = await asyncio.to_thread(self._ledger.balance, row.user)
        log.info(
            "request %s: granted %d tokens to %s (%d lamports, tx %s)",
            row.request_id,
            row.tokens,
            row.user,
            row.amount_lamports,
            row.signature,
        )
        self._hub.update(
            user=row.user,
            user_balance=balance.total,
            user_last_grant=row.tokens,
            last_grant=Change(ChangeKind.GRANT, at=self._clock(), user=row.user, tokens=row.tokens),
        )

    async def _fail(self, row: RechargeRow, code: str, message: str) -> None:
        outbox = self._refusal_reply(row.request_id, row.author, code, message)
        if await asyncio.to_thread(self._ledger.fail_recharge, row.request_id, code, message, outbox=outbox):
            self._refused(row.request_id, row.user, code, message, answered=bool(outbox))

    async def _refuse_new(self, event_id: str, author: str, code: str, message: str) -> None:
        outbox = self._refusal_reply(event_id, author, code, message)
        if await asyncio.to_thread(
            self._ledger.fail_recharge, event_id, code, message, outbox=outbox, author=author
        ):
            self._refused(event_id, None, code, message, answered=bool(outbox))

    def _refusal_reply(self, request_id: str, author: str, code: str, message: str) -> list[OutboxEvent]:
        """The signed refusal, queued at low priority -- or nothing, beyond the refusal limits."""
        if not self._limiter.allow(author):
            return []
        return [self._signer.sign(refusal(request_id, code, message)).outbox(OutboxPriority.LOW)]

    def _refused(self, request_id: str, user: str | None, code: str, message: str, *, answered: bool) -> None:
        if answered:
            log.warning("request %s refused: %s", request_id, message, extra={"code": code})
            self._notify_outbox()
        else:
            self._drops.drop(
                request_id,
                "recharge_refusal_unanswered",
                f"refused {code} ({message}); not answered: over the refusal rate limit",
            )
        self._note_error(user, code, message)

    def _note_error(self, user: str | None, code: str, message: str) -> None:
        self._hub.update(
            last_error=Change(ChangeKind.ERROR, at=self._clock(), user=user, code=code, message=message)
        )

    def _settling_changed(self, delta: int) -> None:
        self._settling += delta
        if self._settling > 0:
            self._hub.update(activity=Activity.SETTLING)
        elif self._hub.current.activity is Activity.SETTLING:
            self._hub.update(activity=Activity.IDLE)

    # ----------------------------------------------------------------------------------------- resume
    async def _resume_all(self) -> int:
        """Handle deferred events again, then resume every unfinished row, users concurrently; return how
        many are still unfinished or deferred."""
        deferred, self._deferred = self._deferred, {}
        for event in deferred.values():  # a new storage failure defers it again
            await self.handle(event)
        rows = await asyncio.to_thread(self._ledger.unfinished_recharges)
        if rows:
            log.info("resuming %d unfinished recharge(s)", len(rows))
            await asyncio.gather(*(self._resume_row(row) for row in rows))
        return len(await asyncio.to_thread(self._ledger.unfinished_recharges)) + len(self._deferred)

    async def _resume_row(self, row: RechargeRow) -> None:
        try:
            await self._on_known(row)
        except Exception as exc:
            code = exc.code if isinstance(exc, DeviceError) else "recharge_internal_error"
            log.exception("request %s: resume failed", row.request_id, extra={"code": code})

    def _schedule_retry(self) -> None:
        if self._closed or self.retrying:
            return
        self._retry_task = asyncio.create_task(self._retry_loop(), name="recharge-retry")

    async def _retry_loop(self) -> None:
        delay = self._retry_initial
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                if not await self._resume_all():
                    return
            except Exception as exc:  # e.g. the ledger's disk is full: keep trying, with backoff
                code = exc.code if isinstance(exc, DeviceError) else "recharge_internal_error"
                log.exception("resuming unfinished recharges failed", extra={"code": code})
            delay = min(delay * 2, self._retry_max)
