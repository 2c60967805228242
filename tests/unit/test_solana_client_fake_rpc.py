"""A scripted Solana JSON-RPC server on 127.0.0.1 for the settlement client's unit tests (and its own tests).

The transport is real (aiohttp HTTP/1.1 on loopback, solana-py's ``AsyncClient`` on the other side); the
"chain" is a handful of dictionaries.  Tests either let the default handlers answer reads from ``accounts``,
``statuses`` and ``block_height``, or script exact replies per method -- recorded-shape JSON-RPC fixtures,
errors, delays and dropped connections, i.e. the shapes a chain stand-in cannot produce.

Scripted replies for one method are consumed in order; the last one repeats.  Every request is recorded in
``calls`` as ``(method, params)``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from solders.pubkey import Pubkey


@dataclass(frozen=True)
class Result:
    """Answer ``{"result": value}``."""

    value: Any


@dataclass(frozen=True)
class Error:
    """Answer ``{"error": {"code", "message", "data"?}}``."""

    code: int
    message: str
    data: Any = None


@dataclass(frozen=True)
class Raw:
    """Answer this exact HTTP body (``status`` defaults to 200)."""

    body: str
    status: int = 200


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering (the request did arrive: ``effect`` runs first)."""

    effect: Callable[[], None] | None = None


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds``, then answer ``then``."""

    seconds: float
    then: Any


@dataclass(frozen=True)
class Call:
    """Answer whatever ``fn(params)`` returns (a Result/Error/... or a plain value = Result)."""

    fn: Callable[[list[Any]], Any]


@dataclass
class FakeAccount:
    lamports: int
    owner: Pubkey
    data: bytes = b""

    def json(self) -> dict[str, Any]:
        return {
            "lamports": self.lamports,
            "owner": str(self.owner),
            "data": [base64.b64encode(self.data).decode(), "base64"],
            "executable": False,
            "rentEpoch": 18446744073709551615,
            "space": len(self.data),
        }


SYSTEM = Pubkey.from_string("11111111111111111111111111111111")
BLOCKHASH = "EkSnNWid2cvwEVnVx9aBqawnmiCNiDgp3gUdkDPTKN1N"


@dataclass
class FakeRpc:
    """The scripted server.  ``await start()``, use ``url``, ``await stop()``."""

    accounts: dict[Pubkey, FakeAccount] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    block_height: int = 100
    last_valid_block_height: int = 250
    blockhash: str = BLOCKHASH
    solana_core: str = "2.2.0"
    rent_exempt_minimum: int = 890_880
    calls: list[tuple[str, list[Any]]] = field(default_factory=list)
    scripts: dict[str, list[Any]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    url: str = ""

    # ------------------------------------------------------------------ scripting

    def script(self, method: str, *replies: Any) -> None:
        self.scripts[method] = list(replies)

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    def land(self, signature: str, *, err: Any = None, slot: int = 7, status: str = "finalized") -> None:
        """Make ``signature`` known with ``err`` at ``status``."""
        self.statuses[signature] = {
            "slot": slot,
            "confirmations": None if status == "finalized" else 1,
            "err": err,
            "status": {"Ok": None} if err is None else {"Err": err},
            "confirmationStatus": status,
        }

    # ------------------------------------------------------------------ server

    async def start(self) -> FakeRpc:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.text())
        method, params, rid = body["method"], body.get("params") or [], body.get("id", 1)
        self.calls.append((method, params))
        queue = self.scripts.get(method)
        reply = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else self._default(method, params)
        while True:
            if isinstance(reply, Delay):
                await asyncio.sleep(reply.seconds)
                reply = reply.then
            elif isinstance(reply, Call):
                reply = reply.fn(params)
            else:
                break
        if isinstance(reply, Drop):
            if reply.effect is not None:
                reply.effect()
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # aiohttp stops handling this request
        if isinstance(reply, Raw):
            return web.Response(text=reply.body, status=reply.status, content_type="application/json")
        if isinstance(reply, Error):
            error: dict[str, Any] = {"code": reply.code, "message": reply.message}
            if reply.data is not None:
                error["data"] = reply.data
            return web.json_response({"jsonrpc": "2.0", "id": rid, "error": error})
        value = reply.value if isinstance(reply, Result) else reply
        return web.json_response({"jsonrpc": "2.0", "id": rid, "result": value})

    def _ctx(self, value: Any) -> Result:
        return Result({"context": {"slot": self.block_height + 10, "apiVersion": "2.2.0"}, "value": value})

    def _default(self, method: str, params: list[Any]) -> Any:
        if method == "getHealth":
            return Result("ok")
        if method == "getVersion":
            return Result({"solana-core": self.solana_core, "feature-set": 3294202862})
        if method == "getLatestBlockhash":
            return self._ctx(
                {"blockhash": self.blockhash, "lastValidBlockHeight": self.last_valid_block_height}
            )
        if method == "getBlockHeight":
            return Result(self.block_height)
        if method == "getMinimumBalanceForRentExemption":
            return Result(self.rent_exempt_minimum)
        if method == "getMultipleAccounts":
            found = [self.accounts.get(Pubkey.from_string(key)) for key in params[0]]
            return self._ctx([None if a is None else a.json() for a in found])
        if method == "getAccountInfo":
            account = self.accounts.get(Pubkey.from_string(params[0]))
            return self._ctx(None if account is None else account.json())
        if method == "getBalance":
            account = self.accounts.get(Pubkey.from_string(params[0]))
            return self._ctx(0 if account is None else account.lamports)
        if method == "getSignatureStatuses":
            return self._ctx([self.statuses.get(sig) for sig in params[0]])
        return Error(-32601, "Method not found")


@pytest.fixture
async def fake_rpc() -> Any:
    server = await FakeRpc().start()
    try:
        yield server
    finally:
        await server.stop()


# ---------------------------------------------------------------------------------------------------------
# The fake's own behaviour (so a broken fake cannot make the client tests pass vacuously)


async def _post(url: str, method: str, params: list[Any] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        async with session.post(url, json=payload) as resp:
            return resp.status, await resp.json()


async def test_unknown_method_is_method_not_found(fake_rpc: FakeRpc) -> None:
    status, body = await _post(fake_rpc.url, "getFooBar")
    assert status == 200
    assert body["error"]["code"] == -32601
    assert fake_rpc.methods() == ["getFooBar"]


async def test_scripted_replies_are_consumed_in_order_and_the_last_repeats(fake_rpc: FakeRpc) -> None:
    fake_rpc.script("getHealth", Result("a"), Error(-32005, "Node is unhealthy"), Result("ok"))
    answers = [(await _post(fake_rpc.url, "getHealth"))[1] for _ in range(4)]
    assert [a.get("result", a.get("error", {}).get("code")) for a in answers] == ["a", -32005, "ok", "ok"]


async def test_drop_closes_the_connection_after_running_the_effect(fake_rpc: FakeRpc) -> None:
    seen: list[str] = []
    fake_rpc.script("sendTransaction", Drop(lambda: seen.append("landed")))
    with pytest.raises(aiohttp.ClientError):
        await _post(fake_rpc.url, "sendTransaction", ["AA=="])
    assert seen == ["landed"]
