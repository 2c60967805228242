"""The bot's ``pay`` transactions read back from a Solana JSON-RPC node, for ledger rebuilds.

Every grant the device ever made was bought by a ``pay`` that its bot signed, so the chain holds the
list of paid grants even when the ledger and the relays do not.  :func:`fetch_pays` walks
``getSignaturesForAddress(bot)`` newest first (pages of up to 1000, ``before`` = the oldest seen), fetches
each successful transaction with ``getTransaction`` (base64, ``maxSupportedTransactionVersion: 0``) and
keeps the ``pay`` instructions of the configured program whose operator account is this namespace (v2) or
the global account (v1) and whose bot is this bot.  :func:`pays_in` is the pure decoding step.

A node keeps only so much history (an RPC without a long ledger, or the stand-in's last 500
transactions after a restart): pays older than what it returns cannot be recovered from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment, Confirmed, Finalized
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcConfirmedTransactionStatusWithSignature
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from device.errors import DeviceError
from device.solana import program as bp

__all__ = ["PAGE_LIMIT", "ChainHistoryError", "PaidRecharge", "fetch_pays", "pays_in"]

PAGE_LIMIT = 1000
"""Signatures per ``getSignaturesForAddress`` page (a node's maximum)."""

_PAY_ACCOUNTS = 8  # operator, user account, user, treasury, vault, bot, payer, system program


class ChainHistoryError(DeviceError):
    """The RPC could not be read (unreachable, or it answered with an error)."""

    code = "rpc_unreachable"


@dataclass(frozen=True, slots=True)
class PaidRecharge:
    """One ``pay`` the bot signed that landed: who paid how many lamports, in which transaction."""

    signature: str  # base58, the transaction's first signature
    user: str  # base58 Solana pubkey whose vault paid
    lamports: int
    block_time: int  # unix seconds (0 when the node does not know it)


def pays_in(
    tx: VersionedTransaction, *, program: bp.ProgramRef, bot: Pubkey, namespace_id: int, block_time: int
) -> list[PaidRecharge]:
    """The ``pay`` instructions of ``tx`` that this bot signed for this program and namespace."""
    message = tx.message
    if not isinstance(message, Message | MessageV0):
        return []
    keys = list(message.account_keys)
    operator = (
        bp.global_pda(program.program_id)
        if program.version is bp.ProgramVersion.V1
        else bp.namespace_pda(program.program_id, namespace_id)
    )
    signature = str(tx.signatures[0])
    found: list[PaidRecharge] = []
    for ix in message.instructions:
        accounts = list(ix.accounts)
        if keys[ix.program_id_index] != program.program_id or len(accounts) < _PAY_ACCOUNTS:
            continue
        if any(index >= len(keys) for index in accounts[:_PAY_ACCOUNTS]):
            continue  # an address-table lookup: never in the bot's own pay
        try:
            args = bp.decode_instruction(program.version, bytes(ix.data))
        except bp.ProgramError:
            continue
        if not isinstance(args, bp.PayArgs) or args.namespace_id != namespace_id:
            continue
        if keys[accounts[0]] != operator or keys[accounts[5]] != bot:
            continue
        found.append(PaidRecharge(signature, str(keys[accounts[2]]), args.amount, block_time))
    return found


async def fetch_pays(
    rpc_url: str,
    *,
    program: bp.ProgramRef,
    bot: Pubkey,
    namespace_id: int,
    commitment: Commitment = Confirmed,
    request_timeout: float = 30.0,
) -> list[PaidRecharge]:
    """Every landed ``pay`` ``bot`` signed that the node at ``rpc_url`` still reports, oldest first."""
    level = Finalized if commitment == Finalized else Confirmed  # history is not served at "processed"
    try:
        async with AsyncClient(rpc_url, commitment=level, timeout=request_timeout) as rpc:
            signatures = await _successful_signatures(rpc, bot, level)
            pays: list[PaidRecharge] = []
            for signature in reversed(signatures):  # oldest first, in the chain's order
                found = (
                    await rpc.get_transaction(
                        signature, encoding="base64", commitment=level, max_supported_transaction_version=0
                    )
                ).value
                if found is None or found.transaction.meta is None or found.transaction.meta.err is not None:
                    continue
                tx = found.transaction.transaction
                if not isinstance(tx, VersionedTransaction):
                    continue
                pays += pays_in(
                    tx, program=program, bot=bot, namespace_id=namespace_id, block_time=found.block_time or 0
                )
    except DeviceError:
        raise
    except Exception as exc:  # httpx2 transport errors, solana-py RPCException, solders parse errors
        raise ChainHistoryError(f"cannot read the bot's transactions from {rpc_url}: {exc}") from exc
    return pays


async def _successful_signatures(rpc: AsyncClient, bot: Pubkey, level: Commitment) -> list[Signature]:
    """Signatures of the bot's landed, successful transactions, newest first, across every page."""
    out: list[Signature] = []
    before: Signature | None = None
    while True:
        page: Sequence[RpcConfirmedTransactionStatusWithSignature] = (
            await rpc.get_signatures_for_address(bot, before=before, limit=PAGE_LIMIT, commitment=level)
        ).value
        out += [entry.signature for entry in page if entry.err is None]
        if len(page) < PAGE_LIMIT:
            return out
        before = page[-1].signature
