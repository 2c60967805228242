"""Pay-as-you-go on chain: ``lock`` an authorized amount, later ``settle`` the exact usage.

:class:`SessionClient` is the device's :class:`~device.solana.client.SettlementClient` plus the two-phase
instructions of ``balance-payment`` (both versions, ``../shared/reference/xephy-protocol.md`` section 6.4):

* ``lock(amount)`` verifies the same signed authorization as ``pay`` (nonce, signature, deadline, funds),
  increments the nonce, adds ``amount`` to ``UserAccount.locked_amount`` and creates the ``LockAccount`` at
  ``lock_pda(user, nonce)`` (the nonce *before* the increment).  Nothing leaves the vault.
* ``settle(nonce, x)`` moves ``x ≤ lock.amount`` from the vault to the treasury, releases the whole lock
  and closes the lock account.  Only the bot can call it; there is no user-side unlock.

The lock account's existence is the on-chain truth about a session: present → locked and not settled;
absent after a lock landed → settled.  :meth:`SessionClient.lock_account` reads it, so a caller whose
``settle`` answer was lost (or whose signature history the node no longer has) can tell.

Like :meth:`~device.solana.client.SettlementClient.prepare_pay`, the ``prepare_*`` methods check locally
first and return signed, unsent transactions: persist their signature before :meth:`submit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from solders.pubkey import Pubkey

from device.solana import program as prog
from device.solana.authorization import verify_authorization
from device.solana.client import SettlementClient, SignedTransaction
from device.solana.errors import SettlementError
from device.solana.program import (
    ED25519RecoverInfo,
    LockAccountV1,
    LockAccountV2,
    NamespaceAccount,
    ProgramVersion,
)

if TYPE_CHECKING:
    from solders.instruction import Instruction

    from device.protocol import RecoverInfo

__all__ = ["LockAccount", "SessionClient", "SignedLock", "SignedSettle"]

LockAccount = LockAccountV1 | LockAccountV2


@dataclass(frozen=True)
class SignedLock(SignedTransaction):
    """A signed ``lock`` of ``amount`` lamports of ``user``'s vault at on-chain ``nonce``."""

    amount: int
    user: Pubkey
    nonce: int


@dataclass(frozen=True)
class SignedSettle(SignedTransaction):
    """A signed ``settle`` of the lock at ``nonce``: ``amount`` to the treasury, the rest unlocked."""

    amount: int
    user: Pubkey
    nonce: int


_Signed = TypeVar("_Signed", SignedLock, SignedSettle)


class SessionClient(SettlementClient):
    """:class:`SettlementClient` that also locks and settles (see the module docstring)."""

    async def _signed(
        self, kind: type[_Signed], instruction: Instruction, *, user: Pubkey, nonce: int, amount: int
    ) -> _Signed:
        """``instruction`` signed by the bot (also the fee payer), as a ``kind`` for ``user``'s ``nonce``."""
        signed = await self.sign_transaction([instruction], [self.bot])
        return kind(
            signature=signed.signature,
            tx_bytes=signed.tx_bytes,
            last_valid_block_height=signed.last_valid_block_height,
            amount=amount,
            user=user,
            nonce=nonce,
        )

    async def lock_account(self, user: Pubkey, nonce: int) -> LockAccount | None:
        """The lock ``lock_pda(user, nonce)``, or None when it does not exist (never created, or settled)."""
        address = prog.lock_pda(self.program.program_id, user, nonce)
        (account,) = await self._accounts([address])
        data = self._owned(account, "lock account", address)
        if data is None:
            return None
        cls: type[LockAccount] = LockAccountV2 if self.version is ProgramVersion.V2 else LockAccountV1
        return self._decode(cls, data, "lock account")

    async def prepare_lock(
        self,
        user: Pubkey,
        auth: ED25519RecoverInfo | RecoverInfo,
        *,
        payload_nonce: int,
        amount: int,
        now: int,
    ) -> SignedLock:
        """Read the chain, verify the authorization locally as the program will, return the signed ``lock``.

        Raises :class:`~device.solana.authorization.AuthorizationError` (``nonce_mismatch``,
        ``signature_invalid``, ``signature_expired``, ``insufficient_funds``) or :class:`SettlementError`
        (``bot_not_registered``, ``account_not_initialized``, ``insufficient_funds_for_rent``: whatever is
        settled later, the vault must keep at least the rent-exempt minimum) without sending anything.
        """
        recover_info = (
            auth
            if isinstance(auth, ED25519RecoverInfo)
            else ED25519RecoverInfo(auth.signature, auth.extra_data, auth.deadline)
        )
        ctx = await self.pay_context(user)
        if ctx.operator.bot != self.bot.pubkey():
            raise SettlementError(
                f"bot {self.bot.pubkey()} is not the operator's bot ({ctx.operator.bot})",
                code="bot_not_registered",
            )
        if ctx.user_account is None:
            raise SettlementError(f"user {user} is not registered", code="account_not_initialized")
        available = ctx.vault_lamports - ctx.user_account.locked_amount
        verify_authorization(
            self.version,
            user=user,
            auth=recover_info,
            onchain_nonce=ctx.user_account.nonce,
            payload_nonce=payload_nonce,
            now=now,
            namespace_id=self.namespace_id,
            namespace_name=ctx.operator.name if isinstance(ctx.operator, NamespaceAccount) else None,
            available_lamports=available,
            amount=amount,
        )
        if available - amount < ctx.rent_exempt_minimum:
            raise SettlementError(
                f"locking {amount} of {available} available lamports would let a settle leave the vault "
                f"below the rent-exempt minimum {ctx.rent_exempt_minimum}; lock at most "
                f"{max(0, available - ctx.rent_exempt_minimum)}",
                code="insufficient_funds_for_rent",
            )
        nonce = ctx.user_account.nonce
        instruction = prog.lock(
            self.program,
            user=user,
            nonce=nonce,
            bot=self.bot.pubkey(),
            payer=self.bot.pubkey(),
            recover_info=recover_info,
            amount=amount,
            namespace_id=self.namespace_id,
        )
        return await self._signed(SignedLock, instruction, user=user, nonce=nonce, amount=amount)

    async def prepare_settle(self, user: Pubkey, nonce: int, amount: int) -> SignedSettle:
        """The signed ``settle(nonce, amount)``; the treasury is read from the namespace/global account.

        Raises :class:`SettlementError` ``lock_not_found`` when the lock does not exist (already settled,
        or never created) and ``settle_exceeds_lock`` when ``amount`` is more than it holds.
        """
        operator, lock = await self.operator(), await self.lock_account(user, nonce)
        if lock is None:
            raise SettlementError(
                f"no lock of {user} at nonce {nonce} (settled already, or never created)",
                code="lock_not_found",
            )
        if amount > lock.amount:
            raise SettlementError(
                f"settling {amount} lamports exceeds the {lock.amount} locked at nonce {nonce}",
                code="settle_exceeds_lock",
            )
        instruction = prog.settle(
            self.program,
            user=user,
            nonce=nonce,
            treasury=operator.treasury,
            bot=self.bot.pubkey(),
            payer=self.bot.pubkey(),
            amount=amount,
            namespace_id=self.namespace_id,
        )
        return await self._signed(SignedSettle, instruction, user=user, nonce=nonce, amount=amount)
