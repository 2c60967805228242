"""Metering: hold a user's tokens before a chat, checkpoint while it runs, debit exactly what was used.

The flow for one completion (``design.md``, money path step 5)::

    hold = await meter.hold(user, prompt_tokens=p, max_tokens=m, n_ctx=c)   # durable before any compute
    try:
        ... generate; every ≤ 32 tokens or ≤ 1 s: await meter.checkpoint(hold, p + produced) ...
    finally:
        await meter.settle(hold, used=p + completion)                       # always, exactly once

* :meth:`Meter.hold` reserves ``p + min(m, c - p)`` capped at the available balance; the hold is on disk
  when it returns.  It raises ``context_length_exceeded`` when ``p + 1 > c``, ``insufficient_balance``
  when the balance cannot pay the prompt and one answer token, and ``ledger_unavailable`` while the
  ledger cannot be written.  The ledger's reserve is atomic, so concurrent chats of one user can never
  hold (and so never spend) more than the balance.
* :meth:`Meter.checkpoint` records how many tokens are owed so far; after a crash
  :meth:`Meter.settle_open_holds` debits every open hold at its last checkpoint, with its signed event.
* :meth:`Meter.settle` commits the debit and its signed ``Transaction{user, -used}`` outbox row in one
  ledger transaction, wakes the relay link, releases whatever was not used and updates the device
  state.  ``used == 0`` (nothing was computed) only releases.  It is shielded from cancellation.  When
  the commit cannot be written (disk full, locked, read-only) the hold stays and the same debit (same
  event) is retried in the background; until it lands, :attr:`Meter.writable` is False and new holds
  are refused ``ledger_unavailable``, so nothing is ever served unbilled.

Every ledger call runs on the meter's own single worker thread, never on the event loop: a ledger
locked by another process delays metering, not the chat server's other answers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from device.errors import DeviceError
from device.ledger import Balance, InsufficientBalance, Ledger, LedgerError, OutboxEvent, Reservation
from device.nostr_events import EventSigner
from device.protocol import Transaction
from device.state import Change, ChangeKind, StateHub

__all__ = ["Hold", "Meter", "MeteringError", "Settlement"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often :meth:`Meter.hold` re-reads the balance when a concurrent chat reserved in between.
_RESERVE_ATTEMPTS: Final = 3
#: Ledger codes meaning "the file cannot be written right now": retried, never given up.
_STORAGE_CODES: Final = frozenset(
    {"ledger_disk_full", "ledger_read_only", "ledger_busy", "ledger_error", "ledger_corrupt"}
)


class MeteringError(DeviceError):
    """A chat cannot be paid for (``insufficient_balance``), cannot fit (``context_length_exceeded``),
    or cannot be billed right now (``ledger_unavailable``)."""

    code = "metering_error"


@dataclass(frozen=True, slots=True)
class Hold:
    """Tokens reserved for one completion."""

    reservation: Reservation
    prompt_tokens: int
    #: Most answer tokens the reservation pays for (≥ 1).
    completion_budget: int
    #: True when the balance, not max_tokens or the context, limits the answer.
    limited_by_balance: bool

    @property
    def user(self) -> str:
        return self.reservation.user

    @property
    def key(self) -> str:
        return self.reservation.key


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a settled completion cost."""

    used: int
    event_id: str | None  # the Transaction event announcing the debit; None when nothing was charged
    balance: Balance  # after the debit (computed from the ledger's balance when the debit is deferred)
    deferred: bool = False  # the ledger could not be written; the debit is being retried in the background


@dataclass(frozen=True, slots=True)
class _Pending:
    """A settlement the ledger refused to store; retried until it is written."""

    reservation: Reservation
    used: int
    event: OutboxEvent | None  # the signed debit announcement, kept so every retry has the same id


class Meter:
    """Reserves, checkpoints, commits and releases chat tokens in the ledger and announces each debit."""

    def __init__(
        self,
        ledger: Ledger,
        signer: EventSigner,
        hub: StateHub,
        notify_outbox: Callable[[], None],
        *,
        clock: Callable[[], float] = time.time,
        retry_first_s: float = 0.25,
        retry_max_s: float = 5.0,
    ) -> None:
        self._ledger = ledger
        self._signer = signer
        self._hub = hub
        self._notify_outbox = notify_outbox
        self._clock = clock
        self._retry_first_s = retry_first_s
        self._retry_max_s = retry_max_s
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self._pending: dict[str, _Pending] = {}
        self._retry: asyncio.Task[None] | None = None

    @property
    def writable(self) -> bool:
        """False while a debit or release waits for the ledger to accept writes again."""
        return not self._pending

    @property
    def deferred(self) -> int:
        """Settlements waiting for the ledger (0 when every debit is on disk)."""
        return len(self._pending)

    async def balance(self, user: str) -> Balance:
        """The user's balance (total, reserved, available)."""
        return await self._call(self._ledger.balance, user)

    def require_writable(self) -> None:
        """Raise ``ledger_unavailable`` while earlier settlements are still waiting for the ledger."""
        if self._pending:
            raise MeteringError(
                f"the ledger cannot be written ({len(self._pending)} debit(s) waiting); "
                "no chat is served until it can -- retry shortly",
                code="ledger_unavailable",
            )

    async def hold(self, user: str, *, prompt_tokens: int, max_tokens: int, n_ctx: int) -> Hold:
        """Reserve the tokens for one completion durably, or refuse before anything is computed."""
        if prompt_tokens + 1 > n_ctx:
            raise MeteringError(
                f"the prompt is {prompt_tokens} tokens; with an answer it must fit the {n_ctx}-token context",
                code="context_length_exceeded",
            )
        self.require_writable()
        wanted = min(max_tokens, n_ctx - prompt_tokens)
        key = f"chat:{uuid.uuid4().hex}"
        for _ in range(_RESERVE_ATTEMPTS):
            available = (await self.balance(user)).available
            if available < prompt_tokens + 1:
                raise MeteringError(
                    f"{available} tokens available; this prompt needs {prompt_tokens} plus at least 1 "
                    "for the answer -- recharge first",
                    code="insufficient_balance",
                )
            budget = min(wanted, available - prompt_tokens)
            try:
                reservation = await self._call(self._ledger.reserve, user, prompt_tokens + budget, key=key)
            except InsufficientBalance:
                continue  # another chat of this user reserved in between; look again
            except LedgerError as exc:
                raise _unavailable(exc, "hold") from exc
            return Hold(
                reservation=reservation,
                prompt_tokens=prompt_tokens,
                completion_budget=budget,
                limited_by_balance=budget < wanted,
            )
        raise MeteringError(
            "the balance kept changing while reserving; try again", code="insufficient_balance"
        )

    async def checkpoint(self, hold: Hold, used: int) -> None:
        """Record durably that ``used`` tokens of ``hold`` are owed so far (``ledger_unavailable`` if not)."""
        try:
            await self._call(self._ledger.checkpoint, hold.reservation, min(used, hold.reservation.amount))
        except LedgerError as exc:
            raise _unavailable(exc, "checkpoint") from exc

    async def settle(self, hold: Hold, used: int) -> Settlement:
        """Debit exactly ``used`` tokens (with its Transaction event) and release the rest.

        Runs to completion even if the calling task is cancelled.  If the ledger cannot be written the
        hold stays and the debit is retried in the background (``Settlement.deferred``).
        """
        return await asyncio.shield(asyncio.ensure_future(self._settle(hold.reservation, used)))

    async def settle_open_holds(self) -> int:
        """Debit every hold a crash left open at its last checkpoint (with its signed event); the count.

        Exactly once: each debit is keyed by its hold's key and ends the hold in the same transaction.
        """
        holds = await self._call(self._ledger.open_holds)
        for open_hold in holds:
            log.warning(
                "settling chat %s of %s left open by a restart: %d of %d tokens used at its last checkpoint",
                open_hold.reservation.key,
                open_hold.reservation.user,
                open_hold.used,
                open_hold.reservation.amount,
                extra={"code": "chat_hold_recovered"},
            )
            await self._settle(open_hold.reservation, open_hold.used)
        return len(holds)

    async def aclose(self) -> None:
        """Stop retrying (holds still waiting stay on disk, settled at the next start); free the thread."""
        retry, self._retry = self._retry, None
        if retry is not None:
            retry.cancel()
            await asyncio.gather(retry, return_exceptions=True)
        self._executor.shutdown(wait=True)

    # -------------------------------------------------------------------------------------- internals
    async def _call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _settle(self, res: Reservation, used: int) -> Settlement:
        event: OutboxEvent | None = None
        if used > 0:
            signed = self._signer.sign(Transaction(user=res.user, tokens=-used))
            event = signed.outbox()
        event_id = None if event is None else event.event_id
        pending = _Pending(reservation=res, used=used, event=event)
        try:
            await self._write_settlement(pending)
        except LedgerError as exc:
            if exc.code not in _STORAGE_CODES:
                raise
            self._defer(pending, exc)
            now = await self.balance(res.user)  # the hold is still counted in ``reserved``
            total, reserved = now.total - used, now.reserved - res.amount
            after = Balance(total=total, reserved=reserved, available=max(0, total - reserved))
            return Settlement(used=used, event_id=event_id, balance=after, deferred=True)
        return Settlement(used=used, event_id=event_id, balance=await self._settled(pending))

    async def _write_settlement(self, pending: _Pending) -> None:
        if pending.event is None:
            await self._call(self._ledger.release, pending.reservation)
        else:
            await self._call(
                self._ledger.commit,
                pending.reservation,
                pending.used,
                event_id=pending.event.event_id,
                outbox=[pending.event],
            )

    async def _settled(self, pending: _Pending) -> Balance:
        res = pending.reservation
        balance = await self.balance(res.user)
        if pending.event is not None:
            self._notify_outbox()
            debit = Change(kind=ChangeKind.DEBIT, at=self._clock(), user=res.user, tokens=pending.used)
            self._hub.update(
                last_debit=debit,
                user=res.user,
                user_balance=balance.total,
            )
        log.info(
            "chat settled: %s used %d of %d reserved, %d left",
            res.user,
            pending.used,
            res.amount,
            balance.total,
            extra={"code": "chat_settled"},
        )
        return balance

    def _defer(self, pending: _Pending, exc: LedgerError) -> None:
        self._pending[pending.reservation.key] = pending
        log.error(
            "cannot write the debit of %s (%d tokens) to the ledger (%s: %s); hold kept, retrying, "
            "new chats refused until it is written",
            pending.reservation.user,
            pending.used,
            exc.code,
            exc.message,
            extra={"code": "ledger_unavailable"},
        )
        if self._retry is None or self._retry.done():
            self._retry = asyncio.create_task(self._retry_pending())

    async def _retry_pending(self) -> None:
        delay = self._retry_first_s
        while self._pending:
            await asyncio.sleep(delay)
            for key, pending in list(self._pending.items()):
                try:
                    await self._write_settlement(pending)
                except LedgerError as exc:
                    if exc.code in _STORAGE_CODES:
                        delay = min(delay * 2, self._retry_max_s)
                        break
                    del self._pending[key]  # refused for good (e.g. closed): the hold stays on disk
                    log.error("deferred settlement %s refused: %s", key, exc, extra={"code": exc.code})
                    continue
                del self._pending[key]
                delay = self._retry_first_s
                await self._settled(pending)
        log.info("the ledger accepts writes again; chats are served", extra={"code": "ledger_writable"})


def _unavailable(exc: LedgerError, what: str) -> DeviceError:
    """``ledger_unavailable`` for a storage failure; any other ledger refusal unchanged."""
    if exc.code not in _STORAGE_CODES:
        return exc
    log.error(
        "the ledger refused a chat %s (%s: %s)",
        what,
        exc.code,
        exc.message,
        extra={"code": "ledger_unavailable"},
    )
    return MeteringError(
        f"the ledger cannot be written ({exc.code}); nothing was served or charged -- retry shortly",
        code="ledger_unavailable",
    )
