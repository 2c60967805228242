"""Pay-as-you-go sessions: ``lock`` on a recharge, ``settle`` the exact usage when the session ends.

In ``pricing.mode: session`` a recharge Request is checked exactly like a prepaid one and goes through the
same persist-before-send, resume-after-restart path in :mod:`device.recharge.processor` -- but the
transaction is a ``lock`` of the authorized amount (:meth:`SessionKeeper.prepare_lock`) and its grant opens
a session (:meth:`SessionKeeper.grant_lock`): ``Status{Working, UserRequest}`` and ``Transaction{+budget}``
where ``budget = locked lamports × tokens_per_lamport``.  Chats debit the budget like any balance.

A session ends at the first of: the user's ``Request{Available, UserRequest}`` naming it
(:meth:`SessionKeeper.stop`), the budget used up, ``pricing.session_idle_seconds`` without a chat, or the
agent stopping (:meth:`SessionKeeper.aclose`).  Ending it is three durable steps, each resumable:

1. close (one ledger transaction): the unused budget is debited with its ``Transaction{user, −unused}``
   and the price fixed: ``settle = ceil(used / tokens_per_lamport)`` lamports (never while a chat of the
   user is in flight);
2. the signed ``settle(nonce, settle)`` is recorded, then sent;
3. once it landed -- or the chain shows the lock account closed, which only a landed settle does --
   the session is marked settled together with ``Status{Available, UserBehaviour}`` whose payload is the
   start Request's payload plus ``"session": {locked/settled/returned lamports, tokens used, reason}``.

The keeper's loop runs every ``tick_seconds`` and after every stop; at start it resumes every unsettled
session, so a session whose idle time passed while the agent was down is settled at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Final

from solders.pubkey import Pubkey

from device.errors import DeviceError
from device.ledger import Ledger, LedgerError, RechargeRow, SessionRow, SessionState
from device.nostr_events import EventSigner
from device.protocol import (
    MachineStatus,
    ProtocolError,
    Reason,
    RecoverInfo,
    Request,
    Status,
    Transaction,
    decode_payload,
    encode_message,
)
from device.recharge.faults import FaultPoints
from device.solana.client import TxOutcome
from device.solana.errors import ChainUnavailable, SettlementError
from device.solana.session_client import SessionClient, SignedLock
from device.state import Change, ChangeKind, StateHub

log = logging.getLogger(__name__)

#: The longest wait between two attempts to settle a session whose last attempt failed.
_MAX_RETRY_SECONDS: Final = 60.0

#: Why a session ended (the ``reason`` in its closing Status payload).
USER_STOP: Final = "user_stop"
BUDGET_USED: Final = "budget_used"
IDLE: Final = "idle"
AGENT_STOP: Final = "agent_stop"


class SessionRefusal(DeviceError):
    """A session Request this device will not act on: ``session_open`` (the user already has one) or
    ``session_not_found`` (a stop naming no open session of that user)."""

    code = "session_not_found"


# ------------------------------------------------------------------------------------------ replies
def _status(
    status: MachineStatus, reason: Reason, request_id: str, payload: str, summary: dict[str, object]
) -> Status:
    """A Status whose payload is the Request's ``payload`` (a JSON object; every key kept) with
    ``"session": summary`` set -- or, if that would not fit an event, ``{"user", "session"}`` only."""
    try:
        obj = json.loads(payload)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        obj = {}
    full = {**obj, "session": summary}
    built = Status(status, reason, request_id, json.dumps(full, ensure_ascii=False, separators=(",", ":")))
    try:
        encode_message(built)
    except ProtocolError:
        short = {"user": obj.get("user"), "session": summary}
        built = Status(status, reason, request_id, json.dumps(short, separators=(",", ":")))
    return built


def opening_messages(
    request_id: str, payload: str, user: str, *, locked_lamports: int, tokens: int
) -> tuple[Status, Transaction]:
    """``Status{Working, UserRequest}`` (payload + ``"session": {locked_lamports, budget_tokens}``, which
    tells a wallet the recharge opened a session) and ``Transaction{user, +tokens}`` granting the budget."""
    summary: dict[str, object] = {"locked_lamports": locked_lamports, "budget_tokens": tokens}
    return (
        _status(MachineStatus.Working, Reason.UserRequest, request_id, payload, summary),
        Transaction(user=user, tokens=tokens),
    )


def closing_status(session: SessionRow) -> Status:
    """``Status{Available, UserBehaviour}`` naming the start Request; its payload is the start payload
    with ``"session"``: what was locked, settled and returned, the tokens used and why it ended."""
    assert session.settle_lamports is not None and session.used_tokens is not None
    summary: dict[str, object] = {
        "locked_lamports": session.locked_lamports,
        "settled_lamports": session.settle_lamports,
        "returned_lamports": session.locked_lamports - session.settle_lamports,
        "tokens_used": session.used_tokens,
        "reason": session.stop_reason,
    }
    return _status(
        MachineStatus.Available, Reason.UserBehaviour, session.request_id, session.payload, summary
    )


# ------------------------------------------------------------------------------------------- keeper
class SessionKeeper:
    """Opens sessions for the recharge processor and ends, settles and resumes them (module docstring)."""

    def __init__(
        self,
        ledger: Ledger,
        client: SessionClient,
        signer: EventSigner,
        hub: StateHub,
        *,
        tokens_per_lamport: int,
        idle_seconds: float,
        notify_outbox: Callable[[], None],
        clock: Callable[[], float] = time.time,
        faults: FaultPoints | None = None,
        tick_seconds: float = 1.0,
    ) -> None:
        self._ledger = ledger
        self._client = client
        self._signer = signer
        self._hub = hub
        self._tokens_per_lamport = tokens_per_lamport
        self._idle = idle_seconds
        self._notify_outbox = notify_outbox
        self._clock = clock
        self._faults = faults if faults is not None else FaultPoints()
        self._tick = tick_seconds
        self._pass_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff: dict[str, tuple[float, float]] = {}  # request id -> (delay, loop time of next try)

    # ----------------------------------------------------------------------------- lock (processor)
    async def prepare_lock(self, row: RechargeRow, info: RecoverInfo) -> SignedLock:
        """The signed ``lock`` for a pending session recharge (the caller holds the user's lock).
        Raises ``session_open`` when the user already has an open session, else as
        :meth:`SessionClient.prepare_lock`."""
        assert row.user is not None and row.nonce is not None and row.amount_lamports is not None
        current = await asyncio.to_thread(self._ledger.open_session, row.user)
        if current is not None:
            raise SessionRefusal(
                f"{row.user} already has an open session ({current.request_id}); stop it first",
                code="session_open",
            )
        # Another lock of this user whose outcome is still unknown may land and open a session: one at a time.
        for other in await asyncio.to_thread(self._ledger.unfinished_recharges):
            if other.user == row.user and other.charge == "lock" and other.request_id != row.request_id:
                raise SessionRefusal(
                    f"{row.user} has another session being opened ({other.request_id})", code="session_open"
                )
        return await self._client.prepare_lock(
            Pubkey.from_string(row.user),
            info,
            payload_nonce=row.nonce,
            amount=row.amount_lamports,
            now=int(self._clock()),
        )

    async def landed_anyway(self, row: RechargeRow, outcome: TxOutcome) -> bool:
        """Whether a ``lock`` reported not landed (blockhash expired) exists on chain after all: its lock
        account at the row's nonce holds the row's amount."""
        if outcome.error is None or outcome.error.code != "blockhash_expired":
            return False
        assert row.user is not None and row.nonce is not None
        lock = await self._client.lock_account(Pubkey.from_string(row.user), row.nonce)
        return lock is not None and lock.amount == row.amount_lamports

    async def grant_lock(self, row: RechargeRow) -> bool:
        """The ``lock`` landed: grant the budget and open the session (one ledger transaction)."""
        assert row.payload is not None and row.user is not None and row.tokens is not None
        assert row.amount_lamports is not None
        messages = opening_messages(
            row.request_id, row.payload, row.user, locked_lamports=row.amount_lamports, tokens=row.tokens
        )
        events = [self._signer.sign(m) for m in messages]
        opened = await asyncio.to_thread(
            self._ledger.complete_lock,
            row.request_id,
            tokens_per_lamport=self._tokens_per_lamport,
            event_id=events[1].event_id,
            outbox=[e.outbox() for e in events],
        )
        if opened:
            log.info(
                "session %s: %d lamports locked for %s, budget %d tokens",
                row.request_id,
                row.amount_lamports,
                row.user,
                row.tokens,
                extra={"code": "session_opened"},
            )
            self._notify_outbox()
            balance = await asyncio.to_thread(self._ledger.balance, row.user)
            self._hub.update(
                user=row.user,
                user_balance=balance.total,
                user_last_grant=row.tokens,
                last_grant=Change(ChangeKind.GRANT, at=self._clock(), user=row.user, tokens=row.tokens),
            )
            await self._show()
        return opened

    # --------------------------------------------------------------------------------------- stop
    async def stop(self, event_id: str, author: str, request: Request) -> None:
        """A user's ``Request{Available, UserRequest}``: mark the session it names to be settled now.

        The Request's ``initial_request`` must name an open session whose user is the payload's ``user``;
        otherwise :class:`SessionRefusal` ``session_not_found``.  The Request is recorded ``answered`` (its
        reply is the session's closing Status).
        """
        user = decode_payload(request.payload).user
        session = await asyncio.to_thread(self._ledger.session, request.initial_request)
        if session is None or session.user != user or session.state is not SessionState.OPEN:
            raise SessionRefusal(
                f"no open session {request.initial_request} of {user} on this device",
                code="session_not_found",
            )
        await asyncio.to_thread(self._ledger.request_stop, session.request_id, USER_STOP)
        await asyncio.to_thread(
            self._ledger.answer_request, event_id, author=author, payload=request.payload, outbox=[]
        )
        log.info("session %s: stop requested by the user", session.request_id, extra={"code": "session_stop"})
        self._backoff.pop(session.request_id, None)
        self._wake.set()

    # ---------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Resume every unsettled session now, then keep checking them every ``tick_seconds``."""
        await self.run_once()
        self._task = asyncio.create_task(self._loop(), name="sessions")

    async def aclose(self, *, settle_open: bool = True, within: float = 15.0) -> None:
        """Stop the loop; with ``settle_open`` end every open session (``agent_stop``) and settle what the
        chain allows within ``within`` seconds -- what is left is settled at the next start."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        if not settle_open:
            return
        for session in await asyncio.to_thread(self._ledger.unsettled_sessions):
            if session.state is SessionState.OPEN:
                await asyncio.to_thread(self._ledger.request_stop, session.request_id, AGENT_STOP)
        try:
            await asyncio.wait_for(self.run_once(), within)
        except TimeoutError:
            log.warning(
                "sessions not all settled at stop: resumed at the next start",
                extra={"code": "session_resume"},
            )

    async def run_once(self, *, force: bool = True) -> None:
        """One pass over every unsettled session: end those due, settle those ended.

        A session whose last attempt failed is retried with backoff (1 s doubling to 60 s, one log line per
        attempt) unless ``force``; the loop's passes are not forced, start and stop passes are."""
        now = asyncio.get_running_loop().time()
        async with self._pass_lock:
            for session in await asyncio.to_thread(self._ledger.unsettled_sessions):
                delay, not_before = self._backoff.get(session.request_id, (0.0, 0.0))
                if not force and now < not_before:
                    continue
                try:
                    await self._drive(session)
                except DeviceError as exc:
                    delay = min(max(1.0, delay * 2), _MAX_RETRY_SECONDS)
                    self._backoff[session.request_id] = (delay, now + delay)
                    log.warning(
                        "session %s: %s; retrying in %g s",
                        session.request_id,
                        exc.message,
                        delay,
                        extra={"code": exc.code},
                    )
                else:
                    self._backoff.pop(session.request_id, None)
            await self._show()

    async def _loop(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._tick)
            self._wake.clear()
            try:
                await self.run_once(force=False)
            except Exception as exc:  # e.g. the ledger's disk is full: try again next tick
                code = exc.code if isinstance(exc, DeviceError) else "session_internal_error"
                log.exception("session pass failed", extra={"code": code})

    # ------------------------------------------------------------------------------------- driving
    async def _drive(self, session: SessionRow) -> None:
        if session.state is SessionState.OPEN:
            reason = await asyncio.to_thread(self._due, session)
            if reason is None:
                return
            closed = await self._close(session, reason)
            if closed is None:
                return
            session = closed
            self._faults.reached("before_settle")
        if session.state is SessionState.SUBMITTED:
            assert session.signature is not None and session.last_valid_block_height is not None
            outcome = await self._client.resume(
                session.signature, session.last_valid_block_height, tx_bytes=session.tx_bytes
            )
            await self._settled_or_retry(session, outcome)
            return
        await self._settle(session)

    def _due(self, session: SessionRow) -> str | None:
        """Why ``session`` should end now, or None (runs in a worker thread: reads the ledger)."""
        if session.stop_reason is not None:
            return session.stop_reason
        if self._ledger.unused_budget(session) == 0:
            return BUDGET_USED
        if self._clock() - self._ledger.last_activity(session) >= self._idle:
            return IDLE
        return None

    async def _close(self, session: SessionRow, reason: str) -> SessionRow | None:
        """Debit the unused budget and fix the price; None while a chat of the user is in flight."""
        for _ in range(3):
            unused = await asyncio.to_thread(self._ledger.unused_budget, session)
            outbox = (
                []
                if not unused
                else [self._signer.sign(Transaction(user=session.user, tokens=-unused)).outbox()]
            )
            try:
                closed = await asyncio.to_thread(
                    self._ledger.close_session,
                    session.request_id,
                    reason=reason,
                    unused=unused,
                    outbox=outbox,
                )
            except LedgerError as exc:
                if exc.code == "session_busy":
                    log.debug("session %s: a chat is in flight, closing later", session.request_id)
                    return None
                if exc.code == "idempotency_conflict":
                    continue  # a chat committed in between: read the unused budget again
                raise
            if outbox:
                self._notify_outbox()
            if self._hub.current.user == session.user:
                total = (await asyncio.to_thread(self._ledger.balance, session.user)).total
                self._hub.update(user_balance=total)
            log.info(
                "session %s closed (%s): %d of %d tokens used, settling %d of %d lamports",
                session.request_id,
                closed.stop_reason,
                closed.used_tokens,
                closed.budget_tokens,
                closed.settle_lamports,
                closed.locked_lamports,
                extra={"code": "session_closed"},
            )
            return closed
        return None

    async def _settle(self, session: SessionRow) -> None:
        assert session.settle_lamports is not None
        user = Pubkey.from_string(session.user)
        try:
            signed = await self._client.prepare_settle(user, session.nonce, session.settle_lamports)
        except SettlementError as exc:
            if exc.code == "lock_not_found":  # only a landed settle closes the lock
                await self._finish(session)
                return
            raise
        session = await asyncio.to_thread(
            self._ledger.record_settle_submission,
            session.request_id,
            signed.signature,
            signed.last_valid_block_height,
            signed.tx_bytes,
        )
        self._faults.reached("after_settle_submit")
        try:
            outcome = await self._client.submit(signed)
        except ChainUnavailable:
            raise  # the row stays submitted: resumed by signature on the next pass
        await self._settled_or_retry(session, outcome)

    async def _settled_or_retry(self, session: SessionRow, outcome: TxOutcome) -> None:
        if outcome.ok:
            self._faults.reached("after_settle_landed")
            await self._finish(session)
            return
        lock = await self._client.lock_account(Pubkey.from_string(session.user), session.nonce)
        if lock is None:  # the settle (an earlier copy, its answer lost) landed after all
            await self._finish(session)
            return
        error = outcome.error
        log.warning(
            "session %s: settle %s did not land (%s), signing it again",
            session.request_id,
            outcome.signature,
            error.message if error is not None else "failed",
            extra={"code": error.code if error is not None else "settlement_failed"},
        )
        await asyncio.to_thread(self._ledger.retry_settle, session.request_id)

    async def _finish(self, session: SessionRow) -> None:
        reply = self._signer.sign(closing_status(session))
        if await asyncio.to_thread(self._ledger.finish_session, session.request_id, outbox=[reply.outbox()]):
            log.info(
                "session %s settled: %d lamports to the treasury, %d returned to %s",
                session.request_id,
                session.settle_lamports,
                session.returned_lamports,
                session.user,
                extra={"code": "session_settled"},
            )
            self._notify_outbox()

    async def _show(self) -> None:
        unsettled = await asyncio.to_thread(self._ledger.unsettled_sessions)
        self._hub.update(open_sessions=sum(1 for s in unsettled if s.state is SessionState.OPEN))
