""":class:`~device.solana.rpc.SolanaRpc` on solana-py's ``AsyncClient`` (pooled HTTP/2) for the agent.

solana-py, httpx and pydantic are imported here only, so a one-shot command on
:class:`~device.solana.rpc.HttpRpc` never pays for them.  Failures are solana-py's and httpx's own
exceptions (mapped by :func:`device.solana.errors.error_from_rpc_exception`, listed in :attr:`failures`);
a JSON-RPC error answering ``sendTransaction`` becomes :class:`~device.solana.rpc.JsonRpcError`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Final

import httpx2
import pydantic
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solana.rpc.jsonrpc import JsonRpcRequest, SolanaJsonRpcError
from solders.pubkey import Pubkey
from solders.rpc.responses import (
    GetBalanceResp,
    GetBlockHeightResp,
    GetLatestBlockhashResp,
    GetMinimumBalanceForRentExemptionResp,
    GetMultipleAccountsResp,
    GetSignatureStatusesResp,
    GetVersionResp,
    RequestAirdropResp,
)
from solders.signature import Signature

from device.solana.rpc import JsonRpcError

__all__ = ["SolanaPyRpc"]

#: What this stack raises when a request fails (besides ``OSError`` and ``ValueError``).
FAILURES: Final[tuple[type[BaseException], ...]] = (
    SolanaRpcException,
    RPCException,
    httpx2.HTTPError,
    pydantic.ValidationError,
)


class SolanaPyRpc:
    """solana-py's ``AsyncClient`` for ``url`` (``timeout`` per request, no silent transport retries: a
    retried ``sendTransaction`` must be the settlement client's decision, not the HTTP layer's)."""

    failures: Final = FAILURES

    def __init__(
        self,
        url: str,
        *,
        commitment: str = "confirmed",
        timeout: float = 10.0,
        client: AsyncClient | None = None,
    ) -> None:
        self.url = url
        self._client = client or AsyncClient(
            url, commitment=Commitment(commitment), timeout=timeout, max_transport_retries=0
        )

    async def get_multiple_accounts(self, keys: Sequence[Pubkey]) -> GetMultipleAccountsResp:
        return await self._client.get_multiple_accounts(list(keys))

    async def get_balance(self, pubkey: Pubkey) -> GetBalanceResp:
        return await self._client.get_balance(pubkey)

    async def get_minimum_balance_for_rent_exemption(
        self, size: int
    ) -> GetMinimumBalanceForRentExemptionResp:
        return await self._client.get_minimum_balance_for_rent_exemption(size)

    async def get_latest_blockhash(self, commitment: str) -> GetLatestBlockhashResp:
        return await self._client.get_latest_blockhash(Commitment(commitment))

    async def get_block_height(self, commitment: str) -> GetBlockHeightResp:
        return await self._client.get_block_height(Commitment(commitment))

    async def get_version(self) -> GetVersionResp:
        return await self._client.get_version()

    async def request_airdrop(self, pubkey: Pubkey, lamports: int) -> RequestAirdropResp:
        return await self._client.request_airdrop(pubkey, lamports)

    async def get_signature_statuses(self, signatures: Sequence[Signature]) -> GetSignatureStatusesResp:
        return await self._client.get_signature_statuses(list(signatures), search_transaction_history=True)

    async def send_transaction(self, tx_bytes: bytes, *, preflight_commitment: str) -> object:
        """Raw JSON-RPC, so that the error object reaches the caller intact."""
        request = JsonRpcRequest(
            method="sendTransaction",
            params=[
                base64.b64encode(tx_bytes).decode(),
                {"encoding": "base64", "skipPreflight": False, "preflightCommitment": preflight_commitment},
            ],
        )
        try:
            return await self._client.send_rpc_request(request, str)
        except SolanaJsonRpcError as exc:
            raise JsonRpcError(exc.code, exc.message, exc.data) from exc

    async def close(self) -> None:
        await self._client.close()
