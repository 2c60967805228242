"""Async settlement client: reads the ``balance-payment`` program's state and lands ``pay`` transactions.

Built on a :class:`~device.solana.rpc.SolanaRpc` transport (the light :class:`~device.solana.rpc.HttpRpc`
for one-shot commands; solana-py's ``AsyncClient`` for the agent's :class:`SettlementClient`) and the pure
modules :mod:`device.solana.program` (accounts, instructions, error table) and
:mod:`device.solana.authorization` (the ``recover_info`` checks).

Settlement is split so that a crash can never charge a user twice or lose track of a charge:

1. :meth:`SettlementClient.prepare_pay` reads the chain (namespace or global account, ``UserAccount``,
   vault, latest blockhash), runs :func:`~device.solana.authorization.verify_authorization` **locally first**
   -- a transaction the program would refuse still costs the bot its fee, so it is never sent -- and returns
   a fully signed :class:`SignedPay`.  Its ``signature`` is the transaction id, known before sending.
2. The caller persists ``signature`` and ``last_valid_block_height`` (and may keep ``tx_bytes``).
3. :meth:`ChainClient.submit` sends the bytes (with preflight) and waits for the configured commitment.
4. After a restart, :meth:`ChainClient.resume` decides from the persisted signature: landed, failed, or
   still pending (re-sending the *same bytes* if the caller kept them -- same signature, so the runtime
   executes it at most once).

A transaction is only declared **not landed** when the chain proves it: the node refused it in preflight
(that send was the only one), or its blockhash expired -- the block height at ``confirmed`` (or the
configured commitment, if stronger) passed ``last_valid_block_height`` while the signature has no status.
Everything else that cannot be decided (RPC down, confirmation slower than ``confirm_timeout``) raises
:class:`ChainUnavailable` carrying the signature, so the caller resumes later.

Errors are :class:`~device.solana.errors.SettlementError` with a stable ``code`` (the mapping from what
the node answers lives in :mod:`device.solana.errors`); :class:`~device.solana.errors.ChainUnavailable`
when the outcome is unknown.

Authorizations refused locally raise :class:`~device.solana.authorization.AuthorizationError` unchanged
(``nonce_mismatch``, ``signature_invalid``, ``signature_expired``, ``insufficient_funds``): nothing was sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

from solders.errors import SerdeJSONError
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from device.solana import program as prog
from device.solana.authorization import verify_authorization
from device.solana.errors import (
    ChainUnavailable,
    SettlementError,
    error_from_rpc_error,
    error_from_rpc_exception,
    error_from_transaction_error,
)
from device.solana.program import (
    ED25519RecoverInfo,
    GlobalAccountV1,
    GlobalAccountV2,
    NamespaceAccount,
    ProgramError,
    ProgramRef,
    ProgramVersion,
    UserAccount,
)
from device.solana.rpc import HttpRpc, JsonRpcError, RpcFailure, SolanaRpc

if TYPE_CHECKING:
    from solders.account import Account

    from device.config import SolanaConfig
    from device.protocol import RecoverInfo

__all__ = [
    "ChainClient",
    "PayContext",
    "PayOutcome",
    "SettlementClient",
    "SignedPay",
    "SignedTransaction",
    "TxOutcome",
    "TxStatus",
    "UserBalance",
    "build_signed_pay",
]

T = TypeVar("T")

#: Commitment levels, weakest first; solders' ``TransactionConfirmationStatus`` has the same ranks.
COMMITMENT_RANK: Final = {"processed": 0, "confirmed": 1, "finalized": 2}
#: Lamports a 0-byte system account (the vault) needs to be rent exempt at default rent; only used
#: when the node cannot be asked (tests build contexts by hand).
DEFAULT_RENT_EXEMPT_MINIMUM: Final = 890_880
#: How often a pending transaction's bytes are sent again while its blockhash is still valid.
DEFAULT_RESEND_INTERVAL: Final = 2.0


# ----------------------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class SignedTransaction:
    """A signed transaction not yet (known to be) landed.  Persist ``signature`` and
    ``last_valid_block_height`` before sending; ``tx_bytes`` may be re-sent safely (same signature)."""

    signature: str
    tx_bytes: bytes
    last_valid_block_height: int


@dataclass(frozen=True)
class SignedPay(SignedTransaction):
    """A signed ``pay`` of ``amount`` lamports from ``user``'s vault, authorized at on-chain ``nonce``."""

    amount: int
    user: Pubkey
    nonce: int


class TxStatus(StrEnum):
    LANDED = "landed"
    """Executed successfully at the configured commitment."""
    FAILED = "failed"
    """Executed with an error (``error.landed``: the fee was paid) or certainly never executed."""


@dataclass(frozen=True)
class TxOutcome:
    """What became of one transaction; ``error`` is set exactly when ``status`` is ``failed``."""

    status: TxStatus
    signature: str
    slot: int | None = None
    error: SettlementError | None = None

    @property
    def ok(self) -> bool:
        return self.status is TxStatus.LANDED

    @property
    def fee_charged(self) -> bool:
        """Whether the fee payer paid for this transaction (it executed, successfully or not)."""
        return self.ok or (self.error is not None and self.error.landed)


PayOutcome = TxOutcome


@dataclass(frozen=True)
class UserBalance:
    """A user's position in the program, read in one request."""

    registered: bool
    vault_lamports: int
    locked_lamports: int
    nonce: int
    wallet_lamports: int

    @property
    def available(self) -> int:
        """What ``pay``/``withdraw`` may take: vault − locked (0 without a ``UserAccount``)."""
        return max(0, self.vault_lamports - self.locked_lamports) if self.registered else 0


@dataclass(frozen=True)
class PayContext:
    """The chain state one ``pay`` is checked against and built from."""

    operator: NamespaceAccount | GlobalAccountV1
    user_account: UserAccount | None
    vault_lamports: int
    blockhash: Hash
    last_valid_block_height: int
    rent_exempt_minimum: int = DEFAULT_RENT_EXEMPT_MINIMUM


def _recover_info(auth: ED25519RecoverInfo | RecoverInfo) -> ED25519RecoverInfo:
    if isinstance(auth, ED25519RecoverInfo):
        return auth
    return ED25519RecoverInfo(auth.signature, auth.extra_data, auth.deadline)


def _sign(
    instructions: Sequence[Instruction], signers: Sequence[Keypair], blockhash: Hash, *, legacy: bool
) -> VersionedTransaction:
    payer = signers[0].pubkey()
    message: Message | MessageV0
    if legacy:
        message = Message.new_with_blockhash(list(instructions), payer, blockhash)
    else:
        message = MessageV0.try_compile(payer, list(instructions), [], blockhash)
    return VersionedTransaction(message, list(signers))


def build_signed_pay(
    program: ProgramRef,
    *,
    namespace_id: int,
    bot: Keypair,
    ctx: PayContext,
    user: Pubkey,
    auth: ED25519RecoverInfo | RecoverInfo,
    payload_nonce: int,
    amount: int,
    now: int,
    legacy: bool = True,
) -> SignedPay:
    """Check an authorization against ``ctx`` exactly as the program will, then build and sign the ``pay``.

    Pure (no I/O).  Raises :class:`~device.solana.authorization.AuthorizationError` for what the program
    would refuse (``nonce_mismatch``, ``signature_invalid``, ``signature_expired``, ``insufficient_funds``)
    and :class:`SettlementError` for ``bot_not_registered``, ``account_not_initialized`` (user not
    registered) and ``insufficient_funds_for_rent`` (the vault would keep a balance below the rent-exempt
    minimum, which the runtime refuses).  The bot is fee payer and the only signer.
    """
    recover_info = _recover_info(auth)
    if ctx.operator.bot != bot.pubkey():
        raise SettlementError(
            f"bot {bot.pubkey()} is not the {_operator_what(program, namespace_id)} bot ({ctx.operator.bot})",
            code="bot_not_registered",
        )
    if ctx.user_account is None:
        raise SettlementError(
            f"user {user} is not registered (no UserAccount at {prog.user_pda(program.program_id, user)})",
            code="account_not_initialized",
        )
    namespace_name = ctx.operator.name if isinstance(ctx.operator, NamespaceAccount) else None
    verify_authorization(
        program.version,
        user=user,
        auth=recover_info,
        onchain_nonce=ctx.user_account.nonce,
        payload_nonce=payload_nonce,
        now=now,
        namespace_id=namespace_id,
        namespace_name=namespace_name,
        available_lamports=ctx.vault_lamports - ctx.user_account.locked_amount,
        amount=amount,
    )
    remaining = ctx.vault_lamports - amount
    if 0 < remaining < ctx.rent_exempt_minimum:
        raise SettlementError(
            f"paying {amount} would leave the vault with {remaining} lamports, below the rent-exempt "
            f"minimum {ctx.rent_exempt_minimum} (the runtime refuses it); charge at most "
            f"{ctx.vault_lamports - ctx.rent_exempt_minimum} or all {ctx.vault_lamports}",
            code="insufficient_funds_for_rent",
        )
    instruction = prog.pay(
        program,
        user=user,
        treasury=ctx.operator.treasury,
        bot=bot.pubkey(),
        payer=bot.pubkey(),
        recover_info=recover_info,
        amount=amount,
        namespace_id=namespace_id,
    )
    tx = _sign([instruction], [bot], ctx.blockhash, legacy=legacy)
    return SignedPay(
        signature=str(tx.signatures[0]),
        tx_bytes=bytes(tx),
        last_valid_block_height=ctx.last_valid_block_height,
        amount=amount,
        user=user,
        nonce=ctx.user_account.nonce,
    )


def _operator_what(program: ProgramRef, namespace_id: int) -> str:
    return "global account's" if program.version is ProgramVersion.V1 else f"namespace {namespace_id}"


# ----------------------------------------------------------------------------------------------------------
# Clients


def _read(what: str, read: Callable[[], T]) -> T:
    """Fields of a parsed reply, read by ``read``: solders decodes some lazily, so a malformed value (a
    blockhash of the wrong size) raises -- or panics, a pyo3 ``PanicException`` -- only on access."""
    try:
        return read()
    except (ValueError, TypeError) as exc:
        raise SettlementError(
            f"{what}: malformed RPC response ({type(exc).__name__})", code="rpc_error"
        ) from exc
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        raise SettlementError(f"{what}: malformed RPC response (parser panic)", code="rpc_error") from exc


class ChainClient:
    """Reads and transactions of one ``balance-payment`` deployment over JSON-RPC.

    ``rpc`` injects a ready :class:`~device.solana.rpc.SolanaRpc` (it is then closed by :meth:`close` too);
    by default a light :class:`~device.solana.rpc.HttpRpc` is made for ``rpc_url`` with ``rpc_timeout`` per
    request and no silent transport retries (a retried ``sendTransaction`` must be a decision of this class,
    not of the HTTP layer).
    """

    def __init__(
        self,
        rpc_url: str,
        *,
        program: ProgramRef,
        namespace_id: int = 0,
        commitment: str = "confirmed",
        confirm_timeout: float = 60.0,
        rpc_timeout: float = 10.0,
        poll_interval: float = 0.5,
        resend_interval: float = DEFAULT_RESEND_INTERVAL,
        legacy_transactions: bool = True,
        rpc: SolanaRpc | None = None,
    ) -> None:
        if commitment not in COMMITMENT_RANK:
            raise ValueError(f"commitment must be one of {', '.join(COMMITMENT_RANK)}, got {commitment!r}")
        if program.version is ProgramVersion.V1 and namespace_id != 0:
            raise ValueError(f"program v1 has no namespaces; namespace_id must be 0, got {namespace_id}")
        self.rpc_url = rpc_url
        self.program = program
        self.namespace_id = namespace_id
        self.commitment = commitment
        self.confirm_timeout = confirm_timeout
        self.poll_interval = poll_interval
        self.resend_interval = resend_interval
        self.legacy_transactions = legacy_transactions
        # Blockhashes and expiry are judged at confirmed at least: a processed block may still be dropped.
        self._expiry_commitment = (
            commitment if COMMITMENT_RANK[commitment] >= COMMITMENT_RANK["confirmed"] else "confirmed"
        )
        self._rpc: SolanaRpc = rpc or HttpRpc(rpc_url, commitment=commitment, timeout=rpc_timeout)
        self._failures: tuple[type[BaseException], ...] = (
            RpcFailure,
            *self._rpc.failures,
            OSError,
            SerdeJSONError,
            ValueError,
        )
        self._rent_exempt_minimum: int | None = None
        self._namespace_name: str | None = None

    async def close(self) -> None:
        await self._rpc.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def version(self) -> ProgramVersion:
        return self.program.version

    @property
    def namespace_name(self) -> str | None:
        """The namespace name last read from chain (v2; needed for the signed text), else None."""
        return self._namespace_name

    # ---------------------------------------------------------------------------------------------- RPC

    async def _call(self, what: str, awaitable: Awaitable[T]) -> T:
        try:
            result = await awaitable
            if type(result) is int:  # solders parses an error object with an unknown code as that code
                raise SettlementError(f"{what}: RPC error {result}", code="rpc_error")
            return result
        except SettlementError:
            raise
        except JsonRpcError as exc:
            raise error_from_rpc_error(
                self.version, code=exc.code, message=exc.message, data=exc.data
            ) from exc
        except self._failures as exc:
            raise error_from_rpc_exception(exc, what) from exc
        except BaseException as exc:
            raise _parser_panic(exc, what) from exc

    async def _accounts(self, keys: Sequence[Pubkey]) -> list[Account | None]:
        resp = await self._call("getMultipleAccounts", self._rpc.get_multiple_accounts(list(keys)))
        accounts = list(resp.value)
        if len(accounts) != len(keys):
            raise SettlementError(
                f"getMultipleAccounts: malformed RPC response ({len(accounts)} accounts, {len(keys)} keys)",
                code="rpc_error",
            )
        return accounts

    def _owned(self, account: Account | None, what: str, address: Pubkey) -> bytes | None:
        if account is None:
            return None
        if account.owner != self.program.program_id:
            raise SettlementError(
                f"{what} {address} is owned by {account.owner}, not the program {self.program.program_id}",
                code="account_owned_by_wrong_program",
            )
        return bytes(account.data)

    def _decode(self, cls: type[T], data: bytes, what: str) -> T:
        try:
            return cls.decode(data)  # type: ignore[attr-defined,no-any-return]
        except ProgramError as exc:
            raise SettlementError(f"{what}: {exc.message}", code=exc.code) from exc

    def _operator_address(self) -> Pubkey:
        if self.version is ProgramVersion.V1:
            return prog.global_pda(self.program.program_id)
        return prog.namespace_pda(self.program.program_id, self.namespace_id)

    def _decode_operator(self, account: Account | None) -> NamespaceAccount | GlobalAccountV1:
        address = self._operator_address()
        if self.version is ProgramVersion.V1:
            data = self._owned(account, "global account", address)
            if data is None:
                raise SettlementError(
                    f"program {self.program.program_id} is not initialized (no global account at {address})",
                    code="global_not_found",
                )
            return self._decode(GlobalAccountV1, data, "global account")
        data = self._owned(account, f"namespace {self.namespace_id}", address)
        if data is None:
            raise SettlementError(
                f"namespace {self.namespace_id} does not exist (no account at {address})",
                code="namespace_not_found",
            )
        namespace = self._decode(NamespaceAccount, data, f"namespace {self.namespace_id}")
        self._namespace_name = namespace.name
        return namespace

    # ---------------------------------------------------------------------------------------------- reads

    async def user_account(self, user: Pubkey) -> UserAccount | None:
        """The user's ``UserAccount``, or None when the user has not registered."""
        address = prog.user_pda(self.program.program_id, user)
        (account,) = await self._accounts([address])
        data = self._owned(account, "user account", address)
        return None if data is None else self._decode(UserAccount, data, "user account")

    async def vault_balance(self, user: Pubkey) -> int:
        """Lamports in the user's vault (0 when it does not exist)."""
        vault = prog.vault_pda(self.program.program_id, user)
        return int((await self._call("getBalance", self._rpc.get_balance(vault))).value)

    async def balance(self, user: Pubkey) -> UserBalance:
        """``UserAccount``, vault and wallet of ``user`` in one ``getMultipleAccounts``."""
        pid = self.program.program_id
        address = prog.user_pda(pid, user)
        account, vault, wallet = await self._accounts([address, prog.vault_pda(pid, user), user])
        data = self._owned(account, "user account", address)
        user_account = None if data is None else self._decode(UserAccount, data, "user account")
        return UserBalance(
            registered=user_account is not None,
            vault_lamports=vault.lamports if vault is not None else 0,
            locked_lamports=user_account.locked_amount if user_account is not None else 0,
            nonce=user_account.nonce if user_account is not None else 0,
            wallet_lamports=wallet.lamports if wallet is not None else 0,
        )

    async def available(self, user: Pubkey) -> int:
        """Lamports ``pay`` may take now: vault − locked (0 when the user is not registered)."""
        return (await self.balance(user)).available

    async def namespace(self) -> NamespaceAccount:
        """The configured namespace (v2); remembers its name for :attr:`namespace_name`."""
        if self.version is not ProgramVersion.V2:
            raise SettlementError("program v1 has no namespaces", code="argument_invalid")
        (account,) = await self._accounts([self._operator_address()])
        operator = self._decode_operator(account)
        assert isinstance(operator, NamespaceAccount)
        return operator

    async def global_account(self) -> GlobalAccountV1 | GlobalAccountV2:
        """The program's global account (v1: authority/bot/treasury; v2: the namespace counter)."""
        address = prog.global_pda(self.program.program_id)
        (account,) = await self._accounts([address])
        data = self._owned(account, "global account", address)
        if data is None:
            raise SettlementError(
                f"program {self.program.program_id} is not initialized (no global account at {address})",
                code="global_not_found",
            )
        cls: type[GlobalAccountV1 | GlobalAccountV2] = (
            GlobalAccountV1 if self.version is ProgramVersion.V1 else GlobalAccountV2
        )
        return self._decode(cls, data, "global account")

    async def operator(self) -> NamespaceAccount | GlobalAccountV1:
        """The account holding the bot and treasury: the namespace (v2) or the global account (v1)."""
        (account,) = await self._accounts([self._operator_address()])
        return self._decode_operator(account)

    async def rent_exempt_minimum(self) -> int:
        """Lamports a 0-byte account (the vault) needs to be rent exempt (asked once, then cached)."""
        if self._rent_exempt_minimum is None:
            resp = await self._call(
                "getMinimumBalanceForRentExemption", self._rpc.get_minimum_balance_for_rent_exemption(0)
            )
            self._rent_exempt_minimum = int(resp.value)
        return self._rent_exempt_minimum

    async def latest_blockhash(self) -> tuple[Hash, int]:
        """(blockhash, last valid block height) at ``confirmed`` or stronger."""
        resp = await self._call("getLatestBlockhash", self._rpc.get_latest_blockhash(self._expiry_commitment))
        return _read(
            "getLatestBlockhash", lambda: (resp.value.blockhash, int(resp.value.last_valid_block_height))
        )

    async def block_height(self) -> int:
        """The block height at ``confirmed`` or stronger (what blockhash expiry is judged by)."""
        resp = await self._call("getBlockHeight", self._rpc.get_block_height(self._expiry_commitment))
        return int(resp.value)

    async def wallet_balance(self, pubkey: Pubkey) -> int:
        return int((await self._call("getBalance", self._rpc.get_balance(pubkey))).value)

    async def node_version(self) -> str:
        """The node's ``solana-core`` version string (the stand-in's contains ``localnet``)."""
        resp = await self._call("getVersion", self._rpc.get_version())
        return str(resp.value.solana_core)

    async def request_airdrop(self, pubkey: Pubkey, lamports: int) -> TxOutcome:
        """Ask the node for lamports (test networks only) and wait for the airdrop to land."""
        resp = await self._call("requestAirdrop", self._rpc.request_airdrop(pubkey, lamports))
        signature = resp.value
        _, last_valid = await self.latest_blockhash()
        loop = asyncio.get_running_loop()
        return await self._await_outcome(
            signature, last_valid, tx_bytes=None, deadline=loop.time() + self.confirm_timeout
        )

    # ---------------------------------------------------------------------------------------------- writes

    async def sign_transaction(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair]
    ) -> SignedTransaction:
        """Sign ``instructions`` with a fresh blockhash; ``signers[0]`` pays the fee."""
        blockhash, last_valid = await self.latest_blockhash()
        tx = _sign(instructions, signers, blockhash, legacy=self.legacy_transactions)
        return SignedTransaction(str(tx.signatures[0]), bytes(tx), last_valid)

    async def send_and_confirm(
        self, instructions: Sequence[Instruction], signers: Sequence[Keypair]
    ) -> TxOutcome:
        """:meth:`sign_transaction` then :meth:`submit` (for one-shot commands such as the user CLI)."""
        return await self.submit(await self.sign_transaction(instructions, signers))

    async def _send_raw(self, tx_bytes: bytes) -> str:
        """``sendTransaction`` with preflight at the configured commitment; raw JSON-RPC so that the error
        object reaches :func:`error_from_rpc_error` intact."""
        result = await self._call(
            "sendTransaction", self._rpc.send_transaction(tx_bytes, preflight_commitment=self.commitment)
        )
        return str(result)

    async def submit(self, signed: SignedTransaction) -> TxOutcome:
        """Send ``signed`` (preflight on) and wait for the configured commitment within ``confirm_timeout``.

        Returns ``landed``, or ``failed`` with a typed error (landed with a program error; refused by the
        node -- a JSON-RPC error such as a preflight failure; blockhash expired).  ``already_processed`` in
        preflight means an earlier send landed: the status is then awaited like any other.  Raises
        :class:`ChainUnavailable` (with the signature) when the node cannot be reached or the outcome is not
        known in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.confirm_timeout
        signature = Signature.from_string(signed.signature)
        try:
            await self._send_raw(signed.tx_bytes)
        except ChainUnavailable as exc:
            if not exc.may_have_arrived:
                raise self._unavailable(exc, signed.signature, signed.last_valid_block_height) from exc
            # The node may have it (response lost): find out by polling, re-sending the same bytes.
        except SettlementError as exc:
            # Only the node's own JSON-RPC refusal proves the transaction was not taken; an HTTP error or an
            # unreadable answer (a proxy in between) does not, so those are looked up like a lost response.
            if exc.rpc_code is not None and exc.code != "already_processed":
                exc.signature = signed.signature
                return TxOutcome(TxStatus.FAILED, signed.signature, error=exc)
        return await self._await_outcome(
            signature, signed.last_valid_block_height, tx_bytes=signed.tx_bytes, deadline=deadline
        )

    async def resume(
        self, signature: str, last_valid_block_height: int, *, tx_bytes: bytes | None = None
    ) -> TxOutcome:
        """Find out what became of a transaction sent before a restart.

        Landed → ``landed`` (or ``failed`` with its program error); no status and the blockhash expired →
        ``failed`` with ``blockhash_expired``; otherwise wait (re-sending ``tx_bytes`` if given -- the same
        signature, so it cannot execute twice) until one of those or ``confirm_timeout``.
        """
        loop = asyncio.get_running_loop()
        return await self._await_outcome(
            Signature.from_string(signature),
            last_valid_block_height,
            tx_bytes=tx_bytes,
            deadline=loop.time() + self.confirm_timeout,
            resend_first=True,
        )

    def _unavailable(
        self, exc: SettlementError, signature: str, last_valid_block_height: int
    ) -> ChainUnavailable:
        unavailable = isinstance(exc, ChainUnavailable)
        return ChainUnavailable(
            f"{exc.message}; transaction {signature} outcome unknown, resume later",
            code=exc.code if unavailable else "rpc_unreachable",
            may_have_arrived=exc.may_have_arrived if isinstance(exc, ChainUnavailable) else True,
            signature=signature,
            last_valid_block_height=last_valid_block_height,
        )

    async def _status(self, signature: Signature) -> tuple[int, int | None, object] | None:
        """(confirmation rank, slot, err JSON) of ``signature``, or None when the node has no status."""
        resp = await self._call(
            "getSignatureStatuses",
            self._rpc.get_signature_statuses([signature]),
        )
        status = resp.value[0] if resp.value else None
        if status is None:
            return None
        confirmation = status.confirmation_status
        # No confirmationStatus: a rooted (finalized) transaction found in the ledger history.
        rank = 2 if confirmation is None else int(confirmation)
        err = json.loads(status.to_json()).get("err") if status.err is not None else None
        return rank, status.slot, err

    async def _await_outcome(
        self,
        signature: Signature,
        last_valid_block_height: int,
        *,
        tx_bytes: bytes | None,
        deadline: float,
        resend_first: bool = False,
    ) -> TxOutcome:
        loop = asyncio.get_running_loop()
        sig = str(signature)
        wanted = COMMITMENT_RANK[self.commitment]
        next_resend = loop.time() if resend_first else loop.time() + self.resend_interval
        last_problem: SettlementError | None = None  # why the node could not tell us, if it could not
        while True:
            try:
                status = await self._status(signature)
                if status is not None:
                    rank, slot, err = status
                    if rank >= wanted:
                        if err is None:
                            return TxOutcome(TxStatus.LANDED, sig, slot=slot)
                        error = error_from_transaction_error(self.version, err, landed=True, signature=sig)
                        return TxOutcome(TxStatus.FAILED, sig, slot=slot, error=error)
                elif await self.block_height() > last_valid_block_height:
                    # One last look: it may have landed in the last valid block.
                    if await self._status(signature) is None:
                        return TxOutcome(
                            TxStatus.FAILED,
                            sig,
                            error=SettlementError(
                                f"transaction {sig} never landed: its blockhash expired at block height "
                                f"{last_valid_block_height}",
                                code="blockhash_expired",
                                signature=sig,
                            ),
                        )
                    continue
                elif tx_bytes is not None and loop.time() >= next_resend:
                    next_resend = loop.time() + self.resend_interval
                    await self._resend(tx_bytes)
                last_problem = None
            except SettlementError as exc:  # unreachable, or answering nonsense: the outcome is still open
                last_problem = exc
            if loop.time() >= deadline:
                if last_problem is not None:
                    raise self._unavailable(last_problem, sig, last_valid_block_height) from last_problem
                raise ChainUnavailable(
                    f"transaction {sig} not confirmed ({self.commitment}) within {self.confirm_timeout:g} s; "
                    "resume later",
                    code="rpc_timeout",
                    signature=sig,
                    last_valid_block_height=last_valid_block_height,
                )
            await asyncio.sleep(min(self.poll_interval, max(0.0, deadline - loop.time())))

    async def _resend(self, tx_bytes: bytes) -> None:
        """Send the same bytes again.  A preflight refusal now proves nothing (the first copy may have just
        executed and moved the nonce), so it is ignored: only a status or blockhash expiry decides."""
        try:
            await self._send_raw(tx_bytes)
        except ChainUnavailable:
            raise
        except SettlementError:
            pass


class SettlementClient(ChainClient):
    """:class:`ChainClient` for the device: the ``bot`` keypair signs and pays for ``pay`` transactions."""

    def __init__(
        self,
        rpc_url: str,
        *,
        program: ProgramRef,
        namespace_id: int,
        commitment: str,
        confirm_timeout: float,
        bot: Keypair,
        rpc_timeout: float = 10.0,
        poll_interval: float = 0.5,
        resend_interval: float = DEFAULT_RESEND_INTERVAL,
        legacy_transactions: bool = True,
        rpc: SolanaRpc | None = None,
    ) -> None:
        if rpc is None:
            from device.solana.rpc_solana_py import SolanaPyRpc  # the agent's pooled HTTP/2 client

            rpc = SolanaPyRpc(rpc_url, commitment=commitment, timeout=rpc_timeout)
        super().__init__(
            rpc_url,
            program=program,
            namespace_id=namespace_id,
            commitment=commitment,
            confirm_timeout=confirm_timeout,
            rpc_timeout=rpc_timeout,
            poll_interval=poll_interval,
            resend_interval=resend_interval,
            legacy_transactions=legacy_transactions,
            rpc=rpc,
        )
        self.bot = bot

    @classmethod
    def from_config(
        cls, config: SolanaConfig, bot: Keypair, *, rpc_url: str | None = None, **options: Any
    ) -> Self:
        """A client for the ``solana`` section of the configuration.

        ``rpc_url`` overrides ``solana.rpc_url``; it is required when the config says ``embedded`` (the
        embedded chain's URL is only known at run time).
        """
        url = rpc_url or config.rpc_url
        if url == "embedded":
            raise SettlementError(
                "solana.rpc_url is 'embedded': pass the URL of the embedded chain", code="argument_invalid"
            )
        program = config.program_ref
        return cls(
            url,
            program=program,
            namespace_id=config.namespace_id,
            commitment=config.commitment,
            confirm_timeout=float(config.confirm_timeout_seconds),
            bot=bot,
            **options,
        )

    async def check_bot(self) -> NamespaceAccount | GlobalAccountV1:
        """Raise ``bot_not_registered`` unless the configured bot is the namespace's (v2) / global (v1) bot;
        returns that account (and, v2, remembers the namespace name)."""
        operator = await self.operator()
        if operator.bot != self.bot.pubkey():
            raise SettlementError(
                f"bot {self.bot.pubkey()} is not the {_operator_what(self.program, self.namespace_id)} bot "
                f"({operator.bot}); register it with the namespace authority",
                code="bot_not_registered",
            )
        return operator

    async def pay_context(self, user: Pubkey) -> PayContext:
        """Everything :func:`build_signed_pay` needs, in two concurrent requests (plus the rent minimum,
        asked once)."""
        pid = self.program.program_id
        user_address = prog.user_pda(pid, user)
        accounts, (blockhash, last_valid), rent = await asyncio.gather(
            self._accounts([self._operator_address(), user_address, prog.vault_pda(pid, user)]),
            self.latest_blockhash(),
            self.rent_exempt_minimum(),
        )
        operator = self._decode_operator(accounts[0])
        data = self._owned(accounts[1], "user account", user_address)
        return PayContext(
            operator=operator,
            user_account=None if data is None else self._decode(UserAccount, data, "user account"),
            vault_lamports=accounts[2].lamports if accounts[2] is not None else 0,
            blockhash=blockhash,
            last_valid_block_height=last_valid,
            rent_exempt_minimum=rent,
        )

    async def prepare_pay(
        self,
        user: Pubkey,
        auth: ED25519RecoverInfo | RecoverInfo,
        *,
        payload_nonce: int,
        amount: int,
        now: int,
    ) -> SignedPay:
        """Read the chain, verify the authorization locally, and return the signed ``pay`` (not sent).

        Raises :class:`~device.solana.authorization.AuthorizationError` or :class:`SettlementError` (see
        :func:`build_signed_pay`) without sending anything; :class:`ChainUnavailable` when the node cannot
        be read.  Persist the result's ``signature`` and ``last_valid_block_height`` before :meth:`submit`.
        """
        ctx = await self.pay_context(user)
        return build_signed_pay(
            self.program,
            namespace_id=self.namespace_id,
            bot=self.bot,
            ctx=ctx,
            user=user,
            auth=auth,
            payload_nonce=payload_nonce,
            amount=amount,
            now=now,
            legacy=self.legacy_transactions,
        )


def _parser_panic(exc: BaseException, what: str) -> SettlementError:
    """solders' Rust parser panics (pyo3 ``PanicException``, a BaseException) on some malformed replies,
    e.g. a -32002 error without "data" or a blockhash of the wrong size: an unreadable answer
    (``rpc_error``), not a crash.  Anything else is re-raised."""
    if type(exc).__name__ != "PanicException":
        raise exc
    return SettlementError(f"{what}: malformed RPC response (parser panic)", code="rpc_error")
