"""The JSON-RPC calls :class:`~device.solana.client.ChainClient` makes, and a light transport for them.

:class:`SolanaRpc` is the narrow interface the client needs (ten calls).  Two implementations:

- :class:`HttpRpc` (here): the standard library's :mod:`urllib.request` in a worker thread (one
  connection per request, no transport retries, ``HTTPS_PROXY``/``NO_PROXY`` honoured as httpx does) with
  solders' own request bodies and response parsers -- the same ``solders.rpc`` types solana-py sends and
  parses, without solana-py, httpx and pydantic (about 0.3 s of CPU on the development VM, more on a
  Pi).  The default of :class:`~device.solana.client.ChainClient`, so of the user commands.
- :class:`~device.solana.rpc_solana_py.SolanaPyRpc`: solana-py's ``AsyncClient`` (pooled HTTP/2
  connections) for the long-running agent.

Every failure of the request itself is an :class:`RpcFailure`, transport-neutral, mapped to a settlement
error by :func:`device.solana.errors.error_from_rpc_exception`; a JSON-RPC ``error`` object answering
``sendTransaction`` is a :class:`JsonRpcError` carrying it intact (:func:`~device.solana.errors.
error_from_rpc_error` reads the preflight result from it).  Why not an HTTP library: the well-kept
async ones (httpx, aiohttp) are the import cost this module avoids; the protocol work (bodies, parsing)
is a library's -- solders'.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Final, Protocol, TypeVar
from urllib.parse import urlsplit

from solders.commitment_config import CommitmentLevel
from solders.errors import SerdeJSONError
from solders.pubkey import Pubkey
from solders.rpc.config import (
    RpcAccountInfoConfig,
    RpcContextConfig,
    RpcRequestAirdropConfig,
    RpcSignatureStatusConfig,
)
from solders.rpc.requests import (
    Body,
    GetBalance,
    GetBlockHeight,
    GetLatestBlockhash,
    GetMinimumBalanceForRentExemption,
    GetMultipleAccounts,
    GetSignatureStatuses,
    GetVersion,
    RequestAirdrop,
)
from solders.rpc.responses import (
    GetBalanceResp,
    GetBlockHeightResp,
    GetLatestBlockhashResp,
    GetMinimumBalanceForRentExemptionResp,
    GetMultipleAccountsResp,
    GetSignatureStatusesResp,
    GetVersionResp,
    RequestAirdropResp,
    RPCError,
)
from solders.signature import Signature

__all__ = [
    "HttpRpc",
    "JsonRpcError",
    "RpcConnectError",
    "RpcErrorReply",
    "RpcFailure",
    "RpcHttpStatus",
    "RpcMalformed",
    "RpcTimeout",
    "SolanaRpc",
]

R = TypeVar("R")

COMMITMENT_LEVELS: Final = {
    "processed": CommitmentLevel.Processed,
    "confirmed": CommitmentLevel.Confirmed,
    "finalized": CommitmentLevel.Finalized,
}
_RPC_ERRORS: Final = RPCError.__args__  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------------------
# Failures


class RpcFailure(Exception):
    """A JSON-RPC request failed; the subclass says how (the outcome of a write is then unknown)."""


class RpcConnectError(RpcFailure):
    """The connection could not be opened: the request certainly never reached the node."""


class RpcTimeout(RpcFailure):
    """The node did not answer in time."""


class RpcHttpStatus(RpcFailure):
    """The node (or a proxy) answered an HTTP error ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class RpcMalformed(RpcFailure):
    """The answer is not the JSON-RPC response expected."""


class RpcErrorReply(RpcFailure):
    """The node answered a JSON-RPC error to a read; ``detail`` is solders' parsed error (``message``)."""

    def __init__(self, detail: object) -> None:
        super().__init__(str(getattr(detail, "message", detail)))
        self.detail = detail


class JsonRpcError(Exception):
    """A JSON-RPC ``error`` object answering ``sendTransaction``, intact: ``code``, ``message``, ``data``."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


# ----------------------------------------------------------------------------------------------------------
# Interface


class SolanaRpc(Protocol):
    """The calls :class:`~device.solana.client.ChainClient` makes; results are solders response objects."""

    @property
    def failures(self) -> tuple[type[BaseException], ...]:
        """Exceptions besides :class:`RpcFailure` that mean the request failed (the stack's own)."""
        ...

    async def get_multiple_accounts(self, keys: Sequence[Pubkey]) -> GetMultipleAccountsResp: ...

    async def get_balance(self, pubkey: Pubkey) -> GetBalanceResp: ...

    async def get_minimum_balance_for_rent_exemption(
        self, size: int
    ) -> GetMinimumBalanceForRentExemptionResp: ...

    async def get_latest_blockhash(self, commitment: str) -> GetLatestBlockhashResp: ...

    async def get_block_height(self, commitment: str) -> GetBlockHeightResp: ...

    async def get_version(self) -> GetVersionResp: ...

    async def request_airdrop(self, pubkey: Pubkey, lamports: int) -> RequestAirdropResp: ...

    async def get_signature_statuses(self, signatures: Sequence[Signature]) -> GetSignatureStatusesResp:
        """Statuses searching the transaction history too."""
        ...

    async def send_transaction(self, tx_bytes: bytes, *, preflight_commitment: str) -> object:
        """``sendTransaction`` (base64, preflight on): its ``result`` (the signature), else
        :class:`JsonRpcError`."""
        ...

    async def close(self) -> None: ...


# ----------------------------------------------------------------------------------------------------------
# The light transport


class HttpRpc:
    """:class:`SolanaRpc` over :mod:`urllib.request`: one POST per call, ``timeout`` s each, no retries."""

    failures: tuple[type[BaseException], ...] = ()

    def __init__(self, url: str, *, commitment: str = "confirmed", timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) JSON-RPC URL: {url!r}")
        self.url = url
        self._commitment = COMMITMENT_LEVELS[commitment]
        self._timeout = timeout

    async def get_multiple_accounts(self, keys: Sequence[Pubkey]) -> GetMultipleAccountsResp:
        from solders.account_decoder import UiAccountEncoding

        config = RpcAccountInfoConfig(encoding=UiAccountEncoding.Base64, commitment=self._commitment)
        return await self._request(GetMultipleAccounts(list(keys), config), GetMultipleAccountsResp)

    async def get_balance(self, pubkey: Pubkey) -> GetBalanceResp:
        body = GetBalance(pubkey, RpcContextConfig(commitment=self._commitment))
        return await self._request(body, GetBalanceResp)

    async def get_minimum_balance_for_rent_exemption(
        self, size: int
    ) -> GetMinimumBalanceForRentExemptionResp:
        body = GetMinimumBalanceForRentExemption(size, self._commitment)
        return await self._request(body, GetMinimumBalanceForRentExemptionResp)

    async def get_latest_blockhash(self, commitment: str) -> GetLatestBlockhashResp:
        body = GetLatestBlockhash(RpcContextConfig(commitment=COMMITMENT_LEVELS[commitment]))
        return await self._request(body, GetLatestBlockhashResp)

    async def get_block_height(self, commitment: str) -> GetBlockHeightResp:
        body = GetBlockHeight(RpcContextConfig(commitment=COMMITMENT_LEVELS[commitment]))
        return await self._request(body, GetBlockHeightResp)

    async def get_version(self) -> GetVersionResp:
        return await self._request(GetVersion(), GetVersionResp)

    async def request_airdrop(self, pubkey: Pubkey, lamports: int) -> RequestAirdropResp:
        body = RequestAirdrop(pubkey, lamports, RpcRequestAirdropConfig(commitment=self._commitment))
        return await self._request(body, RequestAirdropResp)

    async def get_signature_statuses(self, signatures: Sequence[Signature]) -> GetSignatureStatusesResp:
        body = GetSignatureStatuses(list(signatures), RpcSignatureStatusConfig(True))
        return await self._request(body, GetSignatureStatusesResp)

    async def send_transaction(self, tx_bytes: bytes, *, preflight_commitment: str) -> object:
        request = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "sendTransaction",
            "params": [
                base64.b64encode(tx_bytes).decode(),
                {"encoding": "base64", "skipPreflight": False, "preflightCommitment": preflight_commitment},
            ],
        }
        text = await self._post(json.dumps(request))
        try:
            reply = json.loads(text)
        except ValueError as exc:
            raise RpcMalformed(f"not JSON: {exc}") from exc
        if not isinstance(reply, dict):
            raise RpcMalformed("not a JSON-RPC response object")
        error = reply.get("error")
        if error is not None:
            if not (isinstance(error, dict) and isinstance(error.get("code"), int) and "message" in error):
                raise RpcMalformed(f"malformed JSON-RPC error object: {error!r:.200}")
            raise JsonRpcError(error["code"], str(error["message"]), error.get("data"))
        if "result" not in reply:
            raise RpcMalformed("neither result nor error")
        return reply["result"]

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own connection."""

    async def _request(self, body: Body, parser: type[R]) -> R:
        text = await self._post(body.to_json())
        try:
            parsed = parser.from_json(text)  # type: ignore[attr-defined]
        except (SerdeJSONError, ValueError) as exc:
            raise RpcMalformed(f"{type(exc).__name__}: {exc}") from exc
        if isinstance(parsed, _RPC_ERRORS):
            raise RpcErrorReply(parsed)
        return parsed  # type: ignore[no-any-return]

    async def _post(self, content: str) -> str:
        return await asyncio.to_thread(self._post_blocking, content.encode())

    def _post_blocking(self, content: bytes) -> str:
        request = urllib.request.Request(
            self.url, data=content, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                raw: bytes = response.read()
        except urllib.error.HTTPError as exc:
            raise RpcHttpStatus(exc.code) from exc
        except urllib.error.URLError as exc:  # raised by the connection and the request alike
            reason = exc.reason
            if isinstance(reason, ConnectionRefusedError | socket.gaierror):  # never got to send it
                raise RpcConnectError(f"{type(reason).__name__}: {reason}") from exc
            if isinstance(reason, TimeoutError):
                raise RpcTimeout("the RPC node did not answer in time") from exc
            raise RpcFailure(f"{type(reason).__name__}: {reason}") from exc
        except TimeoutError as exc:
            raise RpcTimeout("the RPC node did not answer in time") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise RpcFailure(f"{type(exc).__name__}: {exc}") from exc
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise RpcMalformed("the answer is not UTF-8") from exc
