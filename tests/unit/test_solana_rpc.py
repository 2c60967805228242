"""The light JSON-RPC transport (:class:`device.solana.rpc.HttpRpc`), the chain client's default.

Against the fake node (tests/fixtures/rpc.py): the requests it sends, and every way a request can fail
mapped to the same codes as on the agent's solana-py transport (tests/unit/test_solana_client.py pins
those; tests/fuzz/test_solana_fuzz.py runs both transports against drawn replies).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from solders.keypair import Keypair

from device.solana.client import ChainClient, SignedTransaction, TxStatus
from device.solana.errors import ChainUnavailable, SettlementError
from device.solana.program import ProgramRef, ProgramVersion
from device.solana.rpc import HttpRpc
from tests.fixtures.rpc import Delay, Drop, Error, FakeRpc, Raw, Result

USER = Keypair().pubkey()
SIGNED = SignedTransaction(str(Keypair().sign_message(b"rpc")), b"\x01" * 120, 200)


def make_client(fake_rpc: FakeRpc, **options: Any) -> ChainClient:
    settings: dict[str, Any] = {"confirm_timeout": 0.5, "rpc_timeout": 1.0, "poll_interval": 0.01, **options}
    return ChainClient(fake_rpc.url, program=ProgramRef.default(ProgramVersion.V2), **settings)


@pytest.fixture
async def client(fake_rpc: FakeRpc) -> AsyncIterator[ChainClient]:
    async with make_client(fake_rpc) as c:
        yield c


def test_the_chain_client_talks_through_the_light_transport_by_default(fake_rpc: FakeRpc) -> None:
    assert isinstance(make_client(fake_rpc)._rpc, HttpRpc)


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="not an http"):
        HttpRpc("ws://127.0.0.1:8900")


async def test_reads_send_the_configured_commitment(fake_rpc: FakeRpc, client: ChainClient) -> None:
    fake_rpc.script("getBalance", Result({"context": {"slot": 1}, "value": 42}))
    assert await client.wallet_balance(USER) == 42
    method, params = fake_rpc.calls[-1]
    assert method == "getBalance"
    assert params[0] == str(USER)
    assert params[1]["commitment"] == "confirmed"


async def test_connection_refused_is_rpc_unreachable_and_nothing_was_sent(fake_rpc: FakeRpc) -> None:
    client = make_client(fake_rpc)
    await fake_rpc.stop()
    with pytest.raises(ChainUnavailable) as info:
        await client.wallet_balance(USER)
    assert info.value.code == "rpc_unreachable"
    assert info.value.may_have_arrived is False


async def test_slow_node_is_rpc_timeout(fake_rpc: FakeRpc) -> None:
    fake_rpc.script("getBalance", Delay(1.0, Result({"context": {"slot": 1}, "value": 1})))
    async with make_client(fake_rpc, rpc_timeout=0.1) as client:
        with pytest.raises(ChainUnavailable) as info:
            await client.wallet_balance(USER)
    assert info.value.code == "rpc_timeout"


async def test_a_dropped_connection_may_have_arrived(fake_rpc: FakeRpc, client: ChainClient) -> None:
    fake_rpc.script("getBalance", Drop())
    with pytest.raises(ChainUnavailable) as info:
        await client.wallet_balance(USER)
    assert info.value.may_have_arrived is True


@pytest.mark.parametrize(
    ("status", "code"), [(503, "rpc_unreachable"), (429, "rpc_unreachable"), (400, "rpc_error")]
)
async def test_http_errors(fake_rpc: FakeRpc, client: ChainClient, status: int, code: str) -> None:
    fake_rpc.script("getMultipleAccounts", Raw("busy", status=status))
    with pytest.raises(SettlementError) as info:
        await client.user_account(USER)
    assert info.value.code == code


@pytest.mark.parametrize("body", ["<html>not json</html>", '{"jsonrpc":"2.0","id":0}', "[]"])
async def test_garbage_response_is_rpc_error(fake_rpc: FakeRpc, client: ChainClient, body: str) -> None:
    fake_rpc.script("getMultipleAccounts", Raw(body))
    with pytest.raises(SettlementError) as info:
        await client.user_account(USER)
    assert info.value.code == "rpc_error"


async def test_node_unhealthy_on_a_read_is_chain_unavailable(fake_rpc: FakeRpc, client: ChainClient) -> None:
    fake_rpc.script("getBalance", Error(-32005, "Node is behind", {"numSlotsBehind": 40}))
    with pytest.raises(ChainUnavailable):
        await client.wallet_balance(USER)


async def test_a_preflight_refusal_reaches_the_error_table_intact(
    fake_rpc: FakeRpc, client: ChainClient
) -> None:
    data = {"err": {"InstructionError": [0, {"Custom": 6000}]}, "logs": ["Program log: refused"]}
    fake_rpc.script("sendTransaction", Error(-32002, "Transaction simulation failed", data))
    outcome = await client.submit(SIGNED)
    assert outcome.status is TxStatus.FAILED
    assert outcome.error is not None
    assert (outcome.error.rpc_code, outcome.error.custom_code) == (-32002, 6000)
    assert outcome.error.logs == ("Program log: refused",)
    assert not outcome.fee_charged


async def test_a_malformed_error_object_on_send_is_not_a_verdict(
    fake_rpc: FakeRpc, client: ChainClient
) -> None:
    fake_rpc.script("sendTransaction", Raw('{"jsonrpc":"2.0","id":1,"error":"nope"}'))
    fake_rpc.script("getSignatureStatuses", Result({"context": {"slot": 5}, "value": [None]}))
    fake_rpc.script("getBlockHeight", Result(300))
    outcome = await client.submit(SIGNED)
    assert outcome.error is not None
    assert outcome.error.code == "blockhash_expired"  # looked up, not taken as the node's refusal
