"""Metering: hold a user's tokens before a chat, debit exactly what was used after it.

The flow for one completion (``design.md``, money path step 5)::

    hold = await meter.hold(user, prompt_tokens=p, max_tokens=m, n_ctx=c)   # refuses before any compute
    try:
        ... generate at most hold.completion_budget tokens ...
    finally:
        await meter.settle(hold, used=p + completion)                       # always, exactly once

* :meth:`Meter.hold` reserves ``p + min(m, c - p)`` capped at the available balance.  It raises
  ``context_length_exceeded`` when ``p + 1 > c`` and ``insufficient_balance`` when the balance cannot
  pay the prompt and one answer token.  The ledger's reserve is atomic, so concurrent chats of one user
  can never hold (and so never spend) more than the balance.
* :meth:`Meter.settle` commits the debit and its signed ``Transaction{user, -used}`` outbox row in one
  ledger transaction, wakes the relay link, releases whatever was not used and updates the device
  state.  ``used == 0`` (nothing was computed) only releases.  It is shielded from cancellation, so a
  client disconnect cannot interrupt it half-way.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from device.errors import DeviceError
from device.ledger import Balance, InsufficientBalance, Ledger, Reservation
from device.nostr_events import EventSigner
from device.protocol import Transaction
from device.state import Change, ChangeKind, StateHub

__all__ = ["Hold", "Meter", "MeteringError", "Settlement"]

log = logging.getLogger(__name__)

#: How often :meth:`Meter.hold` re-reads the balance when a concurrent chat reserved in between.
_RESERVE_ATTEMPTS = 3


class MeteringError(DeviceError):
    """A chat cannot be paid for (``insufficient_balance``) or cannot fit (``context_length_exceeded``)."""

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
    balance: Balance


class Meter:
    """Reserves, commits and releases chat tokens in the ledger and announces each debit."""

    def __init__(
        self,
        ledger: Ledger,
        signer: EventSigner,
        hub: StateHub,
        notify_outbox: Callable[[], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledger = ledger
        self._signer = signer
        self._hub = hub
        self._notify_outbox = notify_outbox
        self._clock = clock

    async def balance(self, user: str) -> Balance:
        """The user's balance (total, reserved, available)."""
        return await asyncio.to_thread(self._ledger.balance, user)

    async def hold(self, user: str, *, prompt_tokens: int, max_tokens: int, n_ctx: int) -> Hold:
        """Reserve the tokens for one completion, or refuse before anything is computed."""
        if prompt_tokens + 1 > n_ctx:
            raise MeteringError(
                f"the prompt is {prompt_tokens} tokens; with an answer it must fit the {n_ctx}-token context",
                code="context_length_exceeded",
            )
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
                reservation = self._ledger.reserve(user, prompt_tokens + budget, key=key)
            except InsufficientBalance:
                continue  # another chat of this user reserved in between; look again
            return Hold(
                reservation=reservation,
                prompt_tokens=prompt_tokens,
                completion_budget=budget,
                limited_by_balance=budget < wanted,
            )
        raise MeteringError(
            "the balance kept changing while reserving; try again", code="insufficient_balance"
        )

    async def settle(self, hold: Hold, used: int) -> Settlement:
        """Debit exactly ``used`` tokens (with its Transaction event) and release the rest.

        Runs to completion even if the calling task is cancelled.
        """
        return await asyncio.shield(asyncio.ensure_future(self._settle(hold, used)))

    async def _settle(self, hold: Hold, used: int) -> Settlement:
        res = hold.reservation
        event_id: str | None = None
        try:
            if used > 0:
                signed = self._signer.sign(Transaction(user=res.user, tokens=-used))
                await asyncio.to_thread(
                    self._ledger.commit, res, used, event_id=signed.event_id, outbox=[signed.outbox()]
                )
                event_id = signed.event_id
                self._notify_outbox()
        finally:
            self._ledger.release(res)  # no-op after a commit
        balance = await self.balance(res.user)
        if event_id is not None:
            self._hub.update(
                last_debit=Change(kind=ChangeKind.DEBIT, at=self._clock(), user=res.user, tokens=used),
                user=res.user,
                user_balance=balance.total,
            )
        log.info(
            "chat settled: %s used %d of %d reserved, %d left",
            res.user,
            used,
            res.amount,
            balance.total,
            extra={"code": "chat_settled"},
        )
        return Settlement(used=used, event_id=event_id, balance=balance)
