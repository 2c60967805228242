"""One-call operator and user setup for tests and demos, through *real* transactions.

Every step is an ordinary signed transaction built with :mod:`device.solana.program` and processed by the
program model -- either in-process (a :class:`~device.localnet.chain.Chain`) or over JSON-RPC (a solana-py
``AsyncClient`` or an RPC URL), so the same helper prepares the stand-in and, unchanged, a real devnet.

- :func:`bootstrap_namespace` (v2): ``initialize`` if the program has no global account yet, then
  ``create_namespace``; returns the new namespace id.
- :func:`bootstrap_global_v1` (v1): ``initialize`` with authority, bot and treasury (idempotent when the
  global account already holds exactly these keys).
- :func:`bootstrap_user`: ``register`` (if needed) then ``deposit``.

With ``fund=True`` (the default) missing SOL is airdropped first: 1 SOL to a payer holding less than
0.1 SOL, and the rent-exempt minimum to an empty treasury (so the first ``pay`` of a small amount does not
fail ``InsufficientFundsForRent``).  Failures raise :class:`~device.localnet.runtime.LocalnetError` with code
``bootstrap_failed`` and the chain's error text.
"""

from __future__ import annotations

from typing import Final, Protocol

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from device.localnet.chain import Chain, PreflightFailure, SignatureVerificationFailure
from device.localnet.runtime import LocalnetError, rent_exempt_minimum
from device.solana import program as bp
from device.solana.program import ProgramRef, ProgramVersion

LAMPORTS_PER_SOL: Final = 1_000_000_000
FUND_BELOW: Final = LAMPORTS_PER_SOL // 10
FUND_AMOUNT: Final = LAMPORTS_PER_SOL
CONFIRM_POLL_SECONDS: Final = 0.05

Target = Chain | AsyncClient | str


class _Link(Protocol):
    async def blockhash(self) -> Hash: ...
    async def account_data(self, key: Pubkey) -> tuple[int, bytes] | None: ...
    async def send(self, tx: VersionedTransaction) -> Signature: ...
    async def airdrop(self, key: Pubkey, lamports: int) -> None: ...


def _failed(message: str) -> LocalnetError:
    return LocalnetError(message, code="bootstrap_failed")


class _ChainLink:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    async def blockhash(self) -> Hash:
        return self.chain.latest_blockhash()[0]

    async def account_data(self, key: Pubkey) -> tuple[int, bytes] | None:
        account = self.chain.account(key)
        return None if account is None else (account.lamports, account.data)

    async def send(self, tx: VersionedTransaction) -> Signature:
        try:
            return self.chain.send_transaction(tx)
        except (PreflightFailure, SignatureVerificationFailure) as exc:
            raise _failed(exc.message) from exc

    async def airdrop(self, key: Pubkey, lamports: int) -> None:
        self.chain.airdrop(key, lamports)


class _RpcLink:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def blockhash(self) -> Hash:
        return (await self.client.get_latest_blockhash(Confirmed)).value.blockhash

    async def account_data(self, key: Pubkey) -> tuple[int, bytes] | None:
        value = (await self.client.get_account_info(key, Confirmed)).value
        return None if value is None else (value.lamports, bytes(value.data))

    async def _confirm(self, signature: Signature) -> None:
        status = (await self.client.confirm_transaction(signature, Confirmed, CONFIRM_POLL_SECONDS)).value[0]
        if status is not None and status.err is not None:
            raise _failed(f"transaction {signature} failed: {status.err}")

    async def send(self, tx: VersionedTransaction) -> Signature:
        try:
            signature = (
                await self.client.send_transaction(
                    tx, TxOpts(skip_confirmation=True, preflight_commitment=Confirmed)
                )
            ).value
        except RPCException as exc:
            raise _failed(str(exc)) from exc
        await self._confirm(signature)
        return signature

    async def airdrop(self, key: Pubkey, lamports: int) -> None:
        try:
            signature = (await self.client.request_airdrop(key, lamports, Confirmed)).value
        except RPCException as exc:
            raise _failed(str(exc)) from exc
        await self._confirm(signature)


class _Session:
    """A link plus the client it owns (when the target was a URL)."""

    def __init__(self, target: Target) -> None:
        self._owned: AsyncClient | None = None
        if isinstance(target, Chain):
            self.link: _Link = _ChainLink(target)
        elif isinstance(target, AsyncClient):
            self.link = _RpcLink(target)
        else:
            self._owned = AsyncClient(target)
            self.link = _RpcLink(self._owned)

    async def __aenter__(self) -> _Link:
        return self.link

    async def __aexit__(self, *exc: object) -> None:
        if self._owned is not None:
            await self._owned.close()


async def _send(
    link: _Link, payer: Keypair, instructions: list[Instruction], signers: list[Keypair]
) -> Signature:
    message = Message.new_with_blockhash(instructions, payer.pubkey(), await link.blockhash())
    unique = {bytes(k.pubkey()): k for k in [payer, *signers]}
    return await link.send(VersionedTransaction(message, list(unique.values())))


async def _fund(link: _Link, key: Pubkey, *, below: int, amount: int) -> None:
    found = await link.account_data(key)
    if (0 if found is None else found[0]) < below:
        await link.airdrop(key, amount)


async def _fund_treasury(link: _Link, treasury: Pubkey) -> None:
    if await link.account_data(treasury) is None:
        await link.airdrop(treasury, rent_exempt_minimum(0))


async def bootstrap_namespace(
    target: Target,
    authority: Keypair,
    bot: Pubkey,
    treasury: Pubkey,
    name: str,
    *,
    program: ProgramRef | None = None,
    fund: bool = True,
) -> int:
    """v2 operator setup: ``initialize`` (once per program) + ``create_namespace``; returns its id.

    ``authority`` pays and becomes the namespace authority; ``bot`` will sign ``lock``/``settle``/``pay``,
    ``treasury`` receives the payments.
    """
    ref = program or ProgramRef.default(ProgramVersion.V2)
    if ref.version is not ProgramVersion.V2:
        raise _failed("bootstrap_namespace needs the v2 program (v1 has no namespaces: bootstrap_global_v1)")
    async with _Session(target) as link:
        if fund:
            await _fund(link, authority.pubkey(), below=FUND_BELOW, amount=FUND_AMOUNT)
            await _fund_treasury(link, treasury)
        global_key = bp.global_pda(ref.program_id)
        if await link.account_data(global_key) is None:
            await _send(link, authority, [bp.initialize(ref, payer=authority.pubkey())], [])
        found = await link.account_data(global_key)
        assert found is not None
        namespace_id = bp.GlobalAccountV2.decode(found[1]).namespace_nonce
        ix = bp.create_namespace(
            ref,
            namespace_id=namespace_id,
            name=name,
            authority=authority.pubkey(),
            treasury=treasury,
            bot=bot,
            payer=authority.pubkey(),
        )
        await _send(link, authority, [ix], [])
        return namespace_id


async def bootstrap_global_v1(
    target: Target,
    authority: Keypair,
    bot: Pubkey,
    treasury: Pubkey,
    *,
    program: ProgramRef | None = None,
    fund: bool = True,
) -> None:
    """v1 operator setup: ``initialize`` storing authority, bot and treasury (one operator per program)."""
    ref = program or ProgramRef.default(ProgramVersion.V1)
    if ref.version is not ProgramVersion.V1:
        raise _failed("bootstrap_global_v1 needs the v1 program")
    async with _Session(target) as link:
        if fund:
            await _fund(link, authority.pubkey(), below=FUND_BELOW, amount=FUND_AMOUNT)
            await _fund_treasury(link, treasury)
        global_key = bp.global_pda(ref.program_id)
        found = await link.account_data(global_key)
        if found is not None:
            current = bp.GlobalAccountV1.decode(found[1])
            if (current.authority, current.bot, current.treasury) != (authority.pubkey(), bot, treasury):
                raise _failed(
                    f"v1 program {ref.program_id} is already initialized with bot {current.bot} "
                    f"and treasury {current.treasury}"
                )
            return
        ix = bp.initialize(
            ref, payer=authority.pubkey(), authority=authority.pubkey(), treasury=treasury, bot=bot
        )
        await _send(link, authority, [ix], [])


async def bootstrap_user(
    target: Target,
    user: Keypair,
    deposit: int,
    *,
    program: ProgramRef,
    fund: bool = True,
) -> None:
    """User setup as the dApp does it (wallet = user = payer): ``register`` if needed, then ``deposit``."""
    async with _Session(target) as link:
        if fund:
            need = deposit + rent_exempt_minimum(bp.UserAccount.SIZE) + FUND_BELOW
            await _fund(link, user.pubkey(), below=need, amount=need + FUND_AMOUNT)
        instructions = []
        if await link.account_data(bp.user_pda(program.program_id, user.pubkey())) is None:
            instructions.append(bp.register(program, user=user.pubkey(), payer=user.pubkey()))
        if deposit > 0:
            instructions.append(bp.deposit(program, user=user.pubkey(), payer=user.pubkey(), amount=deposit))
        if instructions:
            await _send(link, user, instructions, [])
